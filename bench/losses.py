"""Loss kernels, forward + backward, float32: jaxssl against the official formulas in PyTorch.

Both run in this process on the same CPU threads. The PyTorch side is written here from each
method's official code (feature-space D x D covariances; CorInfoMax with its float64 running
covariance). Each row reports the median time after warm-up (jit compile time apart), the
speed-up over PyTorch, and the time against the loss's FLOP floor: the matmul/factorisation
FLOPs of forward + backward of the cheapest exact form, at this machine's measured float32
matmul rate.

  python bench/losses.py [--quick] [--out bench/results/losses.json]

Needs PyTorch (a benchmark-only extra: `pip install torch`, the CPU build is enough).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import losses

import torch_reference as ref
from torch_reference import torch

# The PyTorch side runs where JAX's default backend runs: CUDA when JAX sees a GPU.
TORCH_DEVICE = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"

TWO_VIEW_SIZES = [(256, 2048), (512, 8192), (2048, 8192)]
SMALL_DIM_SIZES = [(512, 64), (512, 128), (1536, 512)]  # CorInfoMax and W-MSE embeddings


# ---- the FLOP floors (forward + backward of the cheapest exact form) --------------------

def floor_flops(name, n, d, w_size=None):
  """Matmul/factorisation FLOPs of forward + backward: each Gram matmul costs 3x forward."""
  gram = min(2 * n * n * d, 2 * n * d * d)
  if name == "vicreg":
    return 2 * 3 * gram  # one Gram per view
  if name == "barlow_twins":
    return 3 * min(4 * n * n * d, 2 * n * d * d)
  if name == "corinfomax":
    return 2 * (3 * 2 * n * d * d + d**3 / 3 + d**3)  # covariance, Cholesky, its inverse
  if name == "wmse":
    blocks = n // w_size
    per_block = 3 * (2 * w_size * d * d + 2 * w_size * d * d) + 2 * d**3 / 3 + d**3
    return 2 * blocks * per_block
  if name == "info_vicreg":
    m = min(n, d)
    return 2 * (3 * gram + m**3 / 3 + m**3)
  raise KeyError(name)


# ---- timing ------------------------------------------------------------------------------

def median_seconds(fn, min_reps=3, min_seconds=1.0):
  times = []
  while len(times) < min_reps or sum(times) < min_seconds:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
    if len(times) >= 50:
      break
  return statistics.median(times)


MATMUL_N = 4096 if TORCH_DEVICE == "cuda" else 2048


def matmul_gflops(n=MATMUL_N):
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  return 2 * n**3 / median_seconds(lambda: mm(a).block_until_ready()) / 1e9


def time_jax(loss, z_a, z_b):
  grad_fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  start = time.perf_counter()
  jax.block_until_ready(grad_fn(z_a, z_b))
  compile_s = time.perf_counter() - start
  run = lambda: jax.block_until_ready(grad_fn(z_a, z_b))
  run()
  return median_seconds(run), compile_s


def time_torch(loss, z_a, z_b):
  a = torch.from_numpy(np.asarray(z_a)).to(TORCH_DEVICE).requires_grad_(True)
  b = torch.from_numpy(np.asarray(z_b)).to(TORCH_DEVICE).requires_grad_(True)

  def run():
    a.grad = b.grad = None
    loss(a, b).backward()
    if TORCH_DEVICE == "cuda":
      torch.cuda.synchronize()
  run()
  return median_seconds(run)


def cases(quick):
  two_view = TWO_VIEW_SIZES[:2] if quick else TWO_VIEW_SIZES
  small = SMALL_DIM_SIZES[:2] if quick else SMALL_DIM_SIZES
  for n, d in two_view:
    yield "vicreg", n, d, None, lambda a, b: losses.vicreg(a, b)[0], ref.torch_vicreg
    yield "barlow_twins", n, d, None, lambda a, b: losses.barlow_twins(a, b)[0], ref.torch_barlow
    yield ("info_vicreg", n, d, None, lambda a, b: losses.info_vicreg(a, b)[0],
           ref.torch_info_vicreg_logdet)
  for n, d in small:
    state = losses.corinfomax_init(d)
    yield ("corinfomax", n, d, None, lambda a, b, s=state: losses.corinfomax(s, a, b)[0],
           ref.TorchCorInfoMax(d, device=TORCH_DEVICE))
    # Sub-batches of twice the embedding size as in the official recipe, where they divide N.
    w = 2 * d if n % (2 * d) == 0 else n // 2
    key = jax.random.key(0)
    yield ("wmse", n, d, w, lambda a, b, w=w: losses.wmse(a, b, w_size=w, key=key)[0],
           lambda a, b, w=w: ref.torch_wmse(a, b, w))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="skip the largest size of each")
  parser.add_argument("--only", nargs="*", help="run only these losses (e.g. wmse)")
  parser.add_argument("--out", default="bench/results/losses.json")
  args = parser.parse_args()
  torch.set_num_threads(max(1, torch.get_num_threads()))
  rate = matmul_gflops()
  print(f"float32 matmul: {rate:.0f} GFLOP/s (JAX, {MATMUL_N}^3) on {jax.devices()[0].device_kind};"
        f" torch on {TORCH_DEVICE} ({torch.get_num_threads()} CPU threads); jax "
        f"{jax.__version__}, torch {torch.__version__}")
  header = (f"{'loss':<13}{'N':>6}{'D':>6} {'jaxssl ms':>10} {'torch ms':>10} {'speed-up':>9}"
            f" {'floor ms':>9} {'x floor':>8} {'compile s':>10}")
  print(header)
  print("-" * len(header))
  rows = []
  rng = np.random.default_rng(0)
  for name, n, d, w, jax_loss, torch_loss in cases(args.quick):
    if args.only and name not in args.only:
      continue
    z_a = rng.normal(size=(n, d)).astype(np.float32)
    z_b = (z_a + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    jax_s, compile_s = time_jax(jax_loss, jnp.asarray(z_a), jnp.asarray(z_b))
    torch_s = time_torch(torch_loss, z_a, z_b)
    floor_s = floor_flops(name, n, d, w) / (rate * 1e9)
    row = {"loss": name, "n": n, "d": d, "w_size": w, "jaxssl_ms": 1e3 * jax_s,
           "torch_ms": 1e3 * torch_s, "speedup": torch_s / jax_s, "floor_ms": 1e3 * floor_s,
           "x_floor": jax_s / floor_s, "compile_s": compile_s}
    rows.append(row)
    print(f"{name:<13}{n:>6}{d:>6} {row['jaxssl_ms']:>10.1f} {row['torch_ms']:>10.1f}"
          f" {row['speedup']:>8.1f}x {row['floor_ms']:>9.1f} {row['x_floor']:>7.2f}x"
          f" {compile_s:>10.2f}", flush=True)
    write_results(args.out, rate, rows)  # after every row: a long run keeps what it measured
  print(f"wrote {args.out}")


def write_results(path, rate, rows):
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({
      "machine": {"platform": platform.platform(), "device": jax.devices()[0].device_kind,
                  "torch_device": TORCH_DEVICE, "jax": jax.__version__,
                  "torch": torch.__version__, "matmul_gflops": rate,
                  "matmul_precision": str(jax.config.jax_default_matmul_precision)},
      "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
