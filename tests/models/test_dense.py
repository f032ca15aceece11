"""The projector's matmul (jaxssl.models.dense) against JAX's own differentiation of ``x @ w``:
the same values and gradients, bit for bit, under jit, grad, vmap and sharding, and in the
projector applied to two views as a train step applies it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.models import dense
from jaxssl.models.projector import Projector


def operands(x_shape, features, dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), dtype)
  w = jnp.asarray(rng.normal(size=(x_shape[-1], features)), dtype)
  dy = jnp.asarray(rng.normal(size=(*x_shape[:-1], features)), dtype)
  return x, w, dy


def vjp(matmul, x, w, dy):
  y, pullback = jax.vjp(matmul, x, w)
  return (y, *pullback(dy))


@pytest.mark.parametrize("x_shape", [(16, 24), (1, 5), (3, 7, 24)])  # a ViT's (b, tokens, d)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_equal_jaxs(x_shape, dtype):
  x, w, dy = operands(x_shape, 12, dtype)
  ours = jax.jit(lambda *a: vjp(dense.matmul, *a))(x, w, dy)
  jaxs = jax.jit(lambda *a: vjp(lambda x, w: x @ w, *a))(x, w, dy)
  batched = jax.vmap(lambda *a: vjp(dense.matmul, *a), in_axes=(0, None, 0))(x[None], w, dy[None])
  for a, b, c in zip(ours, jaxs, batched):
    assert a.dtype == b.dtype and a.shape == b.shape == c.shape[1:]
    same(a, b)  # the same sums in the same order
    same(c[0], b)


def same(a, b, *, exact=True):
  """Equal, or (``exact=False``: summed in another order) equal to the type's rounding."""
  if exact:
    np.testing.assert_array_equal(a, b)
  else:
    eps = float(jnp.finfo(b.dtype).eps)
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=0, atol=4 * eps * np.abs(b).max())


def test_gradients_sharded_over_the_devices_equal_one_devices():
  x, w, dy = operands((32, 24), 12, jnp.float32)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  rows = NamedSharding(mesh, P("data"))
  fn = jax.jit(lambda *a: vjp(dense.matmul, *a))
  sharded = fn(jax.device_put(x, rows), jax.device_put(w, NamedSharding(mesh, P())),
               jax.device_put(dy, rows))
  for a, b in zip(sharded, fn(x, w, dy)):
    same(a, b, exact=False)  # the weight gradient: the devices' partial sums, then their sum


def test_other_contractions_go_to_lax():
  x, w, _ = operands((4, 6), 6, jnp.float32)
  transposed = (((1,), (1,)), ((), ()))  # x @ w.T: not nn.Dense's form
  np.testing.assert_array_equal(dense.dot_general(x, w, transposed),
                                lax.dot_general(x, w, transposed))
  assert dense.dot_general(x, w, (((1,), (0,)), ((), ())),
                           preferred_element_type=jnp.float32).dtype == jnp.float32


def test_pick_by_platform_and_conv():
  assert dense.pick("auto", "cpu") is dense.dot_general
  assert dense.pick("onednn", "cpu") is dense.dot_general
  assert dense.pick("xla", "cpu") is lax.dot_general  # JAX differentiates everything
  assert dense.pick("auto", "gpu") is lax.dot_general
  assert dense.pick("auto", "tpu") is lax.dot_general


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_the_projector_on_two_views_equals_jaxs(dtype):
  """Both views through the projector, their gradients summed (what made XLA:CPU transpose the
  sum): the same loss and gradients as with JAX's differentiation (``conv="xla"``). In
  bfloat16 XLA computes each view's weight gradient straight into the float32 kernel's type
  here, where JAX's transposed form rounds it to bfloat16 first: equal to that rounding."""
  rng = np.random.default_rng(1)
  x_a, x_b = (jnp.asarray(rng.normal(size=(16, 32)), jnp.float32) for _ in range(2))

  def grads(conv):
    model = Projector("64-64-48", conv=conv, dtype=dtype)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=True))(x_a)

    def loss(params):
      apply = lambda x: model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])[0]
      return jnp.sum(jnp.sin(apply(x_a) * apply(x_b)))
    return jax.jit(jax.value_and_grad(loss))(variables["params"])
  ours, jaxs = grads("auto"), grads("xla")
  assert jax.tree.structure(ours) == jax.tree.structure(jaxs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(jaxs)):
    if dtype == jnp.float32:
      np.testing.assert_array_equal(a, b)
    else:
      np.testing.assert_allclose(a, b, rtol=0, atol=2**-7 * np.abs(b).max())
