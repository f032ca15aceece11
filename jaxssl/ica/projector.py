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
  """Sums over rows (the last axis) of the hidden units of ``h`` on two components and of
  their products (``weight`` 0 leaves a padding row out): ``(width,)``, ``(width,)`` and
  ``(width, width)`` per leading index.

  Each hidden unit ``relu(a_p y + b_p)`` is the line ``a_p y + b_p`` on one side of its kink
  ``-b_p / a_p`` and 0 on the other, so the kinks cut the ``(y_i, y_j)`` plane into cells
  where every unit is either that line or 0. The sums are then linear in each cell's weighted
  count and sums of ``y_i``, ``y_j`` and ``y_i y_j``: each row compared with the kinks and
  scattered to its cell, then a ``width x cells`` contraction, O(rows x width + width^3) work
  instead of the dense O(rows x width^2) of ``relu(...)^T relu(...)`` (25x faster on CPU for
  Jacobi's 32 units at 30 angles)."""
  a, b = h["a"][0], h["b"]
  flat = a == 0
  kinks = jnp.where(flat, 0.0, -b / jnp.where(flat, 1.0, a))
  edges = jnp.sort(kinks)
  cells = edges.shape[0] + 1
  index = jnp.arange(cells)
  # Cell c holds the rows with exactly c kinks below them. A rising unit is its line in the
  # cells above its kink, a falling one in those up to it (the line is 0 at the kink itself),
  # a flat one (a_p = 0) everywhere or nowhere.
  line = jnp.where(a[:, None] > 0, index >= jnp.searchsorted(edges, kinks, "right")[:, None],
                   jnp.where(a[:, None] < 0,
                             index <= jnp.searchsorted(edges, kinks, "left")[:, None],
                             b[:, None] > 0)).astype(y_i.dtype)
  batch = y_i.shape[:-1]
  # Against a few dozen edges, comparing with all of them beats a binary search (7x on CPU).
  cell_i = jnp.searchsorted(edges, y_i, "left", method="compare_all")
  cell_j = jnp.searchsorted(edges, y_j, "left", method="compare_all")
  segment = (jnp.arange(math.prod(batch)).reshape(*batch, 1) * cells + cell_i) * cells + cell_j
  values = weight[..., None] * jnp.stack([jnp.ones_like(y_i), y_i, y_j, y_i * y_j], -1)
  per_cell = jax.ops.segment_sum(values.reshape(-1, 4), segment.reshape(-1),
                                 num_segments=math.prod(batch) * cells * cells)
  count, sum_i, sum_j, sum_ij = jnp.moveaxis(per_cell.reshape(*batch, cells, cells, 4), -1, 0)
  both = lambda s: jnp.einsum("pc,...cd,qd->...pq", line, s, line)
  products = (a[:, None] * a * both(sum_ij) + a[:, None] * b * both(sum_i)
              + b[:, None] * a * both(sum_j) + b[:, None] * b * both(count))
  one = lambda s: jnp.einsum("pc,...c->...p", line, s)
  rows_i = a * one(sum_i.sum(-1)) + b * one(count.sum(-1))
  rows_j = a * one(sum_j.sum(-2)) + b * one(count.sum(-2))
  return rows_i, rows_j, products


def dependence(h, moments, n):
  """:func:`pair_dependence` from the sums of :func:`hidden_moments` over ``n`` rows."""
  sum_i, sum_j, products = moments
  cov_hidden = (products - sum_i[..., :, None] * sum_j[..., None, :] / n) / (n - 1)
  return jnp.sum((h["c"].T @ cov_hidden @ h["c"]) ** 2, axis=(-2, -1))
