"""The quickstart's trainer end to end, side by side: images/s of ``python -m jaxssl.train``
on ``configs/vicreg_fashion_mnist.py`` (the real Fashion-MNIST, its input pipeline, the
online probe) under the settings the quickstart has had.

  python bench/quickstart.py                # 160 steps per setting, one round
  python bench/quickstart.py --rounds 2 --steps 120
  python bench/quickstart.py --rounds 2 --steps 120 --only "(the quickstart)" bfloat16 \
      --out bench/results/quickstart_bfloat16.json   # bfloat16 beside the quickstart

Settings: the XLA CPU device count, ``model.conv``, the host allocator (launch/_cpu.sh's
``GLIBC_TUNABLES``, or glibc's default 4 KiB pages) and ``model.dtype``; ``--only`` runs the
settings whose labels contain one of its words. Each runs as its own process in a fresh
workdir; the settings take turns round by round. A run's rate is the median of its logged
images/s over every log interval but the first (which holds the compilation); the table gives
the median over rounds, its wall time (start-up, compilation and the final k-NN included),
and the speed-up over the first setting run (of all: the quickstart before oneDNN and the
allocator).
Needs the Fashion-MNIST idx files (the Debian package dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from methods import cpu_kind  # noqa: E402  (this directory's)
from train_step import ALLOCATOR  # noqa: E402  (launch/_cpu.sh's setting)

HUGE = ALLOCATOR["GLIBC_TUNABLES"]
SETTINGS = (  # label, devices, model.conv, GLIBC_TUNABLES, model.dtype
    ("2 devices, conv fast, 4 KiB pages (before)", 2, "fast", "", "float32"),
    ("2 devices, conv fast", 2, "fast", HUGE, "float32"),
    ("2 devices, conv auto, 4 KiB pages", 2, "auto", "", "float32"),
    ("2 devices, conv auto (the quickstart)", 2, "auto", HUGE, "float32"),
    ("1 device, conv auto", 1, "auto", HUGE, "float32"),
    ("2 devices, conv auto, bfloat16", 2, "auto", HUGE, "bfloat16"),
)


def run(devices: int, conv: str, tunables: str, dtype: str, steps: int,
        workdir: pathlib.Path) -> dict:
  env = {**os.environ, "GLIBC_TUNABLES": tunables, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  log_every = max(1, steps // 4)
  command = [sys.executable, "-m", "jaxssl.train", "--config",
             "configs/vicreg_fashion_mnist.py", "--workdir", str(workdir),
             f"--config.model.conv={conv}", f"--config.model.dtype={dtype}",
             f"--config.train.steps={steps}",
             f"--config.train.log_every={log_every}"]
  start = time.perf_counter()
  done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if done.returncode:
    raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
  rates = [row["progress/images_per_s"] for row in map(json.loads, (workdir / "metrics.jsonl")
                                                       .read_text().splitlines())
           if "progress/images_per_s" in row]
  return {"images_per_s": statistics.median(rates[1:]), "intervals": rates, "wall_s": wall}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=160)
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--only", nargs="+", default=None,
                      help="run the settings whose labels contain one of these")
  parser.add_argument("--out", default="bench/results/quickstart.json")
  args = parser.parse_args()
  settings = [s for s in SETTINGS if not args.only or any(w in s[0] for w in args.only)]
  if not settings:
    parser.error(f"--only {args.only} matches no setting; the settings: "
                 f"{'; '.join(s[0] for s in SETTINGS)}")
  runs: dict[str, list[dict]] = {label: [] for label, *_ in settings}
  with tempfile.TemporaryDirectory() as tmp:
    for n in range(args.rounds):
      for i, (label, devices, conv, tunables, dtype) in enumerate(settings):
        r = run(devices, conv, tunables, dtype, args.steps, pathlib.Path(tmp) / f"{n}_{i}")
        runs[label].append(r)
        print(f"round {n + 1}: {label:<44}{r['images_per_s']:>8.1f} images/s"
              f"{r['wall_s']:>8.1f} s", flush=True)
  base = statistics.median(r["images_per_s"] for r in runs[settings[0][0]])
  rows = []
  print(f"\n{'setting':<44}{'images/s':>10}{'wall s':>9}{'speed-up':>10}")
  for label, results in runs.items():
    rate = statistics.median(r["images_per_s"] for r in results)
    wall = statistics.median(r["wall_s"] for r in results)
    rows.append({"setting": label, "images_per_s": rate, "wall_s": wall,
                 "speedup": rate / base, "runs": results})
    print(f"{label:<44}{rate:>10.1f}{wall:>9.1f}{rate / base:>9.2f}x")
  out = pathlib.Path(args.out)
  out.write_text(json.dumps({
      "steps": args.steps, "rounds": args.rounds, "rows": rows,
      "machine": {"cpu": cpu_kind(), "written_on": platform.platform(), "cpus": os.cpu_count(),
                  "date": time.strftime("%Y-%m-%d")}}, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
