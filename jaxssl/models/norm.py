"""BatchNorm with statistics per view, for a batch that holds several views of each image.

The official SSL code runs its backbone once per view, so each view's BatchNorm statistics
are its own. ``jaxssl.train.step`` runs both views in one pass instead, and the convolutions
see one batch of 2B images rather than two of B (faster per image: bench/README.md, "The
train step"). The rows are interleaved, ``[a_0, b_0, a_1, b_1, ...]``, so a batch sharded over
devices keeps each image's views on one device. With ``views=V`` this module normalises each
view by its own statistics and updates the running averages with view 0's, then view 1's,
...: what ``V`` calls of ``flax.linen.BatchNorm``, one per view, compute, with the same
variables. The statistics and the normalisation are flax's own (``_compute_stats``,
``_normalize``), over the batch seen as ``(B, V, ..., C)``: one fused pass over all views.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import normalization as flax_norm


def interleave(*views: jax.Array) -> jax.Array:
  """``V`` arrays ``(B, ...)``, one per view, as one batch ``(V * B, ...)`` in the order
  ``BatchNorm(views=V)`` reads: ``a_0, b_0, a_1, b_1, ...``."""
  return jnp.stack(views, axis=1).reshape(-1, *views[0].shape[1:])


def split_views(x: jax.Array, views: int) -> list[jax.Array]:
  """``interleave``'s inverse: the ``views`` arrays ``(B, ...)`` of a batch ``(V * B, ...)``."""
  per_view = x.reshape(-1, views, *x.shape[1:])
  return [per_view[:, v] for v in range(views)]


class BatchNorm(nn.BatchNorm):
  """``flax.linen.BatchNorm`` (features last) over ``views`` interleaved views: rows ``v, v +
  views, ...`` are view ``v``. In training each view gets its own statistics and the running
  averages take them in turn; in inference the views change nothing."""
  views: int = 1

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None):
    inference = nn.merge_param("use_running_average", self.use_running_average,
                               use_running_average)
    if self.axis not in (-1, x.ndim - 1):
      raise ValueError(f"BatchNorm over views normalises the last axis; got axis={self.axis}.")
    views = 1 if inference else self.views
    if x.shape[0] % views:
      raise ValueError(f"BatchNorm over {views} views: the batch ({x.shape[0]} rows) must hold "
                       f"every view of each image, a multiple of {views}.")
    stats_dtype = jnp.float32 if self.force_float32_reductions else self.param_dtype
    features = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, stats_dtype),
                            (features,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, stats_dtype),
                           (features,))
    per_view = x.reshape(x.shape[0] // views, views, *x.shape[1:])
    reduction_axes = (0, *range(2, per_view.ndim - 1))
    if inference:
      mean, var = (jnp.broadcast_to(jnp.asarray(v.value, stats_dtype), (1, features))
                   for v in (ra_mean, ra_var))
    else:
      mean, var = flax_norm._compute_stats(  # pylint: disable=protected-access
          per_view, reduction_axes, dtype=self.dtype,
          axis_name=None if self.is_initializing() else self.axis_name,
          axis_index_groups=self.axis_index_groups, use_fast_variance=self.use_fast_variance,
          force_float32_reductions=self.force_float32_reductions)
      if not self.is_initializing():
        for v in range(views):  # (V, C): view 0's statistics first, as in V separate calls
          ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean[v]
          ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var[v]
    y = flax_norm._normalize(  # pylint: disable=protected-access
        self, per_view, mean, var, reduction_axes, (per_view.ndim - 1,), self.dtype,
        self.param_dtype, self.epsilon, self.use_bias, self.use_scale, self.bias_init,
        self.scale_init, self.force_float32_reductions)
    return y.reshape(x.shape)
