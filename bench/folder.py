"""A folder of images as a dataset, measured: indexing, reading two views, the first step.

  python bench/folder.py [--parts index,read,first_step] [--files 100000]
                         [--tf-python .venv-tf/bin/python]

Parts (default: all), each printed as a table and written to ``bench/results/folder.json``:

  index       ``--files`` small image files (28-40 pixels a side, PNG and JPEG, 100 class
              folders) indexed from scratch (every file listed and decoded once) and again at
              the next start (listed only: the cache). Targets: 30 s and 2 s on 2 cores.
  read        two-view pairs/s at 224 (the full VICReg recipe, batch 64) from a folder of 2,000
              JPEGs of ImageNet-like mixed sizes (300-500 pixels a side): jaxssl reading the
              files as they are, jaxssl reading the same folder packed
              (``jaxssl.data.pack``), and tf.data reading the same files
              (``tf.io.read_file``, then the reference ImageNet crop; bench/pipeline.py's
              recipe), each alone in its own process, one after the other in one run.
  first_step  the seconds from the training command to its first step on the ``--files``
              folder (configs/vicreg_folder.py:cpu,smoke with that folder), the index cold
              and then cached.

TensorFlow is a benchmark-only dependency in its own interpreter (see bench/pipeline.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
READ = {"examples": 2_000, "size": 224, "batch": 64, "passes": 3, "batches": 6,
        "jpeg_sides": (300, 500), "jpeg_quality": 90}


def small_files(root: pathlib.Path, count: int) -> None:
  """``count`` small images in 100 class folders: half PNG, half JPEG, of a few sizes."""
  import io  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  templates = []
  for i in range(64):  # encoded once each: the cost measured is the folder's, not writing
    side = 28 + (i % 13)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(
        out, "PNG" if i % 2 else "JPEG")
    templates.append((out.getvalue(), "png" if i % 2 else "jpg"))
  for k in range(100):
    (root / f"class_{k:03d}").mkdir(parents=True, exist_ok=True)
  for i in range(count):
    data, suffix = templates[i % len(templates)]
    (root / f"class_{i % 100:03d}" / f"{i:07d}.{suffix}").write_bytes(data)


def index_part(files: int, work: pathlib.Path) -> dict:
  from jaxssl.data import folder_index  # pylint: disable=g-import-not-at-top
  root = work / "small"
  if not root.exists():
    small_files(root, files)
  shutil.rmtree(work / "idx", ignore_errors=True)
  start = time.perf_counter()
  index = folder_index.build(str(root), cache_dir=str(work / "idx"))
  cold = time.perf_counter() - start
  start = time.perf_counter()
  again = folder_index.build(str(root), cache_dir=str(work / "idx"))
  warm = time.perf_counter() - start
  assert again.paths == index.paths and not index.bad
  row = {"files": len(index.paths), "cold_s": cold, "cached_s": warm}
  print(f"\nIndexing {row['files']:,} small image files ({os.cpu_count()} cores)\n"
        f"| from scratch | at the next start (cached) |\n|---:|---:|\n"
        f"| {cold:.1f} s | {warm:.2f} s |")
  return row


def read_worker(kind: str, folder: str, batches: int) -> dict:
  """One side of the read part, in its own process."""
  if kind == "tf":
    import pipeline  # pylint: disable=g-import-not-at-top
    files = sorted(str(p) for p in pathlib.Path(folder).rglob("*.jpg"))
    return pipeline.tf_worker(READ, batches, None, files=files)
  import pipeline  # pylint: disable=g-import-not-at-top
  from jaxssl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxssl.data import roles  # pylint: disable=g-import-not-at-top
  data = config_lib.base_config().data
  data.update(name="folder", path=folder, val_fraction=0.0, labels="none")
  folder_source, _, _ = roles.open_data(data, "train")
  return {**pipeline.jax_worker(READ, batches, None, data=folder_source), "framework": kind}


def read_part(work: pathlib.Path, tf_python: str) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pipeline  # pylint: disable=g-import-not-at-top
  from jaxssl.data import pack  # pylint: disable=g-import-not-at-top
  jpegs = work / "jpegs"
  if not jpegs.exists():
    pipeline.write_jpegs(READ, work / "jpegs.npz")
    encoded, _ = pipeline.read_jpegs(str(work / "jpegs.npz"))
    jpegs.mkdir()
    for i, data in enumerate(encoded):
      (jpegs / f"{i:05d}.jpg").write_bytes(bytes(data))
  packed = work / "packed"
  if not packed.exists():
    pack.pack(str(jpegs), str(packed), cache_dir=str(work / "idx"))
  me = str(pathlib.Path(__file__).resolve())
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAXSSL_CACHE_DIR": str(work / "idx")}
  rows = []
  for kind, folder, python in (("files", jpegs, sys.executable),
                               ("packed", packed, sys.executable),
                               ("tf.data", jpegs, tf_python)):
    done = subprocess.run([python, me, "--worker", "tf" if kind == "tf.data" else kind,
                           "--folder", str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          text=True, check=True)
    rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "framework": kind})
  tf_rate = rows[-1]["pairs_per_s"]
  print(f"\nTwo-view pairs/s at 224 from a folder of {READ['examples']:,} JPEGs (300-500 px), "
        f"batch {READ['batch']}, {os.cpu_count()} cores\n"
        "| reader | pairs/s | host side alone | / tf.data |\n|---|---:|---:|---:|")
  for row in rows:
    host = row.get("host_only", {}).get("pairs_per_s")
    print(f"| {row['framework']} | {row['pairs_per_s']:.0f} | "
          f"{f'{host:.0f}' if host else '-'} | {row['pairs_per_s'] / tf_rate:.2f}x |")
  return {"settings": READ, "rows": rows,
          "ratios": {r["framework"]: r["pairs_per_s"] / tf_rate for r in rows},
          "median_passes": {r["framework"]: float(np.median(r["passes"])) for r in rows}}


def first_step_part(files: int, work: pathlib.Path) -> dict:
  root = work / "small"
  if not root.exists():
    small_files(root, files)
  out = {}
  for label in ("index cold", "index cached"):
    if label == "index cold":
      shutil.rmtree(work / "idx_first", ignore_errors=True)
    shutil.rmtree(work / "run", ignore_errors=True)
    command = [sys.executable, "-m", "jaxssl.train", "--config",
               "configs/vicreg_folder.py:cpu,smoke", "--workdir", str(work / "run"),
               f"--config.data.path={root}", f"--config.data.index_dir={work / 'idx_first'}",
               "--config.train.steps=1", "--config.train.log_every=1"]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "JAX_PLATFORMS": "cpu"})
    out[label] = time.perf_counter() - start
  print(f"\nSeconds from the command to its first step on {files:,} files (smoke model: "
        "start-up, index, compile, one step)\n| index cold | index cached |\n|---:|---:|\n"
        f"| {out['index cold']:.1f} | {out['index cached']:.1f} |")
  return {"files": files, **out}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", default="index,read,first_step")
  parser.add_argument("--files", type=int, default=100_000)
  parser.add_argument("--tf-python", default=str(ROOT / ".venv-tf" / "bin" / "python"))
  parser.add_argument("--work", help="where the generated folders go (default: a temporary "
                      "directory, removed afterwards)")
  parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "folder.json"))
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--folder", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(read_worker(args.worker, args.folder, READ["batches"])))
    return
  parts = [p for p in args.parts.split(",") if p]
  if "read" in parts and not pathlib.Path(args.tf_python).exists():
    raise SystemExit(f"No TensorFlow interpreter at {args.tf_python}: python -m venv .venv-tf "
                     "&& .venv-tf/bin/pip install tensorflow-cpu (or pass --tf-python).")
  with tempfile.TemporaryDirectory(dir=args.work) as tmp:
    work = pathlib.Path(args.work or tmp)
    results = {}
    if "index" in parts:
      results["index"] = index_part(args.files, work)
    if "read" in parts:
      results["read"] = read_part(work, args.tf_python)
    if "first_step" in parts:
      results["first_step"] = first_step_part(args.files, work)
  out = pathlib.Path(args.out)
  previous = json.loads(out.read_text()) if out.exists() else {}
  previous.update(results)
  previous["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                         "date": time.strftime("%Y-%m-%d")}
  out.write_text(json.dumps(previous, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
