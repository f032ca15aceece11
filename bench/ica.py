"""Linear ICA: jaxssl's VCReg unmixing (jaxssl.ica.fit) side by side with scikit-learn's
FastICA on the same mixtures, k = 2, 8, 32 (the defaults, and ``ica.MANY_SOURCES``: Jacobi
sweeps then a frozen-projector refinement) (Laplace and mixed sources, N = 10,000, random
mixing with condition number 4). Prints the Amari distances and wall times, writes JSON and a
PNG of the true vs recovered sources for k = 2.

  python bench/ica.py [--out bench/results/ica.json] [--png bench/results/ica_k2.png]

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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="bench/results/ica.json")
  parser.add_argument("--png", default="bench/results/ica_k2.png")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rows = []
  print(f"{'k':>3} {'sources':<9} {'VCReg amari':>12} {'+Jacobi amari':>14} "
        f"{'FastICA amari':>14} {'VCReg s':>8} {'+Jacobi s':>10} {'FastICA s':>10}",
        flush=True)
  for k, kind in CASES:
    s = ica.make_sources(N, k, kind, args.seed)
    a = ica.random_mixing(k, args.seed)
    x = s @ a.T
    result = ica.fit(x, seed=args.seed)
    jacobi = ica.fit(x, seed=args.seed, **ica.MANY_SOURCES)
    fast_w, fast_s = fastica(x, k, args.seed)
    row = {"k": k, "sources": kind, "n": N, "vcreg_amari": ica.amari_distance(result.unmixing @ a),
           "jacobi_amari": ica.amari_distance(jacobi.unmixing @ a),
           "fastica_amari": ica.amari_distance(fast_w @ a), "vcreg_s": result.seconds,
           "jacobi_s": jacobi.seconds, "jacobi_sweeps": jacobi.sweeps, "fastica_s": fast_s,
           "gaussian_components": result.gaussian_components}
    rows.append(row)
    print(f"{k:>3} {kind:<9} {row['vcreg_amari']:>12.4f} {row['jacobi_amari']:>14.4f} "
          f"{row['fastica_amari']:>14.4f} {row['vcreg_s']:>8.1f} {row['jacobi_s']:>10.1f} "
          f"{row['fastica_s']:>10.2f}", flush=True)
    if k == 2:
      plot_k2(args.png, s, result, a)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({
      "machine": {"platform": platform.platform(), "device": jax.devices()[0].device_kind,
                  "jax": jax.__version__, "sklearn": sklearn.__version__},
      "settings": {"n": N, "seed": args.seed,
                   "fit": "jaxssl.ica.fit defaults; +Jacobi: fit(**ica.MANY_SOURCES)",
                   "many_sources": ica.MANY_SOURCES},
      "rows": rows}, indent=2))
  print(f"wrote {out} and {args.png}")


if __name__ == "__main__":
  main()
