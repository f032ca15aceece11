"""The benchmarks prepared from their original archives (jaxssl.data.prepare), against archives
generated here in the original byte layouts and read back with plain NumPy; downloads from a
local HTTP server; every refusal (checksum, format, missing pieces) before anything is made."""

import functools
import hashlib
import http.server
import io
import os
import pathlib
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from jaxssl.data import catalog, prepare, roles, source
from jaxssl.errors import DatasetError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tar_gz(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
  with tarfile.open(path, "w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


def trust(monkeypatch, name: str, path: pathlib.Path) -> None:
  """Make ``path`` the published version of ``name``'s archive (its sha256)."""
  old = catalog.ARCHIVES[name]
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  monkeypatch.setitem(catalog.ARCHIVES, name, catalog.Archive(old.url, "sha256", (digest,)))


def cifar_archive(tmp_path, label_bytes: int, rng, per_file: int | None = None):
  """A CIFAR binary archive of a few records per file, and what each file holds."""
  top, files = (("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)]
                 + ["test_batch.bin"]) if label_bytes == 1 else
                ("cifar-100-binary", ["train.bin", "test.bin"]))
  members, truth = {}, {}
  for name in files:
    n = per_file or int(rng.integers(3, 7))
    labels = rng.integers(0, 10 if label_bytes == 1 else 20, (n, label_bytes)).astype(np.uint8)
    if label_bytes == 2:
      labels[:, 1] = rng.integers(0, 100, n)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    members[f"{top}/{name}"] = np.concatenate([labels, pixels], 1).tobytes()
    # The layout read plainly: pixel (row r, column c) of channel k is byte 1024 k + 32 r + c.
    images = np.zeros((n, 32, 32, 3), np.uint8)
    for k in range(3):
      for r in range(32):
        images[:, r, :, k] = pixels[:, 1024 * k + 32 * r: 1024 * k + 32 * r + 32]
    truth[name] = (images, labels)
  members[f"{top}/readme.html"] = b"<html></html>"
  return tar_gz(tmp_path / ("cifar10.tar.gz" if label_bytes == 1 else "cifar100.tar.gz"),
                members), truth


def records(name, split, data_dir):
  data, _ = source.open_split(name, split, data_dir=data_dir)
  return [data[i] for i in range(len(data))]


def test_cifar10_and_cifar100_record_by_record(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  for name, label_bytes in (("cifar10_bin", 1), ("cifar100_bin", 2)):
    archive, truth = cifar_archive(tmp_path, label_bytes, rng)
    trust(monkeypatch, name, archive)
    prepare.prepare(name, archive=str(archive), data_dir=str(tmp_path / "data"))
    if label_bytes == 1:
      train_files, test_files = [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]
    else:
      train_files, test_files = ["train.bin"], ["test.bin"]
    for split, files in (("train", train_files), ("test", test_files)):
      images = np.concatenate([truth[f][0] for f in files])
      labels = np.concatenate([truth[f][1] for f in files])
      got = records(name, split, str(tmp_path / "data"))
      assert len(got) == len(images)
      for record, image, label in zip(got, images, labels):
        np.testing.assert_array_equal(record["image"], image)
        assert record["label"] == label[-1]  # CIFAR-100: the fine label is the second byte
        if label_bytes == 2:
          assert record["coarse_label"] == label[0]


def test_stl10_column_major_and_unlabeled_split(tmp_path, monkeypatch):
  rng = np.random.default_rng(1)
  images = {s: rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
            for s, n in (("train", 4), ("test", 3), ("unlabeled", 5))}
  labels = {s: rng.integers(1, 11, len(images[s])).astype(np.uint8) for s in ("train", "test")}
  members = {}
  for split, array in images.items():
    # Each image's bytes: channel by channel, each channel column by column (Fortran order).
    members[f"stl10_binary/{split}_X.bin"] = b"".join(
        np.ascontiguousarray(image.transpose(2, 1, 0)).tobytes() for image in array)
  for split, array in labels.items():
    members[f"stl10_binary/{split}_y.bin"] = array.tobytes()
  archive = tar_gz(tmp_path / "stl10_binary.tar.gz", members)
  trust(monkeypatch, "stl10_bin", archive)
  data_dir = str(tmp_path / "data")
  prepare.prepare("stl10_bin", archive=str(archive), data_dir=data_dir)
  for split, tfds_split in (("train", "train"), ("test", "test"), ("unlabeled", "unlabelled")):
    got = records("stl10_bin", tfds_split, data_dir)
    np.testing.assert_array_equal(np.stack([r["image"] for r in got]), images[split])
    expected = labels[split].astype(int) - 1 if split in labels else [-1] * len(got)
    assert [r["label"] for r in got] == list(expected)
  both, info = source.open_split("stl10_bin", "train+unlabelled", data_dir=data_dir)
  assert len(both) == info.num_examples == 9 and info.num_classes == 10


@pytest.fixture
def http_server(tmp_path):
  served = tmp_path / "served"
  served.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield served, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()


def test_download_is_checked_and_kept(tmp_path, monkeypatch, http_server):
  served, url = http_server
  archive, truth = cifar_archive(served, 1, np.random.default_rng(2))
  data_dir = tmp_path / "data"
  # A file that is not the published one: refused, nothing prepared.
  with pytest.raises(DatasetError, match="not the published cifar-10-binary.tar.gz's"):
    prepare.prepare("cifar10_bin", data_dir=str(data_dir), url=f"{url}/{archive.name}")
  assert not (data_dir / "cifar10_bin").exists()
  (data_dir / "downloads" / "cifar-10-binary.tar.gz").unlink()
  trust(monkeypatch, "cifar10_bin", archive)
  prepare.prepare("cifar10_bin", data_dir=str(data_dir), url=f"{url}/{archive.name}")
  assert (data_dir / "downloads" / "cifar-10-binary.tar.gz").read_bytes() == archive.read_bytes()
  assert len(records("cifar10_bin", "test", str(data_dir))) == len(truth["test_batch.bin"][0])
  with pytest.raises(DatasetError, match="Downloading http://127.0.0.1.* failed"):
    prepare.prepare("cifar100_bin", data_dir=str(data_dir), url=f"{url}/nothing.tar.gz")


def test_bad_archives_are_refused_by_the_command(tmp_path, monkeypatch):
  not_tar = tmp_path / "cifar.tar.gz"
  not_tar.write_bytes(b"not an archive")
  run = lambda *args: subprocess.run([sys.executable, "-m", "jaxssl.data.prepare", *args,
                                      "--data_dir", str(tmp_path / "data")],
                                     capture_output=True, text=True, cwd=ROOT, timeout=120)
  done = run("cifar10_bin", "--archive", str(not_tar))
  assert done.returncode == 1 and "not the published cifar-10-binary.tar.gz's" in done.stderr
  assert "Traceback" not in done.stderr and not (tmp_path / "data" / "cifar10_bin").exists()
  # The right checksum on the wrong contents: a tar without the CIFAR members.
  wrong = tar_gz(tmp_path / "wrong.tar.gz", {"x/other.bin": b"1234"})
  trust(monkeypatch, "cifar10_bin", wrong)
  with pytest.raises(DatasetError, match="0 member\\(s\\) named \\*/data_batch_1.bin"):
    prepare.prepare("cifar10_bin", archive=str(wrong), data_dir=str(tmp_path / "data"))
  done = run("nonesuch")
  assert done.returncode == 1 and "Unknown dataset 'nonesuch'" in done.stderr
  with pytest.raises(DatasetError, match="(?s)is not prepared.*python -m jaxssl.data.prepare "
                                         "cifar100_bin"):
    source.open_split("cifar100_bin", "train", data_dir=str(tmp_path / "empty"))


def jpeg(rng, size=(40, 30)) -> bytes:
  out = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(out, "JPEG")
  return out.getvalue()


def test_imagenette_unpacks_to_a_folder_dataset(tmp_path, monkeypatch):
  rng = np.random.default_rng(3)
  wnids = ("n01440764", "n02102040")
  members = {f"imagenette2-160/{split}/{w}/{i}.JPEG": jpeg(rng)
             for split in ("train", "val") for w in wnids for i in range(3)}
  members["imagenette2-160/noisy_imagenette.csv"] = b"path,label\n"
  archive = tar_gz(tmp_path / "imagenette2-160.tgz", members)
  trust(monkeypatch, "imagenette_160", archive)
  data_dir = str(tmp_path / "data")
  prepare.prepare("imagenette_160", archive=str(archive), data_dir=data_dir)
  from jaxssl import config as config_lib
  c = config_lib.base_config()
  c.data.update(name="imagenette_160", data_dir=data_dir)
  train, info, _ = roles.open_data(c.data, "train")
  val, val_info, _ = roles.open_data(c.data, "eval")
  assert (len(train), len(val), info.num_classes, val_info.num_classes) == (6, 6, 2, 2)
  assert sorted(train.labels) == [0, 0, 0, 1, 1, 1]
  assert train[0]["image"] == members[f"imagenette2-160/train/{wnids[0]}/0.JPEG"]


def test_imagenet100_links_solo_learns_classes(tmp_path):
  rng = np.random.default_rng(4)
  imagenet = tmp_path / "imagenet"
  for split in ("train", "val"):
    for wnid in (*catalog.IMAGENET100, "n99999999"):  # one class not in ImageNet-100
      (imagenet / split / wnid).mkdir(parents=True)
      (imagenet / split / wnid / "a.JPEG").write_bytes(jpeg(rng, (8, 8)))
  with pytest.raises(DatasetError, match="pass --imagenet_dir"):
    prepare.prepare("imagenet100", data_dir=str(tmp_path / "data"))
  os.remove(imagenet / "val" / catalog.IMAGENET100[5] / "a.JPEG")
  os.rmdir(imagenet / "val" / catalog.IMAGENET100[5])
  with pytest.raises(DatasetError, match=f"lacks 1 of .* e.g. val/{catalog.IMAGENET100[5]}"):
    prepare.prepare("imagenet100", imagenet_dir=str(imagenet), data_dir=str(tmp_path / "data"))
  (imagenet / "val" / catalog.IMAGENET100[5]).mkdir()
  (imagenet / "val" / catalog.IMAGENET100[5] / "b.JPEG").write_bytes(jpeg(rng, (8, 8)))
  prepare.prepare("imagenet100", imagenet_dir=str(imagenet), data_dir=str(tmp_path / "data"),
                  )
  from jaxssl import config as config_lib
  c = config_lib.base_config()
  c.data.update(name="imagenet100", data_dir=str(tmp_path / "data"))
  train, info, _ = roles.open_data(c.data, "train")
  assert len(train) == 100 and info.num_classes == 100 and len(catalog.IMAGENET100) == 100


def test_stl10_pretrains_on_unlabeled_and_probes_on_train(tmp_path, monkeypatch):
  """The docs' STL-10 command in smoke form: train+unlabelled for pretraining (the online head
  from the labeled rows only), the probes fit on train."""
  rng = np.random.default_rng(5)
  members = {f"stl10_binary/{s}_X.bin": rng.integers(0, 256, (n, 3, 96, 96), np.uint8).tobytes()
             for s, n in (("train", 40), ("test", 40), ("unlabeled", 80))}
  for s in ("train", "test"):
    members[f"stl10_binary/{s}_y.bin"] = rng.integers(1, 11, 40).astype(np.uint8).tobytes()
  archive = tar_gz(tmp_path / "stl.tar.gz", members)
  trust(monkeypatch, "stl10_bin", archive)
  data_dir = str(tmp_path / "data")
  prepare.prepare("stl10_bin", archive=str(archive), data_dir=data_dir)
  from jaxssl import config as config_lib
  from jaxssl.train import run as run_lib
  from tests.train.test_train import run_steps
  c = config_lib.load(str(ROOT / "configs/vicreg_folder.py:cpu,smoke"))
  c.unlock()
  c.data.update(name="stl10_bin", data_dir=data_dir, train_split="train+unlabelled",
                eval_train_split="train", eval_split="test")
  run = run_lib.Run(c)
  assert (run.train_info.num_examples, run.eval_train_info.num_examples) == (120, 40)
  _, losses, _ = run_steps(run, 2)
  assert np.all(np.isfinite(losses))
  assert set(np.unique(source.labels_of(run.eval_train_source))) <= set(range(10))
