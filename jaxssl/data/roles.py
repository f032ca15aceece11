"""What a run reads, by role, from its config's ``data`` section: ``train`` (pretraining),
``eval_train`` (what the evaluators fit on) and ``eval`` (what they test on), from a TFDS
dataset (``jaxssl.data.source``) or a folder of images (``jaxssl.data.folder``, also the
folder datasets of ``jaxssl.data.prepare``)."""

from __future__ import annotations

import os

from jaxssl.data import catalog, folder, source
from jaxssl.errors import DatasetError


ROLES = ("train", "eval_train", "eval")  # pretraining; the probes' fit and test splits


def open_data(data, role: str, *, read: bool = True):
  """``(source, SplitInfo, bad)`` of one role of the config section ``data``: ``train`` is
  what pretraining reads, ``eval_train`` what the evaluators fit on, ``eval`` what they test
  on. A TFDS dataset serves ``data.train_split`` to both ``train`` roles (the evaluators
``data.eval_train_split`` instead where set: STL-10 pretrains on ``train+unlabelled`` and fits
the probes on ``train``); a folder
  (``data.name="folder"``, see ``jaxssl.data.folder``) the splits of its layout, those of
  ``data.eval_path`` to the evaluators when set. ``bad``: the image files left out
  (``data.on_bad_image="skip"``). ``read=False``: the ``SplitInfo`` alone (no source)."""
  if role not in ROLES:
    raise ValueError(f"role must be one of {ROLES}; got {role!r}.")
  if not is_folder(data):
    split = {"train": data.train_split, "eval": data.eval_split,
             "eval_train": data.eval_train_split or data.train_split}[role]
    if not read:
      return None, source.split_info(data.name, split, data_dir=data.data_dir), []
    opened, info = source.open_split(data.name, split, data_dir=data.data_dir,
                              in_memory=data.in_memory)
    return opened, info, []
  return _open_folder(data, role)


def is_folder(data) -> bool:
  """Whether the config section ``data`` names a folder (``"folder"`` and ``data.path``, or a
  folder dataset of ``jaxssl.data.prepare``)."""
  return data.name == folder.NAME or data.name in catalog.FOLDERS


def _open_folder(data, role: str):
  if data.labels not in folder.LABELS:
    raise DatasetError(f"config.data.labels: one of {folder.LABELS}; got {data.labels!r}.")
  if data.on_bad_image not in folder.ON_BAD_IMAGE:
    raise DatasetError(f"config.data.on_bad_image: one of {folder.ON_BAD_IMAGE}; got "
                       f"{data.on_bad_image!r}.")
  if not 0 <= data.val_fraction < 1:
    raise DatasetError(f"config.data.val_fraction: in [0, 1); got {data.val_fraction}.")
  if data.channels not in (1, 3):
    raise DatasetError(f"config.data.channels: 1 (grey) or 3 (RGB); got {data.channels}.")
  separate = role != "train" and data.eval_path
  key = "data.eval_path" if separate else "data.path"
  path = data.eval_path if separate else data.path
  if data.name in catalog.FOLDERS and not separate:
    path = catalog.folder_path(data.name, data.data_dir)
    if not os.path.isdir(path):
      raise DatasetError(f"Dataset {data.name!r} is not prepared ({path} does not exist). "
                         f"Prepare it once:\n    python -m jaxssl.data.prepare {data.name}"
                         + (f" --data_dir {data.data_dir}" if data.data_dir else ""))
  root = folder.resolve(path, key)
  # Pretraining reads all of data.path when the evaluation has a folder of its own.
  fraction = 0.0 if role == "train" and data.eval_path else data.val_fraction
  splits, store, index, bad = folder.cached_parts(
      root, val_fraction=fraction, labels="auto" if separate else data.labels,
      on_bad_image=data.on_bad_image,
      cache_dir=data.index_dir)
  part = splits["val" if role == "eval" else "train"]
  if not len(part.ids):
    raise DatasetError(
        f"{root} leaves no images to {'evaluate on' if role == 'eval' else 'train on'}: "
        + ("give it a val/ folder beside train/, set --config.data.val_fraction above 0, or "
           "name a labeled folder with --config.data.eval_path=DIR."
           if role == "eval" else "add images to it."))
  name = data.name if data.name in catalog.FOLDERS else f"folder {root}"
  info = source.SplitInfo(name, "val" if role == "eval" else "train", len(part.ids),
                   (None, None, data.channels), len(part.classes))
  return folder.FolderSource(store, part, index.paths), info, bad
