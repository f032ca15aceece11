"""Random-access image-classification splits from TFDS (``array_record``, no TensorFlow).

``open_split`` returns a source with ``len``, ``__getitem__`` and ``__getitems__`` that yields
``{"image": uint8 (H, W, C), "label": int}`` records (for datasets whose images vary in size,
``image`` is the encoded bytes, decoded with the crop by ``jaxssl.data.decode``), plus the
facts the rest of the stack needs (number of examples, image shape, number of classes). Any
TFDS image-classification dataset prepared in ``array_record`` format works by name;
``fashion_mnist_idx`` (the embedded default) is prepared on first use from the local idx
files. The data dir is a local directory (a bucket mounted with gcsfuse is one): see
``check_data_dir``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_data_source

from jaxssl import storage
from jaxssl.data import archives, catalog, fashion_mnist, folder, mnist_5k
from jaxssl.errors import DatasetError

Record = dict[str, Any]

HOW_TO_PREPARE = (
    "Prepare it once in array_record format (needs TensorFlow for the encoding only):\n"
    "    pip install tensorflow tensorflow-datasets\n"
    "    tfds build {name} --file_format=array_record --data_dir={data_dir}\n"
    "(imagenet2012 also needs the ImageNet tar files in the manual dir; see the TFDS catalog). "
    "Then point the config's data.data_dir (or $TFDS_DATA_DIR) at that directory.")


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """What a split holds: ``image_shape`` has ``None`` for variable height or width."""
  name: str
  split: str
  num_examples: int
  image_shape: tuple[int | None, int | None, int]
  num_classes: int

  @property
  def fixed_size(self) -> bool:
    return None not in self.image_shape[:2]


class ArraySource:
  """A whole split held in memory as two NumPy arrays (for small datasets: no per-record
  decoding after the first read)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> Record:
    return {"image": self.images[index], "label": self.labels[index]}

  def __getitems__(self, indices: Sequence[int]) -> list[Record]:
    return [self[i] for i in indices]


class Subset:
  """The examples ``ids`` of ``source``, in that order, as a random-access source."""

  def __init__(self, source, ids):
    self.source, self.ids = source, np.asarray(ids, np.int64)

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, index: int) -> Record:
    return self.source[int(self.ids[index])]


