"""``python -m jaxssl.data.prepare NAME [--archive FILE] [--data_dir DIR]``: one of the
papers' benchmarks, prepared without TensorFlow from its original archive.

NAME: cifar10_bin, cifar100_bin, stl10_bin (TFDS datasets of uint8 arrays), imagenette_160,
imagenette_320, imagewoof_160, imagewoof_320 (folders), or imagenet100 (``--imagenet_dir``:
solo-learn's 100 classes linked from an ImageNet folder with train/ and val/ class folders).
The archive is ``--archive`` (offline), else ``<data dir>/downloads/<its name>`` if there,
else downloaded from its publisher; its checksum is checked in every case. Then train with
``--config.data.name=NAME`` (the same ``--config.data.data_dir`` if given here).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request

from jaxssl.data import archives, catalog
from jaxssl.errors import DatasetError, UserError

DOWNLOAD_TIMEOUT_S = 60


def digest(path: str, algorithm: str) -> str:
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def verify(path: str, archive: catalog.Archive) -> None:
  """A ``DatasetError`` unless ``path`` has one of ``archive``'s published checksums."""
  got = digest(path, archive.algorithm)
  if got not in archive.digests:
    raise DatasetError(
        f"{path} has {archive.algorithm} {got}, not the published {archive.filename}'s "
        f"({' or '.join(archive.digests)}): it is damaged, cut short or another file. "
        f"Download it again from {archive.url} (nothing was prepared).")


def fetch(archive: catalog.Archive, downloads: str, url: str | None = None) -> str:
  """The archive in ``downloads`` (kept there), downloaded from ``url`` (default: the
  publisher's) unless already there; checksum checked."""
  path = os.path.join(downloads, archive.filename)
  if not os.path.exists(path):
    os.makedirs(downloads, exist_ok=True)
    source = url or archive.url
    try:
      with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response, \
          open(path + ".part", "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    except OSError as err:
      raise DatasetError(
          f"Downloading {source} failed ({err}). On a machine without internet, fetch "
          f"{archive.filename} elsewhere and pass it with --archive FILE, or put it in "
          f"{downloads}.") from err
    os.replace(path + ".part", path)
  verify(path, archive)
  return path


def build_tfds(name: str, archive_path: str, data_dir: str) -> str:
  builder = archives.BUILDERS[name](archive=archive_path, data_dir=data_dir,
                                    file_format="array_record")
  builder.download_and_prepare()
  splits = ", ".join(f"{s} {builder.info.splits[s].num_examples}" for s in builder.info.splits)
  return f"{name} in {data_dir} ({splits})"


def unpack_folder(name: str, archive_path: str, data_dir: str) -> str:
  """The archive's one top folder (train/ and val/ inside) as ``catalog.folder_path``."""
  target = catalog.folder_path(name, data_dir)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
    try:
      with tarfile.open(archive_path) as tar:
        tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
      raise DatasetError(f"{archive_path} cannot be unpacked as a tar archive ({err}): "
                         "download it again.") from err
    tops = os.listdir(tmp)
    if len(tops) != 1 or not os.path.isdir(os.path.join(tmp, tops[0], "train")):
      raise DatasetError(f"{archive_path} does not hold one folder with train/ inside (it "
                         f"holds {sorted(tops)[:5]}): not the expected archive.")
    if os.path.exists(target):
      shutil.rmtree(target)
    os.replace(os.path.join(tmp, tops[0]), target)
  return f"{name} in {target}"


def link_imagenet100(imagenet_dir: str | None, data_dir: str) -> str:
  """ImageNet-100's class folders, linked from ImageNet's train/ and val/."""
  if not imagenet_dir:
    raise DatasetError("imagenet100 is made from ImageNet: pass --imagenet_dir DIR, a folder "
                       "with train/ and val/, each with one folder per synset (n01440764, "
                       "...; the validation images sorted into them, e.g. by valprep.sh).")
  source = os.path.abspath(os.path.expanduser(imagenet_dir))
  missing = [f"{split}/{wnid}" for split in ("train", "val") for wnid in catalog.IMAGENET100
             if not os.path.isdir(os.path.join(source, split, wnid))]
  if missing:
    raise DatasetError(f"{source} lacks {len(missing)} of ImageNet-100's 200 class folders, "
                       f"e.g. {missing[0]}: it needs train/ and val/ with one folder per "
                       "synset (sort the validation images into them first, e.g. with "
                       "valprep.sh).")
  target = catalog.folder_path("imagenet100", data_dir)
  for split in ("train", "val"):
    os.makedirs(os.path.join(target, split), exist_ok=True)
    for wnid in catalog.IMAGENET100:
      link = os.path.join(target, split, wnid)
      if os.path.islink(link):
        os.remove(link)
      os.symlink(os.path.join(source, split, wnid), link)
  return f"imagenet100 in {target} (links into {source})"


def prepare(name: str, *, archive: str | None = None, data_dir: str | None = None,
            imagenet_dir: str | None = None, url: str | None = None) -> str:
  """Prepare ``name``; returns what was made and where."""
  known = sorted({*catalog.ARCHIVES, *catalog.FOLDERS})
  if name not in known:
    raise DatasetError(f"Unknown dataset {name!r}: prepare one of {', '.join(known)}.")
  root = catalog.data_dir(data_dir)
  if name == "imagenet100":
    return link_imagenet100(imagenet_dir, root)
  spec = catalog.ARCHIVES[name]
  if archive:
    if not os.path.isfile(archive):
      raise DatasetError(f"--archive {archive}: no such file.")
    verify(archive, spec)
    path = archive
  else:
    path = fetch(spec, os.path.join(root, "downloads"), url)
  if name in archives.BUILDERS:
    return build_tfds(name, path, root)
  return unpack_folder(name, path, root)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0].strip("`"))
  parser.add_argument("name", help="the dataset: " + ", ".join(
      sorted({*catalog.ARCHIVES, *catalog.FOLDERS})))
  parser.add_argument("--archive", help="the original archive, already on this machine")
  parser.add_argument("--data_dir", help="where to prepare it (default: $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets); pass the same as --config.data.data_dir")
  parser.add_argument("--imagenet_dir", help="imagenet100: ImageNet's folder (train/, val/)")
  args = parser.parse_args(argv)
  try:
    made = prepare(args.name, archive=args.archive, data_dir=args.data_dir,
                   imagenet_dir=args.imagenet_dir)
  except UserError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
  print(f"Prepared {made}. Train on it with --config.data.name={args.name}"
        + (f" --config.data.data_dir={args.data_dir}" if args.data_dir else ""))


if __name__ == "__main__":
  main()
