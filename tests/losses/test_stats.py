"""The shared statistics: log-det fallback and the choice of form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import stats


def _spd(eigvals, seed=0):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigvals),) * 2))
  return (q * np.asarray(eigvals)) @ q.T, q


def test_logdet_psd_of_positive_definite_matrix_is_exact_with_exact_gradient():
  m, _ = _spd([3.0, 1.0, 0.5, 0.01])
  with jax.enable_x64(True):
    value, grad = jax.value_and_grad(lambda x: stats.logdet_psd(x, 1e-8))(m)
  np.testing.assert_allclose(value, np.linalg.slogdet(m)[1], rtol=1e-12)
  np.testing.assert_allclose(grad, np.linalg.inv(m), rtol=1e-9)


def test_logdet_psd_falls_back_to_clipped_eigenvalues_when_cholesky_fails():
  # Two eigenvalues at or below zero (a PSD matrix after rounding): Cholesky gives NaN.
  eigvals = np.array([2.0, 0.5, 0.0, -1e-9])
  m, q = _spd(eigvals, seed=1)
  assert not np.all(np.isfinite(jnp.linalg.cholesky(m)))
  floor = 1e-6
  value, grad = jax.jit(jax.value_and_grad(lambda x: stats.logdet_psd(x, floor)))(m)
  clipped = np.maximum(eigvals, floor)
  np.testing.assert_allclose(value, np.sum(np.log(clipped)), rtol=1e-5)
  np.testing.assert_allclose(grad, (q / clipped) @ q.T, rtol=1e-3, atol=1e-2)
  assert np.all(np.isfinite(grad))


def test_eigen_fallback_gradient_is_finite_with_repeated_eigenvalues():
  m = jnp.zeros((5, 5)).at[0, 0].set(1.0)  # eigenvalue 0 four times
  grad = jax.grad(lambda x: stats.logdet_psd(x, 1e-3))(m)
  np.testing.assert_allclose(grad, np.diag([1.0, 1e3, 1e3, 1e3, 1e3]), rtol=1e-4)


@pytest.mark.parametrize("n,dim,expected", [(512, 8192, "sample"), (4096, 512, "feature")])
def test_auto_form_picks_fewer_flops(n, dim, expected):
  assert stats.pick_form("auto", sample_flops=2 * n * n * dim,
                         feature_flops=2 * n * dim * dim) == expected
  assert stats.pick_form("feature", sample_flops=1, feature_flops=2) == "feature"


def test_unknown_form_is_refused():
  with pytest.raises(ValueError, match="form must be one of"):
    stats.pick_form("gram", sample_flops=1, feature_flops=2)
