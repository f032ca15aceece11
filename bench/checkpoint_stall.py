"""How long a checkpoint save holds up the training loop: a local workdir against a gs://
workdir on a GCS emulator (fake-gcs-server on this machine), side by side in one run.

    python bench/checkpoint_stall.py                         # the CPU default's train state
    python bench/checkpoint_stall.py --config vicreg_imagenet:vit_s16 --saves 5

For each store, ``--saves`` saves of the config's real train state (``jaxssl.train.checkpoint
.save``, as the loop calls it, asynchronous Orbax): the time the call holds the loop (the
stall), and the time until the save is committed (``wait_until_finished``). Saves alternate
between the stores, so both see the same machine load. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from jaxssl import config as config_lib, storage  # noqa: E402
from jaxssl.data import source  # noqa: E402
from jaxssl.train import checkpoint, run as run_lib  # noqa: E402
from tests.gcs_emulator import Emulator  # noqa: E402


def train_state(config: str):
  path, _, switches = config.partition(":")
  c = config_lib.load(f"{ROOT / 'configs' / path}.py" + (f":{switches}" if switches else ""))
  size = c.aug.view_a.out_size
  info = None
  if c.data.name != "fashion_mnist_idx":  # no data needed: the state's shapes only
    info = source.SplitInfo(c.data.name, c.data.train_split, 1_281_167, (size, size, 3), 1000)
  run = run_lib.Run(c, devices=jax.devices()[:1], info=info)
  return run.init_state()


def measure(workdirs: dict[str, str], state, saves: int) -> dict[str, dict]:
  managers = {name: checkpoint.manager(w, keep=2) for name, w in workdirs.items()}
  times = {name: {"stall_s": [], "commit_s": []} for name in workdirs}
  try:
    for step in range(saves + 1):  # the first save of each store warms up (not counted)
      for name, mngr in managers.items():
        start = time.perf_counter()
        checkpoint.save(mngr, step, state)
        stalled = time.perf_counter() - start
        mngr.wait_until_finished()
        if step:
          times[name]["stall_s"].append(stalled)
          times[name]["commit_s"].append(time.perf_counter() - start)
  finally:
    for mngr in managers.values():
      mngr.close()
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="vicreg_fashion_mnist")
  parser.add_argument("--saves", type=int, default=10)
  parser.add_argument("--out", help="default: bench/results/checkpoint_stall_<config>.json")
  args = parser.parse_args()
  args.out = args.out or str(ROOT / "bench" / "results" /
                             f"checkpoint_stall_{args.config.replace(':', '_')}.json")
  state = train_state(args.config)
  state_mb = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) / 2**20
  with Emulator() as gcs, tempfile.TemporaryDirectory() as local:
    bucket = gcs.create_bucket("bench")
    os.environ.update(gcs.env)
    storage.connect_emulator()
    times = measure({"local disk": f"{local}/run", "gs:// (emulator)": f"{bucket}/run"},
                    state, args.saves)
  rows = {name: {k: statistics.median(v) for k, v in t.items()} | {"runs": t}
          for name, t in times.items()}
  print(f"{args.config}: train state {state_mb:.1f} MiB, {args.saves} saves per store "
        "(medians)\n")
  print("| workdir | loop stalled by save() | save committed after |")
  print("|---|---:|---:|")
  for name, row in rows.items():
    print(f"| {name} | {1000 * row['stall_s']:.1f} ms | {1000 * row['commit_s']:.1f} ms |")
  local, remote = rows["local disk"], rows["gs:// (emulator)"]
  print(f"\nstall ratio gs:// / local: {remote['stall_s'] / local['stall_s']:.2f}")
  result = {"config": args.config, "state_mib": state_mb, "saves": args.saves,
            "jax": jax.__version__, "rows": rows,
            "stall_ratio": remote["stall_s"] / local["stall_s"]}
  pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
