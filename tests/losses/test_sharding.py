"""Global-batch semantics: sharded jit, shard_map, pmap and vmap with axis_name all equal one
device, in values and gradients, and the per-device work falls with the device count."""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxssl import losses
from tests.losses.cases import CASE_IDS, CASES, views

N_DEV = 8
SHAPES = [(32, 48), (48, 8)]  # N < D (sample form) and N > D (feature form)


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() >= N_DEV, "tests/conftest.py sets 8 virtual CPU devices"
  return jax.make_mesh((N_DEV,), ("batch",), axis_types=(AxisType.Auto,))


def _value_and_grads(case, axis_name=None):
  return jax.value_and_grad(
      lambda a, b: case.loss(a, b, form="auto", axis_name=axis_name), argnums=(0, 1))


def _unsharded(case, z_a, z_b):
  device = jax.devices()[0]
  return jax.jit(_value_and_grads(case))(jax.device_put(z_a, device),
                                         jax.device_put(z_b, device))


def _assert_close(got, expected, scale=1.0):
  (value, grads), (ref_value, ref_grads) = got, expected
  np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g) / scale, r, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[0]}xD{s[1]}")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jit_on_sharded_batch_equals_one_device(case, shape, mesh):
  z_a, z_b = views(*shape)
  sharding = NamedSharding(mesh, P("batch"))
  got = jax.jit(_value_and_grads(case))(jax.device_put(z_a, sharding),
                                        jax.device_put(z_b, sharding))
  _assert_close(got, _unsharded(case, z_a, z_b))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[0]}xD{s[1]}")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shard_map_with_axis_name_equals_one_device(case, shape, mesh):
  z_a, z_b = views(*shape)
  per_device = jax.shard_map(
      _value_and_grads(case, axis_name="batch"), mesh=mesh,
      in_specs=(P("batch"), P("batch")),
      out_specs=(P(), (P("batch"), P("batch"))))  # P(): the loss is replicated
  _assert_close(jax.jit(per_device)(z_a, z_b), _unsharded(case, z_a, z_b))


@pytest.mark.slow  # a pmap and a vmap compilation per loss
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_pmap_and_vmap_with_axis_name_equal_one_device(case):
  # Under pmap/vmap collectives transpose to collectives: each device's gradient is that of
  # the sum of the N_DEV replicated losses (stats.py), so N_DEV times the global gradient.
  z_a, z_b = views(32, 48)
  expected = _unsharded(case, z_a, z_b)
  split = lambda z: z.reshape(N_DEV, -1, z.shape[1])
  for transform in (functools.partial(jax.pmap, axis_name="batch"),
                    functools.partial(jax.vmap, axis_name="batch")):
    values, grads = transform(_value_and_grads(case, axis_name="batch"))(split(z_a),
                                                                         split(z_b))
    np.testing.assert_allclose(values, np.full(N_DEV, expected[0]), rtol=1e-5, atol=1e-5)
    _assert_close((values[0], [g.reshape(-1, g.shape[-1]) for g in grads]), expected,
                  scale=N_DEV)


def test_corinfomax_state_is_global_under_shard_map(mesh):
  z_a, z_b = views(48, 8)
  state = losses.corinfomax_init(8)
  _, (expected, _) = losses.corinfomax(state, z_a, z_b)
  per_device = jax.shard_map(
      lambda s, a, b: losses.corinfomax(s, a, b, axis_name="batch")[1][0], mesh=mesh,
      in_specs=(P(), P("batch"), P("batch")), out_specs=P())
  for got, ref in zip(jax.jit(per_device)(state, z_a, z_b), expected):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _flops(fn, *args):
  return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


@pytest.mark.parametrize("loss,form", [
    (lambda a, b, **kw: losses.vicreg(a, b, **kw)[0], "sample"),
    (lambda a, b, **kw: losses.vicreg(a, b, **kw)[0], "feature"),
    (lambda a, b, **kw: losses.barlow_twins(a, b, **kw)[0], "sample"),
    (lambda a, b, **kw: losses.barlow_twins(a, b, **kw)[0], "feature"),
], ids=["vicreg-sample", "vicreg-feature", "barlow-sample", "barlow-feature"])
def test_each_device_does_its_share_of_the_regulariser(loss, form, mesh):
  # Global batch fixed: per-device FLOPs under shard_map must fall ~1/N_DEV, where the
  # all-gather-then-full-covariance pattern would stay constant.
  z_a, z_b = views(256, 512)
  whole = _flops(functools.partial(loss, form=form), z_a, z_b)
  per_device = _flops(jax.shard_map(functools.partial(loss, form=form, axis_name="batch"),
                                    mesh=mesh, in_specs=(P("batch"), P("batch")),
                                    out_specs=P()), z_a, z_b)
  assert per_device < 1.5 * whole / N_DEV, (per_device, whole)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fifty_sharded_calls_return(case, mesh):
  """Issue 24: on 8 CPU devices W-MSE's batched whitening deadlocked XLA:CPU's thread pool
  within the first few calls of its value_and_grad; every loss must keep returning. Each
  call is waited for, as the trainer does: dozens of collective programs queued at once
  stall XLA:CPU's rendezvous whatever the loss (see ``train.metrics.Monitor``)."""
  sharding = NamedSharding(mesh, P("batch"))
  z_a, z_b = (jax.device_put(z, sharding) for z in views(256, 64))
  fn = jax.jit(_value_and_grads(case))
  first = jax.device_get(fn(z_a, z_b))
  for _ in range(49):
    out = jax.block_until_ready(fn(z_a, z_b))
  _assert_close(jax.device_get(out), first)
