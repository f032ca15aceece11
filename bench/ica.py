"""Linear ICA: jaxssl's VCReg unmixing (jaxssl.ica.fit, both methods: the default pairwise
Jacobi sweeps and the paper's joint gradient descent) side by side with scikit-learn's
FastICA on the same mixtures, k = 2, 8, 32 (Laplace and mixed sources, N = 10,000, random
mixing with condition number 4). Prints the Amari distances and wall times, writes JSON and a
PNG of the true vs recovered sources for k = 2.

With ``--projectors``, instead: the Jacobi sweeps' Amari distance under three frozen
projectors (jaxssl.ica's threshold projector, a random one, a random one with its kinks spread
evenly) and FastICA's, k = 2, 4, 8, three seeds each.

  python bench/ica.py [--out bench/results/ica.json] [--png bench/results/ica_k2.png]
  python bench/ica.py --projectors [--out bench/results/ica_projectors.json]

Needs scikit-learn (a benchmark and test extra) and matplotlib.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import numpy as np

from jaxssl import ica

try:
  import sklearn
  from sklearn.decomposition import FastICA
except ImportError as err:  # pragma: no cover
  raise SystemExit("bench/ica.py compares against FastICA: pip install scikit-learn") from err

N = 10_000
CASES = [(2, "laplace"), (8, "laplace"), (8, "mixed"), (32, "laplace"), (32, "mixed")]
PROJECTOR_CASES = [(2, "laplace"), (4, "laplace"), (8, "laplace"), (8, "mixed")]
PROJECTOR_SEEDS = (0, 1, 2)


def fastica(x, k, seed):
  start = time.perf_counter()
  model = FastICA(k, whiten="unit-variance", random_state=seed, max_iter=1000).fit(x)
  return model.components_, time.perf_counter() - start


def plot_k2(path, s, result, a):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  x = s @ a.T
  # Match each recovered component to its source (permutation and sign) for the plot.
  corr = np.corrcoef(result.sources, s, rowvar=False)[:2, 2:]
  order = np.argmax(np.abs(corr), axis=0)
  recovered = result.sources[:, order] * np.sign(corr[order, [0, 1]])
  fig, axes = plt.subplots(1, 3, figsize=(12, 4))
  for ax, data, title in zip(axes, (s, x, recovered),
                             ("true sources", "mixtures", "recovered (VCReg)")):
    ax.scatter(data[:2000, 0], data[:2000, 1], s=2, alpha=0.4)
    ax.set_title(title)
    ax.set_aspect("equal", "datalim")
  fig.suptitle(f"k = 2 Laplace sources, Amari distance "
               f"{ica.amari_distance(result.unmixing @ a):.4f}")
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)


def machine():
  return {"platform": platform.platform(), "device": jax.devices()[0].device_kind,
          "jax": jax.__version__, "sklearn": sklearn.__version__}


def projectors(seed):
  """The three frozen projectors the sweeps are compared under (32 features each)."""
  width, reach = ica.Jacobi().width, ica.Jacobi().reach
  random = ica.projector_init(jax.random.split(jax.random.key(seed), 3)[0], width)
  spread = -random["a"][0] * jax.numpy.linspace(-reach, reach, width)
  return {"threshold": ica.threshold_projector(width, reach),
          "random": random, "random_spread": dict(random, b=spread)}


def compare_projectors(out):
  rows = []
  print(f"{'k':>3} {'sources':<9} {'seed':>4} {'threshold':>10} {'random':>10} "
        f"{'spread':>10} {'FastICA':>10}", flush=True)
  for k, kind in PROJECTOR_CASES:
    for seed in PROJECTOR_SEEDS:
      s = ica.make_sources(N, k, kind, seed)
      a = ica.random_mixing(k, seed)
      x = s @ a.T
      mean, v = ica.whitening(x)
      xw = jax.numpy.asarray((x - mean) @ v.T, jax.numpy.float32)
      row = {"k": k, "sources": kind, "seed": seed,
             "fastica_amari": ica.amari_distance(fastica(x, k, seed)[0] @ a)}
      for name, h in projectors(seed).items():
        q, _, _ = ica.jacobi_rotation(xw, h)
        row[f"{name}_amari"] = ica.amari_distance(q @ v @ a)
      rows.append(row)
      print(f"{k:>3} {kind:<9} {seed:>4} {row['threshold_amari']:>10.4f} "
            f"{row['random_amari']:>10.4f} {row['random_spread_amari']:>10.4f} "
            f"{row['fastica_amari']:>10.4f}", flush=True)
  means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if "amari" in key}
  print("mean   " + "  ".join(f"{key} {value:.4f}" for key, value in means.items()))
  out.write_text(json.dumps({"machine": machine(),
                             "settings": {"n": N, "width": ica.Jacobi().width,
                                          "reach": ica.Jacobi().reach},
                             "rows": rows, "means": means}, indent=2))
  print(f"wrote {out}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=None,
                      help="default bench/results/ica.json (ica_projectors.json)")
  parser.add_argument("--png", default="bench/results/ica_k2.png")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--projectors", action="store_true",
                      help="compare the sweeps' frozen projectors instead")
  args = parser.parse_args()
  out = pathlib.Path(args.out or ("bench/results/ica_projectors.json" if args.projectors
                                  else "bench/results/ica.json"))
  out.parent.mkdir(parents=True, exist_ok=True)
  if args.projectors:
    compare_projectors(out)
    return
  rows = []
  print(f"{'k':>3} {'sources':<9} {'jacobi amari':>12} {'gradient amari':>14} "
        f"{'FastICA amari':>14} {'jacobi s':>9} {'gradient s':>10} {'FastICA s':>10}",
        flush=True)
  for k, kind in CASES:
    s = ica.make_sources(N, k, kind, args.seed)
    a = ica.random_mixing(k, args.seed)
    x = s @ a.T
    jacobi = ica.fit(x, ica.Jacobi())
    gradient = ica.fit(x, ica.Gradient(seed=args.seed))
    fast_w, fast_s = fastica(x, k, args.seed)
    row = {"k": k, "sources": kind, "n": N,
           "jacobi_amari": ica.amari_distance(jacobi.unmixing @ a),
           "gradient_amari": ica.amari_distance(gradient.unmixing @ a),
           "fastica_amari": ica.amari_distance(fast_w @ a), "jacobi_s": jacobi.seconds,
           "jacobi_sweeps": jacobi.sweeps, "gradient_s": gradient.seconds, "fastica_s": fast_s,
           "gaussian_components": jacobi.gaussian_components}
    rows.append(row)
    print(f"{k:>3} {kind:<9} {row['jacobi_amari']:>12.4f} {row['gradient_amari']:>14.4f} "
          f"{row['fastica_amari']:>14.4f} {row['jacobi_s']:>9.1f} {row['gradient_s']:>10.1f} "
          f"{row['fastica_s']:>10.2f}", flush=True)
    if k == 2:
      plot_k2(args.png, s, jacobi, a)
  out.write_text(json.dumps({
      "machine": machine(),
      "settings": {"n": N, "seed": args.seed,
                   "fit": "jaxssl.ica.fit defaults (jacobi); fit(method='gradient')"},
      "rows": rows}, indent=2))
  print(f"wrote {out} and {args.png}")


if __name__ == "__main__":
  main()
