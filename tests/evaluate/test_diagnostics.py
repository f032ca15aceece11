"""Pairwise HSIC against a direct NumPy reference; independence vs uncorrelated dependence."""

import numpy as np
import pytest

from jaxssl.evaluate import diagnostics


def hsic_reference(a: np.ndarray, b: np.ndarray) -> float:
  """Normalised biased HSIC of two 1-D samples, written out with loops over the pairs."""
  n = len(a)

  def kernel(v):
    d = np.array([[abs(v[i] - v[j]) for j in range(n)] for i in range(n)])
    width = np.median([d[i, j] for i in range(n) for j in range(i + 1, n)])
    return np.exp(-d**2 / (2 * width**2))

  h = np.eye(n) - np.ones((n, n)) / n
  ka, kb = h @ kernel(a) @ h, h @ kernel(b) @ h
  return float(np.sum(ka * kb) / np.sqrt(np.sum(ka * ka) * np.sum(kb * kb)))


def test_matches_the_reference():
  rng = np.random.default_rng(0)
  x = rng.normal(size=120)
  z = np.stack([x, x**2 + 0.1 * rng.normal(size=120), rng.uniform(size=120)], 1)
  got = diagnostics.pairwise_hsic(z)
  for i in range(3):
    for j in range(3):
      assert got[i, j] == pytest.approx(hsic_reference(z[:, i], z[:, j]), abs=1e-4)


def test_independent_near_zero_dependent_clearly_positive_where_correlation_is_not():
  rng = np.random.default_rng(1)
  x = rng.normal(size=2000)
  z = np.stack([x, x**2 + 0.2 * rng.normal(size=2000), rng.normal(size=2000)], 1)
  hsic = diagnostics.pairwise_hsic(z, max_samples=512)
  corr = diagnostics.correlation_matrix(z)
  assert abs(corr[0, 1]) < 0.1  # uncorrelated ...
  assert hsic[0, 1] > 0.2  # ... but dependent
  assert hsic[0, 2] < 0.02 and hsic[1, 2] < 0.02  # independent
  np.testing.assert_allclose(np.diag(hsic), 1.0, rtol=1e-5)


def test_bad_embeddings_are_refused():
  with pytest.raises(ValueError, match=r"\(N >= 4, D\)"):
    diagnostics.pairwise_hsic(np.ones(5))
  with pytest.raises(ValueError, match="non-finite"):
    diagnostics.pairwise_hsic(np.full((8, 2), np.nan))
