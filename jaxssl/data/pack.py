"""``python -m jaxssl.data.pack DIR OUT``: a folder of images packed into array_record shards.

A packed folder is what a bucket should hold: a few large files that array_record reads by
range (``gs://`` directly, 0.8.3 and later), instead of one object per image, each a request.
On local disk reading the files as they are is as fast (bench/folder.py), so packing is
for buckets and for moving a dataset as a few files. Its layout:

- ``jaxssl_pack.json``: the format, the folder it came from, the shard files;
- ``index.npz``: the folder's index (``folder_index``: paths, sizes, image sizes, the files
  that do not decode), whose paths still give the labels and splits;
- ``images-NNNNN-of-MMMMM.array_record``: record ``i`` is the ``i``-th indexed file's bytes,
  unchanged (an empty record for a file that does not decode).

``data.path=OUT`` (local or ``gs://``) then reads it as it would ``DIR``. No TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile


from jaxssl import storage
from jaxssl.data import folder_index
from jaxssl.errors import DatasetError, UserError

MANIFEST = "jaxssl_pack.json"
INDEX = "index.npz"
FORMAT, VERSION = "jaxssl-pack", 1
SHARD_MB = 1024


def is_packed(root: str) -> bool:
  return (storage.Path(root) / MANIFEST).exists()


class PackedStore:
  """The records of a packed folder, by index position (array_record reads ``gs://`` too)."""

  def __init__(self, root: str, shards: list[str]):
    from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
    storage.connect_emulator()
    self.source = array_record_data_source.ArrayRecordDataSource(
        [f"{root}/{shard}" for shard in shards])

  def read(self, position: int) -> bytes:
    return self.source[position]


def open_packed(root: str) -> tuple[folder_index.Index, PackedStore]:
  """The index and the records of the packed folder ``root``."""
  path = storage.Path(root)
  manifest = json.loads((path / MANIFEST).read_text())
  if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
    raise DatasetError(f"{root}/{MANIFEST} is not a jaxssl pack of version {VERSION} "
                       f"(format {manifest.get('format')!r}, version "
                       f"{manifest.get('version')!r}): pack the folder again.")
  missing = [s for s in manifest["shards"] if not (path / s).exists()]
  if missing:
    raise DatasetError(f"{root} lacks {len(missing)} of its {len(manifest['shards'])} shards "
                       f"(e.g. {missing[0]}): copy the whole packed folder again.")
  index = folder_index.load(io.BytesIO((path / INDEX).read_bytes()))
  if index is None:
    raise DatasetError(f"{root}/{INDEX} is not an index of this version: pack the folder "
                       "again.")
  index.root = root
  if len(index.paths) != manifest["records"]:
    raise DatasetError(f"{root}: its index lists {len(index.paths)} files but its shards hold "
                       f"{manifest['records']} records: pack the folder again.")
  return index, PackedStore(root, manifest["shards"])


def _write_shards(index: folder_index.Index, out: str, shard_mb: int) -> list[str]:
  """The files' bytes in index order, a new shard after every ``shard_mb`` MiB."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  limit = shard_mb * 2**20
  groups, size = [[]], 0
  for i, bytes_ in enumerate(index.sizes):
    if size and size + bytes_ > limit:
      groups.append([])
      size = 0
    groups[-1].append(i)
    size += int(bytes_)
  names = [f"images-{k:05d}-of-{len(groups):05d}.array_record" for k in range(len(groups))]
  for name, group in zip(names, groups):
    # group_size:1 keeps every record readable on its own (random access).
    writer = array_record_module.ArrayRecordWriter(os.path.join(out, name), "group_size:1")
    for i in group:
      path = index.paths[i]
      writer.write(b"" if path in index.bad else folder_index.read_bytes(index.root, path))
    writer.close()
  return names


def pack(source: str, out: str, *, shard_mb: int = SHARD_MB,
         cache_dir: str | None = None) -> dict:
  """Pack the folder ``source`` into ``out`` (a new local directory or ``gs://`` prefix);
  returns the manifest."""
  if not storage.is_object_store(source) and not os.path.isdir(source):
    raise DatasetError(f"{source} is not a directory: name the folder of images to pack.")
  target = storage.resolve(out, what="OUT") if storage.is_object_store(out) else \
      storage.Path(os.path.abspath(out))
  if target.exists() and any(target.iterdir()):
    raise DatasetError(f"{out} exists and is not empty: name a new directory (nothing was "
                       "written).")
  index = folder_index.build(source, cache_dir=cache_dir)
  if not index.paths:
    raise DatasetError(f"{source} holds no image files ({', '.join(folder_index.SUFFIXES)}).")
  with tempfile.TemporaryDirectory(prefix="jaxssl_pack_",
                                   dir=None if storage.is_object_store(out) else
                                   os.path.dirname(os.path.abspath(out))) as tmp:
    manifest = {"format": FORMAT, "version": VERSION, "source": index.root,
                "records": len(index.paths), "bad": len(index.bad),
                "shards": _write_shards(index, tmp, shard_mb)}
    index_file = os.path.join(tmp, INDEX)
    folder_index.save(index, index_file)
    with open(os.path.join(tmp, MANIFEST), "w") as f:  # last: its presence marks a whole pack
      json.dump(manifest, f, indent=1)
    if storage.is_object_store(out):
      import fsspec  # pylint: disable=g-import-not-at-top
      fs = fsspec.filesystem("gs")
      for name in [*manifest["shards"], INDEX, MANIFEST]:
        fs.put_file(os.path.join(tmp, name), f"{str(target).rstrip('/')}/{name}")
    else:
      if target.exists():
        target.rmdir()
      shutil.move(tmp, str(target))
      os.makedirs(tmp)  # for TemporaryDirectory's clean-up
  return manifest


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0].strip("`"))
  parser.add_argument("source", metavar="DIR", help="the folder of images (local or gs://)")
  parser.add_argument("out", metavar="OUT", help="a new directory (local or gs://)")
  parser.add_argument("--shard_mb", type=int, default=SHARD_MB, help="MiB per shard")
  args = parser.parse_args(argv)
  try:
    manifest = pack(args.source, args.out, shard_mb=args.shard_mb)
  except UserError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
  print(f"Packed {manifest['records']} files of {manifest['source']} into "
        f"{len(manifest['shards'])} shard(s) in {args.out} ({manifest['bad']} that do not "
        f"decode kept as empty records, left out or refused by data.on_bad_image). Train on "
        f"it with --config.data.path={args.out}")


if __name__ == "__main__":
  main()