def strided(source, count: int) -> Subset:
  """``count`` examples spread evenly over ``source`` (every ``len / count``-th, from the
  first): a fixed subset, the same on any process count, that samples every part of a split
  even when the split is stored in class order."""
  if count <= 0:
    raise ValueError(f"A subset needs at least one example; got count={count}.")
  n = min(count, len(source))
  return Subset(source, (np.arange(n) * len(source)) // n)


def labels_of(source) -> np.ndarray:
  """Every label of ``source`` (in-memory and folder sources have them at hand; others are
  read)."""
  if isinstance(source, (ArraySource, folder.FolderSource)):
    return np.asarray(source.labels)
  return np.asarray([source[i]["label"] for i in range(len(source))], np.int64)


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Sorted ids of ``fraction`` of each class (at least one example of each), drawn with
  ``seed``: the same on every process and every process count."""
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1]; got {fraction}.")
  rng = np.random.default_rng(seed)
  ids = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    ids.append(rng.permutation(members)[:max(1, round(fraction * len(members)))])
  return np.sort(np.concatenate(ids))


# Small datasets prepared offline on first use by builders of ours, from files on this machine.
LOCAL_BUILDERS = {fashion_mnist.NAME: fashion_mnist.FashionMnistIdx,
                  mnist_5k.NAME: mnist_5k.Mnist5k}


def _local(name: str, split: str, data_dir: str | None):
  if name in archives.BUILDERS:  # prepared from an archive by jaxssl.data.prepare
    builder = archives.BUILDERS[name](data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      raise DatasetError(
          f"Dataset {name!r} is not prepared under {catalog.data_dir(data_dir)}. Prepare it "
          f"once (no TensorFlow; downloads the original archive, or takes it with --archive):"
          f"\n    python -m jaxssl.data.prepare {name}"
          + (f" --data_dir {data_dir}" if data_dir else ""))
    return _as_source(builder, name, split)
  builder = LOCAL_BUILDERS[name](data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except FileNotFoundError as err:  # the builders' errors say where the files come from
      raise DatasetError(str(err)) from err
  return _as_source(builder, name, split)


def _as_source(builder, name: str, split: str):
  try:
    return builder.as_data_source(split), builder.info
  except (KeyError, ValueError) as err:
    raise DatasetError(f"Dataset {name!r} has no split {split!r} ({err}); it has "
                       f"{sorted(builder.info.splits)} (TFDS slicing like 'train[:90%]' works "
                       "too).") from err


def _tfds(name: str, split: str, data_dir: str | None):
  data, info = _tfds_source(name, split, data_dir)
  image = info.features["image"] if "image" in info.features else None
  if image is not None and None in tuple(image.shape)[:2]:
    # Images of varying size are decoded on the host together with their crops
    # (jaxssl.data.decode), which for JPEGs decodes only at the scale the crop needs.
    data, info = _tfds_source(name, split, data_dir,
                              decoders={"image": tfds.decode.SkipDecoding()})
  return data, info


def _tfds_source(name: str, split: str, data_dir: str | None, decoders=None):
  try:
    data = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            decoders=decoders)
  except tfds.core.registered.DatasetNotFoundError as err:
    raise DatasetError(
        f"Unknown TFDS dataset {name!r} (config key data.name). Use a name from the TFDS "
        f"catalog (cifar10, cifar100, imagenet2012, ...) or {fashion_mnist.NAME!r} for the "
        f"embedded Fashion-MNIST.") from err
  except (AssertionError, FileNotFoundError, NotImplementedError) as err:
    raise _not_prepared(name, data_dir, type(err).__name__) from err
  except (KeyError, ValueError) as err:
    # tensorflow-datasets 4.9.10 fails at the split lookup when nothing was generated.
    if not _is_prepared(name, data_dir):
      raise _not_prepared(name, data_dir, "no splits generated") from err
    raise DatasetError(f"Dataset {name!r} has no split {split!r} ({err}). TFDS slicing like "
                       "'train[:90%]' works too.") from err
  return data, data.dataset_info


def _is_prepared(name: str, data_dir: str | None) -> bool:
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return True  # cannot tell: keep the caller's own message


def _not_prepared(name: str, data_dir: str | None, why: str) -> DatasetError:
  root = data_dir or tfds.core.constants.DATA_DIR
  return DatasetError(f"TFDS dataset {name!r} is not prepared in array_record format under "
                      f"{root} ({why}).\n" + HOW_TO_PREPARE.format(name=name, data_dir=root))


def _split_info(info: tfds.core.DatasetInfo, name: str, split: str,
                num_examples: int) -> SplitInfo:
  features = info.features
  if "image" not in features or "label" not in features:
    raise DatasetError(f"Dataset {name!r} has features {list(features)}; jaxssl needs an image "
                       "classification dataset with 'image' and 'label' features.")
  shape = tuple(features["image"].shape)
  if len(shape) != 3 or shape[-1] not in (1, 3):
    raise DatasetError(f"Dataset {name!r} has images of shape {shape}; jaxssl needs (height, "
                       "width, channels) with 1 or 3 channels.")
  if num_examples == 0:
    raise DatasetError(f"Split {split!r} of dataset {name!r} is empty.")
  return SplitInfo(name, split, num_examples, shape, features["label"].num_classes)


def check_data_dir(data_dir: str | None) -> None:
  """A ``gs://`` data dir (``data.data_dir`` or ``$TFDS_DATA_DIR``) checked up front:
  credentials and the bucket (``storage.resolve``). TFDS finds the dataset there through
  epath, and array_record (0.8.3 and later) reads its files from the bucket by range."""
  where = data_dir or os.environ.get("TFDS_DATA_DIR")
  if where and storage.is_object_store(where):
    storage.resolve(where, what="data.data_dir" if data_dir else "$TFDS_DATA_DIR")


def _reads_array_record(data) -> bool:
  """Whether ``data`` is a TFDS source over array_record files (``tfds.testing.mock_data``'s
  sources read no files)."""
  return isinstance(getattr(data, "data_source", None),
                    array_record_data_source.ArrayRecordDataSource)


def _check_files(data, name: str, split: str) -> None:
  """Every file of the split is there: array_record waits forever on one that is not, so a
  shard deleted or never copied would hang the first read."""
  if not _reads_array_record(data):
    return
  instructions = tfds.core.data_sources.base.file_instructions(data.dataset_info, data.split)
  missing = [i.filename for i in instructions if not storage.Path(i.filename).exists()]
  if missing:
    raise DatasetError(
        f"Split {split!r} of dataset {name!r} lists {len(instructions)} files and "
        f"{len(missing)} of them are missing, e.g. {missing[0]}. Copy the whole dataset "
        "directory again, or delete it and prepare the dataset anew.")


def open_split(name: str, split: str, *, data_dir: str | None = None,
               in_memory: bool = False) -> tuple[Any, SplitInfo]:
  """A random-access source of one split and its ``SplitInfo``.

  ``in_memory`` reads the whole split once into NumPy arrays (fixed-size images only): the
  right choice for Fashion-MNIST and CIFAR, whose train splits are 47-150 MB.
  """
  check_data_dir(data_dir)
  if name in LOCAL_BUILDERS or name in archives.BUILDERS:
    data, info = _local(name, split, data_dir)
  else:
    data, info = _tfds(name, split, data_dir)
  _check_files(data, name, split)
  split_info = _split_info(info, name, split, len(data))
  if in_memory:
    if not split_info.fixed_size:
      raise DatasetError(f"data.in_memory needs images of one size; {name!r} has "
                         f"{split_info.image_shape}. Set data.in_memory=False.")
    data = _read_all(data)
  return data, split_info


def split_info(name: str, split: str, *, data_dir: str | None = None) -> SplitInfo:
  """The ``SplitInfo`` of one split, from the dataset's metadata (no example is read)."""
  return open_split(name, split, data_dir=data_dir)[1]


def _read_all(source, chunk: int = 4096) -> ArraySource:
  """The whole split as arrays, ``chunk`` records per read: TFDS's array_record sources read a
  list of keys in one call (``__getitems__``), 4-5x faster than one key at a time (about 4 s
  instead of 18 for Fashion-MNIST's 70,000 images on 2 cores). Other sources (the mock data
  of ``tfds.testing``, whose ``__getitems__`` fails) are read one key at a time."""
  images, labels = [], []
  if _reads_array_record(source):
    read = source.__getitems__
  else:
    read = lambda keys: [source[i] for i in keys]
  for start in range(0, len(source), chunk):
    records = read(list(range(start, min(start + chunk, len(source)))))
    images.append(np.stack([r["image"] for r in records]))
    labels.append(np.asarray([r["label"] for r in records], np.int32))
  return ArraySource(np.concatenate(images), np.concatenate(labels))
