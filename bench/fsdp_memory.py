"""The train state's memory per device, replicated against FSDP-sharded
(``train.state_sharding``), from the compiled VICReg step's own memory analysis.

    python bench/fsdp_memory.py                          # ViT-B/16 (vicreg_imagenet:vit_b16)
    python bench/fsdp_memory.py --config vicreg_imagenet:vit_s16 --devices 1,2,4,8

Compiles (does not run) the step on 1 to 8 XLA CPU devices for each strategy: the arguments'
bytes on one device (the state, plus the device's share of a batch of 8 images per device)
against the state's total. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxssl import config as config_lib  # noqa: E402
from jaxssl.data import source  # noqa: E402
from jaxssl.train import run as run_lib  # noqa: E402


def measure(config: str, strategy: str, devices: int, per_device_batch: int = 8) -> dict:
  path, _, switches = config.partition(":")
  c = config_lib.load(f"{ROOT / 'configs' / path}.py" + (f":{switches}" if switches else ""))
  c.train.state_sharding = strategy
  c.train.global_batch = per_device_batch * devices
  size = c.aug.view_a.out_size
  info = source.SplitInfo(c.data.name, c.data.train_split, 1_281_167, (size, size, 3), 1000)
  run = run_lib.Run(c, devices=jax.devices()[:devices], info=info)
  state = run.abstract_state()
  # Images the host has cropped (the ImageNet recipes): both views' uint8 crops.
  shape = (c.train.global_batch, size, size, 3)
  batch = {"view_a": jax.ShapeDtypeStruct(shape, np.uint8),
           "view_b": jax.ShapeDtypeStruct(shape, np.uint8),
           "label": jax.ShapeDtypeStruct((c.train.global_batch,), np.int32)}
  start = time.perf_counter()
  analysis = run.train_step().lower(state, batch).compile().memory_analysis()
  batch_bytes = (2 * np.prod(shape) + 4 * c.train.global_batch) // devices
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  return {"strategy": strategy, "devices": devices,
          "state_bytes_per_device": int(analysis.argument_size_in_bytes - batch_bytes),
          "state_bytes": int(total), "temp_bytes": int(analysis.temp_size_in_bytes),
          "compile_s": time.perf_counter() - start}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="vicreg_imagenet:vit_b16")
  parser.add_argument("--devices", default="1,8")
  parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fsdp_memory.json"))
  args = parser.parse_args()
  rows = []
  print(f"{args.config}: state bytes per device from the compiled step")
  print(f"{'strategy':<12}{'devices':>8}{'state MiB/device':>18}{'x total':>9}"
        f"{'temp MiB':>10}{'compile s':>11}")
  for devices in [int(d) for d in args.devices.split(",")]:
    for strategy in ("replicated", "fsdp"):
      if devices == 1 and strategy == "fsdp":
        continue  # (the same program)
      r = measure(args.config, strategy, devices)
      rows.append(r)
      print(f"{strategy:<12}{devices:>8}{r['state_bytes_per_device'] / 2**20:>18.1f}"
            f"{r['state_bytes_per_device'] / r['state_bytes']:>9.3f}"
            f"{r['temp_bytes'] / 2**20:>10.1f}{r['compile_s']:>11.1f}", flush=True)
  pathlib.Path(args.out).write_text(json.dumps({"config": args.config, "rows": rows},
                                               indent=1) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
