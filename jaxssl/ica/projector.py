"""The per-component projector ``h`` and VCReg's covariance term between two projected
components, the pairwise dependence both ICA methods minimise."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def projector_init(key: jax.Array, width: int) -> dict[str, jax.Array]:
  """A random per-component MLP ``R -> R^width``: ``relu(y a + b) @ C``, He-initialised."""
  k_a, k_b, k_c = jax.random.split(key, 3)
  return {"a": jax.random.normal(k_a, (1, width)), "b": jax.random.normal(k_b, (width,)),
          "c": jax.random.normal(k_c, (width, width)) * math.sqrt(2.0 / width)}


def threshold_projector(width: int, reach: float) -> dict[str, jax.Array]:
  """The Jacobi sweeps' frozen projector, in :func:`projector_init`'s form: ``h(y)_p =
  relu(y - t_p)`` with the thresholds ``t_p`` evenly over ``[-reach, reach]`` (slopes 1,
  ``C = I``): no random draw to be unlucky with (``bench/README.md`` has the comparison)."""
  return {"a": jnp.ones((1, width)), "b": -jnp.linspace(-reach, reach, width),
          "c": jnp.eye(width)}


def project(h: dict[str, jax.Array], y: jax.Array) -> jax.Array:
  """``(n, k)`` components -> ``(n, k * width)`` features, the same MLP on each component."""
  features = jax.nn.relu(y[..., None] * h["a"][0] + h["b"]) @ h["c"]
  return features.reshape(y.shape[0], -1)


def pair_dependence(h: dict[str, jax.Array], y_i: jax.Array, y_j: jax.Array) -> jax.Array:
  """VCReg's covariance term between two components: ``|Cov(h(y_i), h(y_j))|_F^2``.

  ``h(y) = relu(y a + b) C`` is linear after the ReLU, so this is ``|C^T K C|_F^2`` with ``K``
  the cross-covariance of the hidden units."""
  return dependence(h, hidden_moments(h, y_i, y_j, jnp.ones_like(y_i)), y_i.shape[0])


def hidden_moments(h, y_i, y_j, weight):
  """Sums over rows of the hidden units of ``h`` on two components and of their products
  (``weight`` 0 leaves a padding row out)."""
  r_i = jax.nn.relu(y_i[..., None] * h["a"][0] + h["b"]) * weight[..., None]
  r_j = jax.nn.relu(y_j[..., None] * h["a"][0] + h["b"]) * weight[..., None]
  return r_i.sum(-2), r_j.sum(-2), jnp.einsum("...ni,...nj->...ij", r_i, r_j)


def dependence(h, moments, n):
  """:func:`pair_dependence` from the sums of :func:`hidden_moments` over ``n`` rows."""
  sum_i, sum_j, products = moments
  cov_hidden = (products - sum_i[..., :, None] * sum_j[..., None, :] / n) / (n - 1)
  return jnp.sum((h["c"].T @ cov_hidden @ h["c"]) ** 2, axis=(-2, -1))
