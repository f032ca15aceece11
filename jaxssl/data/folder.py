"""A folder of images as a dataset (``data.name="folder"``, ``data.path=DIR``).

``DIR`` is a local directory or ``gs://bucket/prefix``, holding image files as they are or
packed once into array_record shards (``python -m jaxssl.data.pack``: what a bucket should
hold, see docs/data.md). Its layout says what it is:

- one subfolder per class (``DIR/dog/1.jpg``, ``DIR/cat/2.png``): labels from the sorted
  folder names;
- anything else (images at the top, or nested without a class structure): unlabeled;
- ``DIR/train`` beside ``DIR/val`` (or ``validation``, ``test``): the splits, each one of the
  two layouts above.

``data.labels`` overrides the guess for ``DIR`` ("folders" or "none"; "auto" guesses: class
folders are two or more subfolders and no image at the top; ``data.eval_path`` is always
guessed). Without split folders, ``data.val_fraction``
of the images is held out for evaluation, picked by a hash of each file's path (a file stays
in its split as the folder grows). ``data.eval_path`` names a separate (labeled) folder to
evaluate on instead: the probes fit on its train split and test on its val split (its own
split folders, or its held-out fraction), and pretraining reads all of ``DIR``.

Files that do not decode (found once, by the index: ``folder_index``) fail the run with their
paths (``data.on_bad_image="fail"``) or are left out (``"skip"``): counted in the log and
listed in ``WORKDIR/bad_images.txt``; never replaced.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxssl import storage
from jaxssl.data import folder_index, pack
from jaxssl.errors import DatasetError

NAME = "folder"
LABELS = ("auto", "folders", "none")
ON_BAD_IMAGE = ("fail", "skip")
EVAL_DIRS = ("val", "validation", "test")  # beside train/: the first present is the eval split


@dataclasses.dataclass(frozen=True)
class Part:
  """One split of a tree: positions in its index, labels (-1: none), the class names."""
  ids: np.ndarray
  labels: np.ndarray
  classes: tuple[str, ...]


class FolderSource:
  """Random access to the images ``ids`` of a tree: ``{"image": encoded bytes, "label"}``
  (decoded with their crops by ``jaxssl.data.decode``)."""

  def __init__(self, store, part: Part, paths: Sequence[str]):
    self.store, self.ids, self.labels = store, part.ids, part.labels
    self.paths = [paths[i] for i in part.ids]

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self.store.read(int(self.ids[index])), "label": int(self.labels[index])}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self[i] for i in indices]


class FileStore:
  """The image files of a folder, read as they are."""

  def __init__(self, index: folder_index.Index):
    self.root, self.paths = index.root, index.paths

  def read(self, position: int) -> bytes:
    return folder_index.read_bytes(self.root, self.paths[position])


def resolve(path: str | None, key: str) -> str:
  """``path`` checked: it exists and can be read (credentials for ``gs://``)."""
  if not path:
    raise DatasetError(f"config.{key}: data.name='folder' reads the images of a folder; set "
                       f"--config.{key}=DIR (a local directory or gs://bucket/prefix).")
  if storage.is_object_store(path):
    return str(storage.resolve(path, what=f"config.{key}"))
  root = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(root):
    raise DatasetError(f"config.{key}={path}: {root} is not a directory. Point it at the "
                       "folder that holds your images (or their class folders).")
  return root


def open_tree(root: str, *, cache_dir: str | None = None):
  """The index and the store of ``root``: a packed folder's own, else the files' (indexed)."""
  if pack.is_packed(root):
    return pack.open_packed(root)
  index = folder_index.build(root, cache_dir=cache_dir)
  return index, FileStore(index)


def _held_out(paths: Sequence[str], fraction: float) -> np.ndarray:
  """Whether each path is in the held-out ``fraction``: a hash of the path, so adding files
  moves no other file between the splits."""
  hashes = [int(hashlib.sha1(p.encode()).hexdigest()[:8], 16) / 2**32 for p in paths]
  return np.asarray(hashes) < fraction


def _class_names(rel: list[str], dirs: list[str], root: str, labels: str) -> tuple[str, ...]:
  """The class folders of one split (``rel``: its paths, ``dirs``: its directories), or ()."""
  if labels == "none":
    return ()
  top = [p for p in rel if "/" not in p]
  classes = tuple(sorted(d for d in dirs if "/" not in d))
  with_images = {p.split("/", 1)[0] for p in rel if "/" in p}
  if labels == "auto" and (top or len(with_images) < 2):
    return ()
  if top:
    raise DatasetError(f"{root}: data.labels='folders' takes labels from class folders, but "
                       f"{len(top)} image(s) sit at the top (e.g. {top[0]}). Move them into a "
                       "class folder, or set --config.data.labels=none for unlabeled images.")
  if len(classes) < 2:
    raise DatasetError(f"{root} has {len(classes)} class folder(s) {list(classes)}: labels "
                       "need two or more. For unlabeled images set --config.data.labels=none.")
  empty = [c for c in classes if c not in with_images]
  if empty:
    raise DatasetError(f"{root}: class folder(s) {empty} hold no readable image (of "
                       f"{len(classes)} classes). Add images to them or remove them.")
  return classes


def _bad(index, ids: np.ndarray, root: str, on_bad_image: str) -> tuple[np.ndarray, list[str]]:
  """``ids`` less the files that do not decode; a ``DatasetError`` listing them under
  ``on_bad_image="fail"``."""
  bad = [i for i in ids if index.paths[i] in index.bad]
  if not bad:
    return ids, []
  listed = [f"{root}/{index.paths[i]} ({index.bad[index.paths[i]]})" for i in bad]
  if on_bad_image == "fail":
    raise DatasetError(f"{len(bad)} file(s) under {root} cannot be decoded as images, e.g. "
                       + "; ".join(listed[:3]) + ". Remove or repair them, or set "
                       "--config.data.on_bad_image=skip to leave them out (they are then "
                       "counted in the log and listed in WORKDIR/bad_images.txt).")
  return np.setdiff1d(ids, bad), listed


def parts(root: str, *, val_fraction: float, labels: str = "auto", on_bad_image: str = "fail",
          cache_dir: str | None = None):
  """``({"train": Part, "val": Part}, store, bad)`` of the folder ``root``: its split folders
  (``val`` the first of ``EVAL_DIRS`` present), else its images with ``val_fraction`` held out
  (``val`` empty at 0). ``bad``: the paths left out under ``on_bad_image="skip"``."""
  index, store = open_tree(root, cache_dir=cache_dir)
  if not index.paths:
    raise DatasetError(f"{root} holds no image files (looked for {', '.join(folder_index.SUFFIXES)}"
                       ", in every subfolder). Point data.path at the folder of your images.")
  top_dirs = {d for d in index.dirs if "/" not in d}
  eval_dir = next((d for d in EVAL_DIRS if d in top_dirs), None)
  if "train" in top_dirs and eval_dir:
    prefixes = {"train": "train/", "val": eval_dir + "/"}
  else:
    prefixes = {"all": ""}
  found, bad, names = {}, [], set()
  for name, prefix in prefixes.items():
    ids = np.asarray([i for i, p in enumerate(index.paths) if p.startswith(prefix)], np.int64)
    ids, skipped = _bad(index, ids, root, on_bad_image)
    bad += skipped
    rel = [index.paths[i][len(prefix):] for i in ids]
    dirs = [d[len(prefix):] for d in index.dirs if d.startswith(prefix) and d != prefix[:-1]]
    found[name] = (ids, rel, _class_names(rel, dirs, root + "/" + prefix.rstrip("/"), labels))
    names.update(found[name][2])
  classes = tuple(sorted(names))
  out, lookup = {}, {c: k for k, c in enumerate(classes)}
  for name, (ids, rel, own) in found.items():
    part_labels = np.asarray([lookup[p.split("/", 1)[0]] if own else -1 for p in rel], np.int32)
    out[name] = Part(ids, part_labels, classes if own else ())
  if "all" in out:
    whole = out.pop("all")
    held = _held_out([index.paths[i] for i in whole.ids], val_fraction)
    out["train"], out["val"] = (Part(whole.ids[m], whole.labels[m], whole.classes)
                                for m in (~held, held))
  return out, store, index, bad


@functools.lru_cache(maxsize=8)
def cached_parts(root: str, **settings):
  """``parts`` once per process for each folder and settings (a run opens three roles)."""
  return parts(root, **settings)
