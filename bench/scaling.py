"""The regulariser's per-device cost as the device count grows, the global batch fixed.

  python bench/scaling.py [--devices 1 2 4 8] [--out bench/results/scaling.json]

For each device count (XLA's virtual CPU devices, one subprocess each) and each loss, the
forward + backward of the loss over a global batch sharded on the mesh, in three forms:

  jaxssl      the loss inside ``jax.shard_map`` with ``axis_name``: each device does its rows'
              share of the Gram matrices and the collectives carry only partial sums.
  jit         the loss as plain ``jnp`` code on the sharded global batch under ``jax.jit``
              (XLA partitions it and inserts the collectives).
  reference   the pattern of the official code: all-gather both views' embeddings, then every
              device computes the full loss (``FullGatherLayer`` + ``D x D`` covariances).

Reported per device: FLOPs of the compiled per-device program (XLA's cost analysis), bytes
that its collectives produce per step (the sum of the output sizes of every all-gather,
all-reduce, reduce-scatter and all-to-all in the optimised HLO), and the median time. Virtual
CPU devices share this machine's cores, so time does not fall with the device count here;
FLOPs and bytes are what carry over to real devices.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = [("vicreg", 2048, 8192), ("vicreg", 4096, 1024), ("corinfomax", 2048, 512)]
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all")
DTYPE_BYTES = {"f32": 4, "f64": 8, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1}


def collective_bytes(hlo: str) -> dict[str, int]:
  """Output bytes of each kind of collective in an optimised HLO module (async pairs are
  counted once, at their ``-start``)."""
  totals = {kind: 0 for kind in COLLECTIVES}
  for line in hlo.splitlines():
    match = re.search(r"= (\(?[^=]*?\)?) (all-gather|all-reduce|reduce-scatter|all-to-all)"
                      r"(-start)?\(", line)
    if not match:
      continue
    for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", match.group(1)):
      if dtype not in DTYPE_BYTES:
        continue
      size = 1
      for d in filter(None, dims.split(",")):
        size *= int(d)
      totals[match.group(2)] += size * DTYPE_BYTES[dtype]
  return totals


def worker(devices: int) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  from jaxssl import distributed, losses

  assert jax.device_count() == devices, (jax.device_count(), devices)
  mesh = distributed.data_mesh()
  axis = mesh.axis_names[0]
  rows = []
  for name, n, d in CASES:
    rng = np.random.default_rng(0)
    z = [jax.device_put(jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
                        NamedSharding(mesh, P(axis))) for _ in range(2)]
    if name == "vicreg":
      loss = lambda a, b, axis_name=None: losses.vicreg(a, b, axis_name=axis_name)[0]
    else:
      state = losses.corinfomax_init(d)
      loss = lambda a, b, axis_name=None: losses.corinfomax(state, a, b,
                                                            axis_name=axis_name)[0]

    def per_device(a, b):
      return jax.value_and_grad(lambda a, b: loss(a, b, axis), argnums=(0, 1))(a, b)

    def reference(a, b):
      full = lambda x: jax.lax.all_gather(x, axis, tiled=True)
      value, grads = jax.value_and_grad(lambda a, b: loss(full(a), full(b)),
                                        argnums=(0, 1))(a, b)
      return value, grads

    mapped = lambda fn: jax.shard_map(fn, mesh=mesh, in_specs=(P(axis), P(axis)),
                                      out_specs=(P(), (P(axis), P(axis))), check_vma=False)
    forms = {"jaxssl": jax.jit(mapped(per_device)),
             "jit": jax.jit(jax.value_and_grad(loss, argnums=(0, 1))),
             "reference": jax.jit(mapped(reference))}
    for form, fn in forms.items():
      compiled = fn.lower(*z).compile()
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, list) else cost
      moved = collective_bytes(compiled.as_text())
      run = lambda: jax.block_until_ready(compiled(*z))
      run()
      times = []
      for _ in range(5):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
      rows.append({"loss": name, "n": n, "d": d, "devices": devices, "form": form,
                   "flops_per_device": float(cost.get("flops", 0.0)),
                   "collective_bytes": moved, "bytes_per_device": sum(moved.values()),
                   "ms": 1e3 * statistics.median(times)})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
  parser.add_argument("--out", default="bench/results/scaling.json")
  parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args.worker)))
    return
  rows = []
  for n in args.devices:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, __file__, "--worker", str(n)], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode:
      raise SystemExit(f"the {n}-device worker failed (its error is above).")
    rows += json.loads(proc.stdout.strip().splitlines()[-1])
  base = {(r["loss"], r["n"], r["d"], r["form"]): r["flops_per_device"]
          for r in rows if r["devices"] == min(args.devices)}
  header = (f"{'loss':<11}{'N':>6}{'D':>6}{'devices':>8}  {'form':<10}{'GFLOP/device':>13}"
            f"{'x 1-device':>11}{'MB moved':>10}{'ms':>9}")
  print(header)
  print("-" * len(header))
  for r in rows:
    r["flops_vs_fewest"] = r["flops_per_device"] / base[(r["loss"], r["n"], r["d"], r["form"])]
    print(f"{r['loss']:<11}{r['n']:>6}{r['d']:>6}{r['devices']:>8}  {r['form']:<10}"
          f"{r['flops_per_device'] / 1e9:>13.2f}{r['flops_vs_fewest']:>11.3f}"
          f"{r['bytes_per_device'] / 1e6:>10.1f}{r['ms']:>9.1f}")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"machine": {"platform": platform.platform(),
                                         "cpus": os.cpu_count(),
                                         "date": time.strftime("%Y-%m-%d")},
                             "cases": CASES, "rows": rows}, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
