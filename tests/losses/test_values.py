"""Every loss against the float64 NumPy reference, in both forms, in float64 and float32."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import losses
from tests.losses import reference as ref
from tests.losses.cases import CASE_IDS, CASES, views

SHAPES = [(24, 40), (40, 12)]  # N < D and N > D


def _forms(case):
  return ["sample", "feature"] if case.has_forms else ["auto"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[0]}xD{s[1]}")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float64_matches_reference(case, shape):
  z_a, z_b = views(*shape, dtype=np.float64)
  expected = case.reference(z_a, z_b)
  with jax.enable_x64(True):
    for form in _forms(case):
      got = jax.jit(lambda a, b: case.loss(a, b, form=form, axis_name=None))(z_a, z_b)
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=form)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[0]}xD{s[1]}")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float32_matches_reference(case, shape):
  z_a, z_b = views(*shape, dtype=np.float32)
  expected = case.reference(z_a.astype(np.float64), z_b.astype(np.float64))
  for form in _forms(case):
    got = jax.jit(lambda a, b: case.loss(a, b, form=form, axis_name=None))(z_a, z_b)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4, err_msg=form)


def test_aux_terms_match_reference():
  z_a, z_b = views(32, 48, dtype=np.float64)
  with jax.enable_x64(True):
    for got, expected in [(losses.vicreg(z_a, z_b), ref.vicreg(z_a, z_b)),
                          (losses.vcreg(z_a), ref.vcreg(z_a)),
                          (losses.barlow_twins(z_a, z_b), ref.barlow_twins(z_a, z_b))]:
      loss, aux = got
      assert set(aux) == set(expected[1])
      for term, value in expected[1].items():
        np.testing.assert_allclose(aux[term], value, rtol=1e-9, err_msg=term)
      np.testing.assert_allclose(loss, expected[0], rtol=1e-9)


def test_coefficients_weight_the_terms():
  z_a, z_b = views(16, 24)
  _, aux = losses.vicreg(z_a, z_b)
  loss, _ = losses.vicreg(z_a, z_b, sim_coeff=2.0, std_coeff=3.0, cov_coeff=5.0)
  np.testing.assert_allclose(
      loss, 2 * aux["invariance"] + 3 * aux["variance"] + 5 * aux["covariance"], rtol=1e-6)
  _, aux = losses.barlow_twins(z_a, z_b)
  loss, _ = losses.barlow_twins(z_a, z_b, lambd=0.5)
  np.testing.assert_allclose(loss, aux["on_diagonal"] + 0.5 * aux["off_diagonal"], rtol=1e-6)


def test_corinfomax_state_update_matches_reference():
  rng = np.random.default_rng(3)
  zs_a, zs_b = rng.normal(size=(2, 3, 32, 8))
  expected_losses, expected_state = ref.corinfomax_run(zs_a, zs_b)
  with jax.enable_x64(True):
    state = losses.corinfomax_init(8, dtype=jnp.float64)
    for step in range(3):
      loss, (state, aux) = losses.corinfomax(state, zs_a[step], zs_b[step])
      np.testing.assert_allclose(loss, expected_losses[step], rtol=1e-9)
    for got, expected in zip(state, expected_state):
      np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
  assert set(aux) == {"invariance", "covariance"}


def _corinfomax_trajectory(zs_a, zs_b, dtype):
  def step(state, zs):
    loss, (state, _) = losses.corinfomax(state, *zs)
    return state, loss
  state = losses.corinfomax_init(zs_a.shape[-1], dtype=dtype)
  _, trajectory = jax.jit(lambda s, a, b: jax.lax.scan(step, s, (a, b)))(state, zs_a, zs_b)
  return np.asarray(trajectory)


@pytest.mark.parametrize("n,dim", [(64, 32), (256, 128)])
def test_corinfomax_float32_tracks_float64_over_500_steps(n, dim):
  rng = np.random.default_rng(0)
  # Slowly drifting embeddings, as in training: the running estimate matters.
  drift = np.cumsum(0.05 * rng.normal(size=(500, 1, dim)), axis=0)
  zs_a = drift + rng.normal(size=(500, n, dim)) * np.linspace(0.2, 2.0, dim)
  zs_b = zs_a + 0.3 * rng.normal(size=zs_a.shape)
  expected, _ = ref.corinfomax_run(zs_a, zs_b)
  got = _corinfomax_trajectory(zs_a.astype(np.float32), zs_b.astype(np.float32), jnp.float32)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_corinfomax_float32_finite_when_rank_deficient():
  # N < D: the running covariance has D - N eigenvalues that decay to eps (1e-8), below
  # float32 resolution of the large ones; Cholesky fails and the eigenvalue path takes over.
  rng = np.random.default_rng(1)
  zs_a = rng.normal(size=(100, 16, 64)).astype(np.float32)
  zs_b = zs_a + 0.1 * rng.normal(size=zs_a.shape).astype(np.float32)
  got = _corinfomax_trajectory(zs_a, zs_b, jnp.float32)
  expected, _ = ref.corinfomax_run(zs_a.astype(np.float64), zs_b.astype(np.float64))
  assert np.all(np.isfinite(got))
  # The null-space eigenvalues sit at float32 rounding level: close, not exact.
  np.testing.assert_allclose(got, expected, rtol=0.05)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bfloat16_inputs_are_finite_and_close_to_float32(case):
  z_a, z_b = views(64, 48)
  full = case.loss(jnp.asarray(z_a), jnp.asarray(z_b), form="auto", axis_name=None)
  half = jax.jit(lambda a, b: case.loss(a, b, form="auto", axis_name=None))(
      jnp.asarray(z_a, jnp.bfloat16), jnp.asarray(z_b, jnp.bfloat16))
  assert half.dtype == jnp.float32, "regularisers must accumulate in float32"
  assert np.isfinite(half)
  np.testing.assert_allclose(half, full, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_rank_deficient_inputs_give_finite_loss_and_grads(case):
  z_a, z_b = views(16, 8)
  # D > N, and every feature duplicated: covariances of rank at most 8 in dimension 64.
  z_a, z_b = (np.tile(z, (1, 8)) for z in (z_a, z_b))
  loss, grads = jax.jit(jax.value_and_grad(
      lambda a, b: case.loss(a, b, form="auto", axis_name=None), argnums=(0, 1)))(z_a, z_b)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_vmap_over_problems_equals_loop():
  z_a, z_b = views(6 * 16, 24)
  z_a, z_b = z_a.reshape(6, 16, 24), z_b.reshape(6, 16, 24)
  batched, _ = jax.vmap(losses.vicreg)(z_a, z_b)
  looped = [losses.vicreg(a, b)[0] for a, b in zip(z_a, z_b)]
  np.testing.assert_allclose(batched, looped, rtol=1e-5)


@pytest.mark.parametrize("module", ["vicreg", "barlow", "wmse", "corinfomax", "entropy"])
def test_docstring_examples_run(module):
  mod = importlib.import_module(f"jaxssl.losses.{module}")
  result = doctest.testmod(mod, raise_on_error=True)
  assert result.attempted > 0


def test_large_batches_do_not_overflow_the_normalisers():
  # (N - 1)^2 * D > 2^31: normalising constants must not be passed to XLA as int32.
  z_a, z_b = views(720, 4200, seed=2)
  for fn in (losses.vicreg, losses.barlow_twins, losses.info_vicreg):
    assert np.isfinite(jax.jit(fn)(z_a, z_b)[0])


def test_wmse_gradient_with_permutation_at_the_official_cifar100_size():
  # Embedding 128, sub-batches of 256: the backward of the permutation once stalled XLA:CPU.
  z_a, z_b = views(512, 128)
  grad = jax.jit(jax.grad(lambda a, b: losses.wmse(
      a, b, w_size=256, key=jax.random.key(0))[0]))(z_a, z_b)
  assert np.all(np.isfinite(grad))
