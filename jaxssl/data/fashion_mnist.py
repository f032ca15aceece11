"""Fashion-MNIST as a TFDS dataset prepared from the original idx files, without TensorFlow.

TFDS's own ``fashion_mnist`` builder stores ``Image`` features, whose encoding needs
TensorFlow. This builder (registered as ``fashion_mnist_idx``) stores the 28x28 uint8 images as
``Tensor`` features in ``array_record`` files, which TFDS writes and ``tfds.data_source`` reads
with no TensorFlow installed. The idx files come from, in order: the builder's ``source_dir``
argument, ``$FASHION_MNIST_DIR``, the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), and the original download address when the machine has
internet.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import urllib.request

import numpy as np
import tensorflow_datasets as tfds

NAME = "fashion_mnist_idx"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DIR = "FASHION_MNIST_DIR"
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT_S = 30
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
HOW_TO_GET = (
    "Install the Debian package (offline, ships the idx files):\n"
    "    sudo apt-get install dataset-fashion-mnist\n"
    f"or put the four idx files ({', '.join(f for pair in FILES.values() for f in pair)}) "
    f"in a directory and set {ENV_DIR}=that/directory, or run on a machine with internet "
    f"access to {URL}.")


class MissingSourceFiles(FileNotFoundError):
  """The idx files are nowhere to be found and cannot be downloaded."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """An idx file (optionally gzipped) as a NumPy array of its declared shape and dtype."""
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path} is not an idx file (bad magic number).")
  dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
  if data[2] not in dtypes:
    raise ValueError(f"{path}: unknown idx element type {data[2]:#x}.")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
  if array.size != int(np.prod(shape)):
    raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} values.")
  return array.reshape(shape)


def find_source_dir(source_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
  """The first candidate directory that holds all four idx files, or None."""
  candidates = [source_dir, os.environ.get(ENV_DIR), DEBIAN_DIR]
  for candidate in candidates:
    if candidate and all((pathlib.Path(candidate) / f).is_file()
                         for pair in FILES.values() for f in pair):
      return pathlib.Path(candidate)
  return None


def _download(target: pathlib.Path) -> pathlib.Path:
  target.mkdir(parents=True, exist_ok=True)
  for name in (f for pair in FILES.values() for f in pair):
    if (target / name).is_file():
      continue
    try:
      with urllib.request.urlopen(URL + name, timeout=DOWNLOAD_TIMEOUT_S) as response, \
          open(target / (name + ".part"), "wb") as out:
        shutil.copyfileobj(response, out)
    except OSError as err:
      raise MissingSourceFiles(
          f"Fashion-MNIST idx files not found (looked in source_dir, "
          f"${ENV_DIR} and {DEBIAN_DIR}) and the download from {URL} failed: {err}.\n"
          + HOW_TO_GET) from err
    (target / (name + ".part")).rename(target / name)
  return target


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (Xiao et al., 2017; MIT licence): 60k train / 10k test, 28x28x1 uint8."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Prepared from the original idx files as Tensor features."}

  def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Fashion-MNIST from the original idx files (Tensor features, no TF).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="@article{xiao2017fashion, title={Fashion-MNIST: a Novel Image Dataset for "
                 "Benchmarking Machine Learning Algorithms}, author={Xiao, Han and Rasul, "
                 "Kashif and Vollgraf, Roland}, journal={arXiv:1708.07747}, year={2017}}",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    source = find_source_dir(self._source_dir)
    if source is None:
      source = _download(pathlib.Path(dl_manager.download_dir) / NAME)
    return {split: self._generate_examples(source / images, source / labels)
            for split, (images, labels) in FILES.items()}

  def _generate_examples(self, images_path: pathlib.Path, labels_path: pathlib.Path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
      raise ValueError(f"{images_path} and {labels_path} do not hold matching 28x28 images "
                       f"and labels: shapes {images.shape} and {labels.shape}.")
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., None], "label": int(label)}
