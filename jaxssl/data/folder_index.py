"""The index of a folder of images: every image file under it, checked once, cached.

``build(root)`` lists the files under ``root`` (a local directory, followed through symbolic
links, or ``gs://bucket/prefix``) whose suffix Pillow reads, and decodes each once (JPEGs at
1/8 scale, which still reads every byte) to learn its size and to find the files that are not
images or are cut short. The result is cached (``cache_dir``, default
``~/.cache/jaxssl/folders``) under the folder's path; the next start lists the folder again
(names, sizes and modification times: about a second per 100,000 local files) and decodes only
the files that are new or changed since, so an unchanged folder reuses its index and a grown
one costs only its new files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import os
import pathlib

import numpy as np
from PIL import Image

from jaxssl import storage

# What Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF), by file suffix, lower case.
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CACHE_ENV = "JAXSSL_CACHE_DIR"
VERSION = 1  # of the cache file's layout


@dataclasses.dataclass
class Index:
  """The images under ``root``: ``paths`` relative to it (sorted, ``/``-separated), with their
  file sizes and modification times (what tells a changed file) and image ``heights`` and
  ``widths``; ``bad`` maps the files that cannot be decoded to why; ``dirs`` lists every
  directory (relative, with those that hold no image: an empty class folder)."""
  root: str
  paths: list[str]
  sizes: np.ndarray
  mtimes: np.ndarray
  heights: np.ndarray
  widths: np.ndarray
  bad: dict[str, str]
  dirs: list[str]


def _list_local(root: str) -> tuple[list[tuple[str, int, int]], list[str]]:
  files, dirs = [], []
  for top, subdirs, names in os.walk(root, followlinks=True):
    subdirs.sort()
    rel = os.path.relpath(top, root)
    if rel != ".":
      dirs.append(rel.replace(os.sep, "/"))
    for name in names:
      if name.lower().endswith(SUFFIXES):
        stat = os.stat(os.path.join(top, name))
        path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
        files.append((path, stat.st_size, stat.st_mtime_ns))
  return sorted(files), dirs


def _list_bucket(root: str) -> tuple[list[tuple[str, int, int]], list[str]]:
  import fsspec  # pylint: disable=g-import-not-at-top
  storage.connect_emulator()
  fs = fsspec.filesystem("gs")
  prefix = root[len("gs://"):].rstrip("/") + "/"
  files, dirs = [], set()
  for key, info in fs.find(prefix, detail=True).items():
    path = key[len(prefix):]
    if not path.lower().endswith(SUFFIXES):
      continue
    stamp = info.get("generation") or info.get("updated") or info.get("etag") or 0
    stamp = int(hashlib.sha1(str(stamp).encode()).hexdigest()[:15], 16)
    files.append((path, int(info["size"]), stamp))
    parts = path.split("/")[:-1]
    dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
  return sorted(files), sorted(dirs)


def read_bytes(root: str, path: str) -> bytes:
  """The bytes of ``root/path`` (a local file or a bucket's object)."""
  if storage.is_object_store(root):
    return (storage.Path(root) / path).read_bytes()
  with open(os.path.join(root, path), "rb") as f:
    return f.read()


def inspect(data: bytes) -> tuple[int, int] | str:
  """``(height, width)`` of an encoded image that decodes to its end, else why it does not."""
  try:
    with Image.open(io.BytesIO(data)) as pil:
      width, height = pil.size
      if pil.format == "JPEG":
        pil.draft(pil.mode, (max(1, width // 8), max(1, height // 8)))
      pil.load()
  except Image.UnidentifiedImageError:
    return "not an image Pillow reads"
  except Exception as err:  # pylint: disable=broad-except  (Pillow raises many types)
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()
  return height, width


def _inspect_file(root: str, path: str) -> tuple[int, int] | str:
  try:
    return inspect(read_bytes(root, path))
  except OSError as err:
    return f"unreadable: {err}"


def cache_path(root: str, cache_dir: str | None) -> pathlib.Path:
  where = cache_dir or os.environ.get(CACHE_ENV) or os.path.expanduser("~/.cache/jaxssl")
  key = hashlib.sha256(root.encode()).hexdigest()[:20]
  return pathlib.Path(where) / "folders" / f"{key}.npz"


def load(file, root: str | None = None) -> Index | None:
  """The index saved in ``file`` (a path or a binary file object); ``None`` if there is none
  of this version (or, given ``root``, it indexes another folder). Its root: ``root`` or the
  saved one."""
  try:
    with np.load(file, allow_pickle=False) as z:
      if int(z["version"]) != VERSION or (root is not None and str(z["root"]) != root):
        return None
      lines = lambda key: str(z[key]).split("\n") if str(z[key]) else []
      return Index(root or str(z["root"]), lines("paths"), z["sizes"], z["mtimes"],
                   z["heights"], z["widths"], dict(zip(lines("bad_paths"), lines("bad_why"))),
                   lines("dirs"))
  except (OSError, ValueError, KeyError):
    return None  # no cache, or one from another version: build anew


def save(index: Index, path: str | os.PathLike) -> None:
  """``index`` into ``path`` (replaced whole: a reader sees the old file or the new)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
  np.savez(tmp, version=VERSION, root=index.root, paths="\n".join(index.paths),
           sizes=index.sizes, mtimes=index.mtimes, heights=index.heights, widths=index.widths,
           bad_paths="\n".join(index.bad), bad_why="\n".join(index.bad.values()),
           dirs="\n".join(index.dirs))
  tmp.replace(path)  # another process reading the cache sees the old index or the new one


def build(root: str, *, cache_dir: str | None = None, threads: int = 8) -> Index:
  """The index of ``root``, from the cache where the files are unchanged."""
  listed, dirs = (_list_bucket if storage.is_object_store(root) else _list_local)(root)
  cached = load(cache_path(root, cache_dir), root)
  known = {}
  if cached is not None:
    for i, p in enumerate(cached.paths):
      known[(p, int(cached.sizes[i]), int(cached.mtimes[i]))] = (
          cached.bad.get(p) or (int(cached.heights[i]), int(cached.widths[i])))
  todo = [f for f in listed if f not in known]
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # Pillow decodes without the GIL
    for f, result in zip(todo, pool.map(lambda f: _inspect_file(root, f[0]), todo)):
      known[f] = result
  results = [known[f] for f in listed]
  index = Index(
      root, [f[0] for f in listed], np.asarray([f[1] for f in listed], np.int64),
      np.asarray([f[2] for f in listed], np.int64),
      np.asarray([r[0] if isinstance(r, tuple) else 0 for r in results], np.int32),
      np.asarray([r[1] if isinstance(r, tuple) else 0 for r in results], np.int32),
      {f[0]: r for f, r in zip(listed, results) if isinstance(r, str)}, dirs)
  if todo or cached is None or len(cached.paths) != len(listed) or cached.dirs != dirs:
    save(index, cache_path(root, cache_dir))
  return index
