"""ICA test problems and how to score them: independent sources, mixing matrices, the Amari
distance, and a normality test for recovered components."""

from __future__ import annotations

import math

import numpy as np

SOURCE_KINDS = ("laplace", "uniform", "exponential", "mixed", "gaussian")


def amari_distance(p: np.ndarray) -> float:
  """Amari distance of ``P = W A`` (0 = perfect unmixing up to permutation and scale)::

    (sum_i (sum_j |p_ij| / max_j |p_ij| - 1) + sum_j (sum_i |p_ij| / max_i |p_ij| - 1))
      / (2 k (k - 1))
  """
  p = np.abs(np.asarray(p, np.float64))
  if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] < 2:
    raise ValueError(f"amari_distance: P must be square and at least 2x2; got {p.shape}.")
  k = p.shape[0]
  rows = np.sum(np.sum(p, 1) / np.max(p, 1) - 1)
  cols = np.sum(np.sum(p, 0) / np.max(p, 0) - 1)
  return float((rows + cols) / (2 * k * (k - 1)))


def make_sources(n: int, k: int, kind: str = "laplace", seed: int = 0) -> np.ndarray:
  """``(n, k)`` independent sources with zero mean and unit variance. ``kind``: ``laplace``,
  ``uniform``, ``exponential``, ``gaussian``, or ``mixed`` (the first three in turn)."""
  if kind not in SOURCE_KINDS:
    raise ValueError(f"make_sources: kind must be one of {SOURCE_KINDS}; got {kind!r}.")
  rng = np.random.default_rng(seed)
  draw = {
      "laplace": lambda: rng.laplace(0.0, 1 / math.sqrt(2), n),
      "uniform": lambda: rng.uniform(-math.sqrt(3), math.sqrt(3), n),
      "exponential": lambda: rng.exponential(1.0, n) - 1.0,
      "gaussian": lambda: rng.normal(0.0, 1.0, n),
  }
  kinds = ["laplace", "uniform", "exponential"] if kind == "mixed" else [kind]
  return np.stack([draw[kinds[i % len(kinds)]]() for i in range(k)], axis=1)


def random_mixing(k: int, seed: int = 0, condition: float = 4.0) -> np.ndarray:
  """A random ``(k, k)`` mixing matrix with condition number ``condition`` (random rotations
  around singular values spread log-uniformly between 1 and ``condition``)."""
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(k, k)))
  v, _ = np.linalg.qr(rng.normal(size=(k, k)))
  return u @ np.diag(np.geomspace(1.0, condition, k)) @ v.T


def jarque_bera_p(y: np.ndarray) -> np.ndarray:
  """Per-column p-values of the Jarque-Bera normality test (chi-squared with 2 dof)."""
  y = np.asarray(y, np.float64)
  y = (y - y.mean(0)) / y.std(0)
  skew, kurt = np.mean(y**3, 0), np.mean(y**4, 0) - 3.0
  stat = len(y) / 6.0 * (skew**2 + kurt**2 / 4.0)
  return np.exp(-stat / 2.0)  # the chi2(2) survival function
