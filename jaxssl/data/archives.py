"""The papers' small benchmarks as TFDS datasets prepared from their original archives, with no
TensorFlow: CIFAR-10, CIFAR-100 (fine and coarse labels) and STL-10 (with its 100,000
unlabeled images), stored like ``fashion_mnist_idx`` as uint8 ``Tensor`` features in
``array_record`` files. ``jaxssl.data.prepare`` fetches (or is given) the archive, checks its
checksum and builds them; ``data.name`` then names them (``cifar10_bin``, ``cifar100_bin``,
``stl10_bin``). TFDS's own ``cifar10``, ``cifar100`` and ``stl10`` stay usable by those names
where TensorFlow prepared them.

The byte layouts read here are the archives' documented ones:
- CIFAR-10 (``cifar-10-binary.tar.gz``): records of a label byte and 3,072 pixel bytes, the
  1,024 of the red plane, then green, then blue, each row-major 32x32;
- CIFAR-100 (``cifar-100-binary.tar.gz``): a coarse label byte, a fine label byte, then the
  same 3,072 bytes;
- STL-10 (``stl10_binary.tar.gz``): ``*_X.bin`` of 3x96x96 uint8 images, each channel stored
  column-major (Fortran order); ``*_y.bin`` of labels 1-10.
"""

from __future__ import annotations

import tarfile

import numpy as np
import tensorflow_datasets as tfds

from jaxssl.errors import DatasetError


def read_member(archive: str, suffix: str) -> bytes:
  """The bytes of the one member of the tar ``archive`` whose name ends with ``suffix``."""
  try:
    with tarfile.open(archive) as tar:
      members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)]
      if len(members) != 1:
        raise DatasetError(f"{archive} is not the expected archive: it has "
                           f"{len(members)} member(s) named *{suffix} (expected one). Download "
                           "the original file again.")
      return tar.extractfile(members[0]).read()
  except (tarfile.TarError, OSError, EOFError) as err:
    raise DatasetError(f"{archive} cannot be read as a tar archive ({err}): download the "
                       "original file again.") from err


def cifar_records(data: bytes, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 (N, 32, 32, 3), labels uint8 (N, label_bytes))`` of a CIFAR ``.bin``."""
  width = label_bytes + 3072
  if len(data) % width:
    raise DatasetError(f"A CIFAR batch of {len(data)} bytes is not a whole number of "
                       f"{width}-byte records: the archive is damaged or of another format.")
  rows = np.frombuffer(data, np.uint8).reshape(-1, width)
  images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, rows[:, :label_bytes]


def stl10_images(data: bytes) -> np.ndarray:
  """uint8 ``(N, 96, 96, 3)`` of an STL-10 ``*_X.bin`` (each channel column-major)."""
  if len(data) % (3 * 96 * 96):
    raise DatasetError(f"An STL-10 image file of {len(data)} bytes is not a whole number of "
                       "96x96x3 images: the archive is damaged or of another format.")
  return np.frombuffer(data, np.uint8).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


def _names(text: bytes) -> list[str]:
  return [line.strip() for line in text.decode().splitlines() if line.strip()]


class _FromArchive(tfds.core.GeneratorBasedBuilder):
  """A builder whose one input is the archive file, given at construction; the records keep
  the archive's order (``disable_shuffling``)."""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Prepared from the original archive as Tensor features."}
  SHAPE: tuple[int, int, int]

  def __init__(self, *, archive: str | None = None, **kwargs):
    self._archive = archive
    super().__init__(**kwargs)

  def _archive_path(self) -> str:
    if not self._archive:
      raise DatasetError(f"{self.name} is not prepared: run python -m jaxssl.data.prepare "
                         f"{self.name} (see docs/data.md).")
    return self._archive

  def _features(self, labels: dict) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8), **labels})


class Cifar10Bin(_FromArchive):
  """CIFAR-10 (Krizhevsky, 2009): 50k train / 10k test, 32x32x3."""
  SHAPE = (32, 32, 3)
  NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=self._features(
        {"label": tfds.features.ClassLabel(names=self.NAMES)}), supervised_keys=("image", "label"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html")

  def _split_generators(self, dl_manager):
    del dl_manager
    archive = self._archive_path()
    return {"train": self._generate_examples(archive, [f"data_batch_{i}.bin" for i in range(1, 6)]),
            "test": self._generate_examples(archive, ["test_batch.bin"])}

  def _generate_examples(self, archive, members):
    index = 0
    for member in members:
      images, labels = cifar_records(read_member(archive, "/" + member), 1)
      for image, label in zip(images, labels[:, 0]):
        yield index, {"image": image, "label": int(label)}
        index += 1


class Cifar100Bin(_FromArchive):
  """CIFAR-100 (Krizhevsky, 2009): 50k train / 10k test, 32x32x3, 100 fine labels (``label``)
  in 20 coarse ones (``coarse_label``)."""
  SHAPE = (32, 32, 3)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=self._features(
        {"label": tfds.features.ClassLabel(num_classes=100),
         "coarse_label": tfds.features.ClassLabel(num_classes=20)}),
        supervised_keys=("image", "label"), homepage="https://www.cs.toronto.edu/~kriz/cifar.html")

  def _split_generators(self, dl_manager):
    del dl_manager
    archive = self._archive_path()
    return {split: self._generate_examples(archive, f"/{split}.bin") for split in ("train", "test")}

  def _generate_examples(self, archive, member):
    images, labels = cifar_records(read_member(archive, member), 2)
    for index, (image, (coarse, fine)) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(fine), "coarse_label": int(coarse)}


class Stl10Bin(_FromArchive):
  """STL-10 (Coates et al., 2011): 5k train / 8k test labeled, 100k ``unlabelled``, 96x96x3
  (label -1 on the unlabeled split). Pretraining reads ``train+unlabelled``, as solo-learn."""
  SHAPE = (96, 96, 3)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=self._features(
        {"label": tfds.features.ClassLabel(num_classes=10)}), supervised_keys=("image", "label"),
        homepage="https://cs.stanford.edu/~acoates/stl10/")

  def _split_generators(self, dl_manager):
    del dl_manager
    archive = self._archive_path()
    return {split: self._generate_examples(archive, files)
            for split, files in (("train", "train"), ("test", "test"),
                                 ("unlabelled", "unlabeled"))}

  def _generate_examples(self, archive, split):
    images = stl10_images(read_member(archive, f"/{split}_X.bin"))
    if split == "unlabeled":
      labels = np.full(len(images), -1)
    else:
      labels = np.frombuffer(read_member(archive, f"/{split}_y.bin"), np.uint8).astype(int) - 1
      if len(labels) != len(images) or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"{archive}: {split}_y.bin does not hold one label 1-10 per image of "
                           f"{split}_X.bin: the archive is damaged or of another format.")
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(label)}


BUILDERS = {"cifar10_bin": Cifar10Bin, "cifar100_bin": Cifar100Bin, "stl10_bin": Stl10Bin}
