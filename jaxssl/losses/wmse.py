"""W-MSE: MSE between whitened, normalised embeddings.

The whitening factorises one sub-batch at a time (``lax.map``), never as one batched LAPACK
call: jaxlib's batched CPU kernels (``lapack_strsm_ffi``, ``lapack_spotrf_ffi``) split the batch
over XLA:CPU's intra-op thread pool (``ParallelBatchMap``) and block until it is done. On a
multi-device CPU mesh every device runs the replicated whitening at once, each device's program
holds a pool thread while it waits, and the batch's tasks can find no thread left: the step
never returns (seen on 8 virtual devices, within the first few calls of the loss's
``value_and_grad``). Unbatched calls run inline on the calling thread.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import stats

Array = jax.Array


def wmse(z_a: Array, z_b: Array, *, w_size: int | None = None, eps: float = 0.0,
         key: Array | None = None,
         axis_name: str | None = None) -> tuple[Array, dict[str, Array]]:
  """W-MSE loss (Ermolov et al., ICML 2021; htdt/self-supervised), one pair of views.

  The global batch is split into sub-batches of ``w_size`` rows (a random permutation drawn
  from ``key``, the same for both views; contiguous blocks when ``key`` is None). Each view's
  sub-batch is whitened with its own statistics::

    C = z_c^T z_c / (w_size - 1)            L = cholesky((1 - eps) C + eps I)
    w = z_c L^{-T}                           # z_c = z - mean over the sub-batch
    loss = 2 - 2 * mean_rows(cos(w_a, w_b))

  Cost: per sub-batch 2 w D^2 (covariance) + D^3/3 (Cholesky) + D^3/3 (``L^-1``) + 2 w D^2.
  The embeddings are all-gathered under ``axis_name``, and every device whitens all blocks
  (the D^3 factorisations are small next to the backbone at the official sizes).

  Args:
    z_a, z_b: ``(N, D)`` embeddings of the two views (this device's rows under ``axis_name``).
    w_size: rows per whitening sub-batch; None whitens the whole global batch at once. Must
      divide N and, unless ``eps > 0``, exceed D (a rank-D covariance needs D + 1 rows).
    eps: shrinkage of the covariance towards the identity (official default 0).
    key: PRNG key drawing the sub-batch permutation; must be equal on all devices.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    ``(loss, aux)`` with ``aux['invariance']`` the loss itself.

  Example:
    >>> z_a, z_b = jax.random.normal(jax.random.key(0), (2, 256, 64))
    >>> loss, aux = wmse(z_a, z_b, w_size=128, key=jax.random.key(1))
  """
  n = stats.check_embeddings("wmse", z_a, z_b, axis_name=axis_name)
  dim = z_a.shape[1]
  w_size = n if w_size is None else int(w_size)
  if w_size < 2 or n % w_size:
    raise ValueError(
        f"wmse: w_size={w_size} must be at least 2 and divide the global batch of {n} rows "
        f"(embeddings of shape {tuple(z_a.shape)}); pick a divisor of {n}.")
  if w_size <= dim and eps <= 0:
    raise ValueError(
        f"wmse: w_size={w_size} rows cannot whiten {dim} features (the covariance is "
        f"singular); use w_size > {dim} (the official recipe uses 2x the embedding size) or "
        "eps > 0.")
  dtype = stats.compute_dtype(z_a, z_b)
  z_a = stats.gather(jnp.asarray(z_a, dtype), axis_name)
  z_b = stats.gather(jnp.asarray(z_b, dtype), axis_name)
  if key is not None:
    perm = jax.random.permutation(key, n)
    # A permutation: unique indices make the backward a plain scatter, not a scatter-add.
    z_a = z_a.at[perm].get(unique_indices=True)
    z_b = z_b.at[perm].get(unique_indices=True)
  # Both views' sub-batches whitened one after another, each factorisation unbatched: see
  # the module docstring for the XLA:CPU deadlock that batched (vmap) LAPACK calls cause.
  blocks = jnp.concatenate([z_a, z_b]).reshape(2 * n // w_size, w_size, dim)
  w_a, w_b = jax.lax.map(lambda block: _whiten(block, eps), blocks).reshape(2, n, dim)
  cosine = jnp.sum(stats.l2_normalise(w_a) * stats.l2_normalise(w_b), axis=1)
  aux = stats.replicate({"invariance": 2.0 - 2.0 * jnp.mean(cosine)}, axis_name)
  return aux["invariance"], aux


def _whiten(z: Array, eps: float) -> Array:
  """Cholesky whitening of one ``(w, D)`` sub-batch with its own mean and covariance."""
  z_c = z - jnp.mean(z, axis=0)
  cov = stats.matmul(z_c.T, z_c) / (z.shape[0] - 1)
  shrunk = (1.0 - eps) * cov + eps * jnp.eye(z.shape[1], dtype=z.dtype)
  chol = jnp.linalg.cholesky(shrunk)
  # W = L^-1 explicitly, as the official code does. Solving L X = z_c^T directly instead
  # stalls XLA:CPU intermittently in the backward pass of the batched triangular solve.
  eye = jnp.eye(z.shape[1], dtype=z.dtype)
  return stats.matmul(z_c, jax.scipy.linalg.solve_triangular(chol, eye, lower=True).T)

