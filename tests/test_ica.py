"""Linear ICA by VCReg against FastICA, the Amari distance, the source generator, bad input."""

import numpy as np
import pytest
from sklearn.decomposition import FastICA

from jaxssl import ica


def mixtures(n, k, kind, seed=0):
  s = ica.make_sources(n, k, kind, seed)
  a = ica.random_mixing(k, seed)
  return s, a, s @ a.T


def test_amari_distance_against_hand_computed_values():
  perm_scale = np.array([[0.0, 2.0], [-3.0, 0.0]])
  assert ica.amari_distance(perm_scale) == 0.0
  # rows: (1+0.5)/1-1 = 0.5 and (0.5+1)/1-1 = 0.5; columns the same; / (2*2*1)
  assert ica.amari_distance(np.array([[1.0, 0.5], [0.5, 1.0]])) == pytest.approx(0.5)
  assert ica.amari_distance(np.ones((3, 3))) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="square"):
    ica.amari_distance(np.ones((2, 3)))


@pytest.mark.parametrize("kind", ["laplace", "uniform", "exponential", "gaussian", "mixed"])
def test_sources_are_standardised_and_independent(kind):
  s = ica.make_sources(20000, 3, kind, seed=1)
  np.testing.assert_allclose(s.mean(0), 0.0, atol=0.05)
  np.testing.assert_allclose(s.std(0), 1.0, atol=0.05)
  np.testing.assert_allclose(np.corrcoef(s, rowvar=False), np.eye(3), atol=0.03)


def test_mixing_is_well_conditioned():
  assert np.linalg.cond(ica.random_mixing(8, seed=3, condition=4.0)) == pytest.approx(4.0)


def test_four_laplace_sources_as_well_as_fastica():
  s, a, x = mixtures(10_000, 4, "laplace", seed=0)
  result = ica.fit(x, seed=0)
  ours = ica.amari_distance(result.unmixing @ a)
  fast = FastICA(4, whiten="unit-variance", random_state=0, max_iter=1000).fit(x)
  theirs = ica.amari_distance(fast.components_ @ a)
  assert ours <= 0.05, ours
  assert ours <= 1.5 * theirs, (ours, theirs)
  assert result.identifiable and result.gaussian_components == 0
  # The recovered sources are the true ones up to permutation and sign.
  corr = np.abs(np.corrcoef(result.sources, s, rowvar=False)[:4, 4:])
  assert np.all(corr.max(1) > 0.99)
  np.testing.assert_allclose(result.sources, (x - result.mean) @ result.unmixing.T)


def test_gaussian_sources_are_reported_as_unidentifiable():
  _, a, x = mixtures(10_000, 4, "gaussian", seed=0)
  result = ica.fit(x, steps=100, seed=0)
  assert result.gaussian_components >= 3
  assert not result.identifiable


def test_one_gaussian_among_non_gaussian_sources_is_still_identifiable():
  s = np.concatenate([ica.make_sources(10_000, 2, "uniform", 0),
                      ica.make_sources(10_000, 1, "gaussian", 1)], axis=1)
  result = ica.fit(s @ ica.random_mixing(3, 0).T, steps=300)
  assert result.identifiable and result.gaussian_components <= 1


@pytest.mark.parametrize("x,match", [
    (np.ones((3, 5)), "more samples than mixtures"),
    (np.ones(10), r"\(N, k\)"),
    (np.ones((10, 1)), "at least 2 mixtures"),
    (np.where(np.eye(50, 3) == 1, np.nan, 1.0), "non-finite values .*row 0, column 0"),
])
def test_bad_input_is_explained(x, match):
  with pytest.raises(ValueError, match=match):
    ica.fit(x)


def test_rank_deficient_mixtures_are_refused():
  s = ica.make_sources(1000, 2, "laplace")
  x = s @ np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.1]])  # 3 mixtures of 2 sources
  with pytest.raises(ValueError, match="rank-deficient"):
    ica.fit(x)


def test_eight_mixed_sources_with_jacobi_sweeps_as_well_as_fastica():
  """Joint gradient descent alone stalls here (Amari 0.1-0.7); pairwise sweeps first get
  it to FastICA's level."""
  s, a, x = mixtures(10_000, 8, "mixed", seed=0)
  result = ica.fit(x, seed=0, **ica.MANY_SOURCES)
  ours = ica.amari_distance(result.unmixing @ a)
  fast = FastICA(8, whiten="unit-variance", random_state=0, max_iter=1000).fit(x)
  theirs = ica.amari_distance(fast.components_ @ a)
  assert 0 < result.sweeps <= ica.MANY_SOURCES["sweeps"]
  assert ours <= 0.05 and ours <= 1.5 * theirs, (ours, theirs)


def test_round_robin_pairs_every_two_components_once():
  rounds = ica.round_robin(6)
  assert rounds.shape == (5, 3, 2)
  for r in rounds:
    assert sorted(r.ravel().tolist()) == list(range(6))  # disjoint within a round
  pairs = {tuple(sorted(p)) for r in rounds for p in r.tolist()}
  assert len(pairs) == 15
