"""Each loss in float32 against float64 on the default device, at JAX's default matmul
precision and at "highest".

The losses' statistics are matmuls: Gram matrices, covariances, pairwise distances. JAX runs
a float32 matmul at its platform's default precision: true float32 on a CPU, TF32 (a 10-bit
mantissa) on NVIDIA GPUs since Ampere, one bfloat16 pass on a TPU. This measures what that
does to each loss at the recipes' shapes: the relative error of the value, of each term, and
of the gradient with respect to both views (``|g - g64| / |g64|``), against the same loss in
float64 on the same device; and the time of forward + backward at each precision (median
after warm-up). The embeddings have a mean, a decaying spectrum and a noise floor, and the
second view is the first one perturbed, as a projector's outputs are.

  python bench/precision.py [--quick] [--out bench/results/precision_<platform>.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)  # the float64 reference; float32 inputs stay so

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxssl import losses  # noqa: E402
from train_step import median_seconds  # noqa: E402  (bench/, the script's directory)


def embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Two views ``(n, d)``: a mean, a rank-min(d, 256) signal with a 1/sqrt(k) spectrum and a
  noise floor; the second view is the first plus noise."""
  rng = np.random.default_rng(seed)
  rank = min(d, 256)
  scale = (1.0 + np.arange(rank)) ** -0.5
  signal = rng.normal(size=(n, rank)) @ (rng.normal(size=(rank, d)) * scale[:, None])
  z_a = 0.5 * rng.normal(size=d) + signal + 0.3 * rng.normal(size=(n, d))
  return z_a, z_a + 0.3 * rng.normal(size=(n, d))


def cases(quick: bool):
  """(name, n, d, loss) with ``loss(z_a, z_b) -> (value, {term: value})``, at the shapes of
  the Fashion-MNIST recipes (256 per view) and of the ImageNet ones (8192 wide)."""
  wide = [(256, 1024)] if quick else [(256, 1024), (512, 8192), (2048, 8192)]
  for n, d in wide:
    yield "vicreg", n, d, losses.vicreg
    yield "barlow_twins", n, d, losses.barlow_twins
  for n, d in wide[:2]:
    yield "info_vicreg logdet", n, d, lambda a, b: losses.info_vicreg(a, b, sim_coeff=25.0)
    yield "info_vicreg pairdist", n, d, lambda a, b: losses.info_vicreg(
        a, b, estimator="pairdist", sigma=4.0)
  for n, d in [(256, 64)] if quick else [(256, 64), (512, 128)]:

    def corinfomax(a, b, d=d):  # one step from the initial state, the recipe's settings
      state = losses.corinfomax_init(d)
      loss, (_, aux) = losses.corinfomax(state, a, b, alpha=250.0, la_R=0.01, la_mu=0.01,
                                         eps=1e-8)
      return loss, aux
    yield "corinfomax", n, d, corinfomax
    yield "wmse", n, d, lambda a, b, d=d: losses.wmse(a, b, w_size=2 * d)


def measure(loss, z_a: np.ndarray, z_b: np.ndarray) -> dict:
  """The loss's float32 errors against float64 at each matmul precision, and its times."""

  def value_and_grads(a, b):
    (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(a, b)
    return value, aux, jnp.concatenate(grads)

  with jax.default_matmul_precision("highest"):
    value64, aux64, grad64 = jax.jit(value_and_grads)(z_a, z_b)
  a32, b32 = jnp.asarray(z_a, jnp.float32), jnp.asarray(z_b, jnp.float32)
  grad64 = np.asarray(grad64)
  out = {}
  for precision in ("default", "highest"):
    with jax.default_matmul_precision(precision):
      fn = jax.jit(value_and_grads)
      value, aux, grad = fn(a32, b32)
      run = lambda: jax.block_until_ready(fn(a32, b32))
      run()  # the value's call may still be running
      seconds = median_seconds(run, 10)
    assert value.dtype == jnp.float32, value.dtype
    # Relative; absolute where the float64 value is 0 (a hinge that no feature reaches).
    rel = lambda got, want: abs(float(got) - float(want)) / (abs(float(want)) or 1.0)
    out[precision] = {
        "value": rel(value, value64),
        "terms": {k: rel(aux[k], aux64[k]) for k in aux64},
        "grad": float(np.linalg.norm(np.asarray(grad, np.float64) - grad64)
                      / np.linalg.norm(grad64)),
        "ms": 1e3 * seconds}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="the small shapes only")
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  device = jax.devices()[0]
  out = pathlib.Path(args.out or f"bench/results/precision_{device.platform}.json")
  print(f"{device.device_kind} ({device.platform}); jax {jax.__version__}; relative error of "
        "float32 against float64, at the default matmul precision / at 'highest'")
  print(f"{'loss':<22}{'N':>6}{'D':>6}  {'value':>17}  {'gradient':>17}  {'ms':>15}  worst term")
  rows = []
  for name, n, d, loss in cases(args.quick):
    z_a, z_b = embeddings(n, d)
    r = {"loss": name, "n": n, "d": d, **measure(loss, z_a, z_b)}
    rows.append(r)
    lo, hi = r["default"], r["highest"]
    term = max(lo["terms"], key=lo["terms"].get)
    print(f"{name:<22}{n:>6}{d:>6}  {lo['value']:>8.1e} {hi['value']:>8.1e}  "
          f"{lo['grad']:>8.1e} {hi['grad']:>8.1e}  {lo['ms']:>7.2f} {hi['ms']:>7.2f}  "
          f"{term} {lo['terms'][term]:.1e} / {hi['terms'][term]:.1e}", flush=True)
    write(out, device, rows)
  print(f"wrote {out}")


def write(out: pathlib.Path, device, rows: list) -> None:
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({
      "device": device.device_kind, "platform": device.platform, "jax": jax.__version__,
      "written_on": platform.platform(), "date": time.strftime("%Y-%m-%d"), "rows": rows},
      indent=2))


if __name__ == "__main__":
  main()
