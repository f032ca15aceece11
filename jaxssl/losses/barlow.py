"""Barlow Twins: redundancy reduction of the two views' cross-correlation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import stats

Array = jax.Array


def barlow_twins(z_a: Array, z_b: Array, *, lambd: float = 0.0051, eps: float = 1e-5,
                 form: str = "auto",
                 axis_name: str | None = None) -> tuple[Array, dict[str, Array]]:
  """Barlow Twins loss (Zbontar et al., ICML 2021; facebookresearch/barlowtwins).

  Each view is standardised per feature over the global batch (``BatchNorm1d`` without
  affine, biased variance), then::

    c = bn(z_a)^T bn(z_b) / N                          # (D, D) cross-correlation
    loss = sum((diag(c) - 1)^2) + lambd * sum(offdiag(c)^2)

  Cost of ``|offdiag(c)|^2``: ``form='feature'`` forms ``c``, 2 N D^2 FLOPs; ``form='sample'``
  uses ``|A^T B|_F^2 = sum((A A^T) * (B B^T))`` with two ``(N, N)`` Gram matrices, 4 N^2 D
  FLOPs; ``'auto'`` picks the smaller (sample when 2 N < D). ``diag(c)`` costs N D either way.
  Sharded or under ``axis_name``, each device does its rows' share.

  Args:
    z_a, z_b: ``(N, D)`` embeddings of the two views (this device's rows under ``axis_name``).
    lambd: weight of the off-diagonal (redundancy) term.
    eps: added to the variance in the standardisation.
    form: ``'auto'``, ``'sample'`` or ``'feature'``; all give the same value.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    ``(loss, aux)`` with ``aux`` the unweighted ``on_diagonal`` and ``off_diagonal`` sums.

  Example:
    >>> z_a, z_b = jax.random.normal(jax.random.key(0), (2, 256, 2048))
    >>> loss, aux = barlow_twins(z_a, z_b)
  """
  n = stats.check_embeddings("barlow_twins", z_a, z_b, axis_name=axis_name)
  dtype = stats.compute_dtype(z_a, z_b)
  dim = z_a.shape[1]
  form = stats.pick_form(form, sample_flops=4 * n * n * dim, feature_flops=2 * n * dim * dim)
  a = _standardise(z_a.astype(dtype), n, eps, axis_name)
  b = _standardise(z_b.astype(dtype), n, eps, axis_name)
  diag = stats.global_sum(jnp.sum(a * b, axis=0), axis_name) / n
  frobenius_sq = stats.cross_gram_sq_norm(a, b, form=form, axis_name=axis_name) / float(n) ** 2
  aux = stats.replicate({
      "on_diagonal": jnp.sum((diag - 1.0) ** 2),
      "off_diagonal": frobenius_sq - jnp.sum(diag**2),
  }, axis_name)
  return aux["on_diagonal"] + lambd * aux["off_diagonal"], aux


def _standardise(z: Array, n: int, eps: float, axis_name: str | None) -> Array:
  """``BatchNorm1d(affine=False)`` in training mode over the global batch."""
  z_c = z - stats.global_mean(z, axis_name)
  var = stats.global_sum(jnp.sum(z_c**2, axis=0), axis_name) / n
  return z_c * jax.lax.rsqrt(var + eps)
