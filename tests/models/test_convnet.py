"""The CNN's 2x2 max-pool (jaxssl.models.convnet.max_pool_2x2) against flax's nn.max_pool:
the same values and gradients, ties included (a flat background gives equal activations),
at even and odd sizes, under jit, grad and vmap."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import convnet


def flax_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (3, 7, 5, 4), (1, 3, 3, 1), (2, 28, 28, 8)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_max_pool_equals_flax_ties_included(shape, dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(np.maximum(rng.normal(size=shape), 0).round(1), dtype)  # many ties
  dy = jnp.asarray(rng.normal(size=flax_pool(x).shape), dtype)
  for pool in (convnet.max_pool_2x2, jax.jit(convnet.max_pool_2x2)):
    np.testing.assert_array_equal(pool(x), flax_pool(x))
  grad = lambda pool: jax.jit(lambda x, dy: jax.vjp(pool, x)[1](dy)[0])(x, dy)
  np.testing.assert_array_equal(grad(convnet.max_pool_2x2), grad(flax_pool))
  batched = jax.vmap(convnet.max_pool_2x2)(x[None])[0]
  np.testing.assert_array_equal(batched, flax_pool(x))


def test_a_tied_window_sends_its_gradient_to_its_first_maximum():
  # Two 2x2 windows side by side, [[1, 3], [2, 3]] and [[2, 3], [2, 3]]: each has its maximum
  # twice, in its right column.
  x = jnp.array([[1.0, 3.0, 2.0, 3.0], [2.0, 3.0, 2.0, 3.0]]).reshape(1, 2, 4, 1)
  dx = jax.grad(lambda x: jnp.sum(convnet.max_pool_2x2(x)))(x)
  np.testing.assert_array_equal(dx, jax.grad(lambda x: jnp.sum(flax_pool(x)))(x))
  assert float(jnp.sum(dx)) == 2.0  # one input per window


def test_the_cnn_gradients_equal_flax_pools(monkeypatch):
  images = jnp.zeros((4, 28, 28, 1)).at[:, 6:22, 8:20].set(1.0)  # a flat background
  model = convnet.ConvNet(widths=(8, 16, 32, 64), convs_per_stage=1, conv="xla")
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=True))(images)

  def grads():
    loss = lambda p: jnp.sum(jnp.sin(model.apply({**variables, "params": p}, images, train=True,
                                                 mutable=["batch_stats"])[0]))
    return jax.jit(jax.grad(loss))(variables["params"])
  ours = grads()
  monkeypatch.setattr(convnet, "max_pool_2x2", flax_pool)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(grads())):
    np.testing.assert_array_equal(a, b)
