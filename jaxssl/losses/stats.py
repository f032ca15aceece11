"""Global-batch statistics shared by every loss in `jaxssl.losses`.

Each loss is written once, over the rows a caller holds, and is correct in the two ways JAX
programs spread a batch over devices:

* ``axis_name=None``: the arrays are the whole (global) batch. Under ``jax.jit`` they may be
  sharded over a ``Mesh``; the reductions below are plain ``jnp`` code and XLA inserts the
  collectives, so every statistic is over the global batch.
* ``axis_name="batch"``: the caller runs per-device code (``jax.shard_map``, ``pmap``, or
  ``vmap`` with an axis name) and each device holds its own rows. Sums become ``psum``s and
  the other side of a Gram matrix is ``all_gather``-ed, so each device computes only its row
  block of an ``(N, N)`` Gram matrix, or its rows' share of a ``(D, D)`` one.

Gradients under ``axis_name``: every loss ends with :func:`replicate` (a ``pmean`` of values
that are already equal on all devices), which makes the result device-invariant and gives
each regime its usual meaning:

* ``jax.shard_map`` (``check_vma=True``, the default): the gradient with respect to a device's
  rows is exactly the gradient of the global loss; gradients of replicated parameters come
  out summed over devices, i.e. exact.
* ``pmap``, ``vmap(axis_name=...)``, ``shard_map(check_vma=False)``: collectives transpose to
  collectives, so each device's gradient is that of the *sum* of the per-device copies of
  the loss, i.e. ``axis_size`` times the global-loss gradient of its rows. The usual
  ``lax.pmean(grads, axis_name)`` of a pmap training step then gives exactly the gradient of
  the global loss (the same arithmetic as the official PyTorch ``FullGatherLayer`` + DDP).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

FORMS = ("auto", "sample", "feature")


def check_embeddings(fn: str, *zs: Any, axis_name: str | None = None) -> int:
  """Validates ``(N, D)`` float embeddings of equal shape; returns the global batch size N."""
  shapes = ", ".join(str(tuple(jnp.shape(z))) for z in zs)
  for z in zs:
    if jnp.ndim(z) != 2:
      raise ValueError(
          f"{fn}: embeddings must be 2-D (batch, dim) arrays; got shapes {shapes}. "
          "Flatten or vmap over any extra leading axes.")
    if not jnp.issubdtype(jnp.result_type(z), jnp.floating):
      raise ValueError(
          f"{fn}: embeddings must have a floating dtype; got {jnp.result_type(z)} for "
          f"shapes {shapes}. Cast them, e.g. z.astype(jnp.float32).")
  if any(jnp.shape(z) != jnp.shape(zs[0]) for z in zs):
    raise ValueError(f"{fn}: the views must have the same (batch, dim) shape; got {shapes}.")
  n = global_size(jnp.shape(zs[0])[0], axis_name)
  if n < 2:
    raise ValueError(
        f"{fn}: needs a (global) batch of at least 2 rows to estimate batch statistics; got "
        f"shapes {shapes}" + (f" on each device of axis {axis_name!r}" if axis_name else "") + ".")
  return n


def compute_dtype(*arrays: Any) -> jnp.dtype:
  """float32 for half-precision inputs (regularisers accumulate in float32), else the input's."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def global_size(n_local: int, axis_name: str | None) -> int:
  """The global batch size as a static Python int (every device holds as many rows)."""
  return n_local if axis_name is None else n_local * jax.lax.axis_size(axis_name)


def global_sum(x: Array, axis_name: str | None) -> Array:
  """Sums per-device partial sums over ``axis_name`` (identity without one)."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def global_mean(z: Array, axis_name: str | None) -> Array:
  """Column means of ``z`` over the global batch, shape ``(D,)``."""
  n = global_size(z.shape[0], axis_name)
  return global_sum(jnp.sum(z, axis=0), axis_name) / n


def global_mse(a: Array, b: Array, axis_name: str | None) -> Array:
  """``mean((a - b)^2)`` over all N * D entries of the global batch (the invariance term)."""
  n = global_size(a.shape[0], axis_name)
  return global_sum(jnp.sum((a - b) ** 2), axis_name) / float(n * a.shape[1])


def matmul(a: Array, b: Array) -> Array:
  """``a @ b`` in the inputs' own precision on every platform.

  JAX's default precision computes a float32 matmul in TF32 (a 10-bit mantissa) on NVIDIA GPUs
  since Ampere and in one bfloat16 pass on TPUs. The statistics here are sums of products
  that later cancel (pairwise distances, off-diagonal sums, log-determinants): at the default
  on an H100 the pairwise-distance entropy's gradient was 39% off its float64 value, at this
  precision 3e-7 (``bench/precision.py``; bench/README.md, "Precision on GPUs and TPUs"). On
  a CPU float32 is computed in full either way, and the results are bitwise those of ``a @ b``.
  The evaluators' k-NN similarities and HSIC Gram matrix use it for the same reason.
  """
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def gather(z: Array, axis_name: str | None) -> Array:
  """All rows of the global batch on every device (identity without an axis)."""
  return z if axis_name is None else jax.lax.all_gather(z, axis_name, tiled=True)


def l2_normalise(x: Array) -> Array:
  """Rows scaled to unit norm, as ``torch.nn.functional.normalize`` (eps 1e-12)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def replicate(tree: Any, axis_name: str | None) -> Any:
  """Marks values equal on all devices as replicated (see the module docstring)."""
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def pick_form(form: str, *, sample_flops: float, feature_flops: float) -> str:
  """Resolves ``form='auto'`` to the form with fewer FLOPs."""
  if form not in FORMS:
    raise ValueError(f"form must be one of {FORMS}; got {form!r}.")
  if form != "auto":
    return form
  return "sample" if sample_flops < feature_flops else "feature"


def cross_gram_sq_norm(a: Array, b: Array, *, form: str, axis_name: str | None) -> Array:
  """``|A^T B|_F^2`` over the global batch, for the local rows ``a``, ``b`` of ``(N, D)`` A, B.

  * ``form='feature'``: ``sum((A^T B)^2)``, with ``A^T B`` of shape ``(D, D)``: 2 N D^2 FLOPs
    (per device: its rows' share, then one ``psum`` of D^2 floats).
  * ``form='sample'``: ``sum((A A^T) * (B B^T))`` with ``(N, N)`` Gram matrices: 2 N^2 D FLOPs
    when ``a is b``, else 4 N^2 D (per device: its row block against the all-gathered rows).
  """
  if form == "feature":
    return jnp.sum(global_sum(matmul(a.T, b), axis_name) ** 2)
  if axis_name is None:
    return _gram_sq_norm(a) if b is a else _cross_gram_sq_norm(a, b)
  gram_a = matmul(a, gather(a, axis_name).T)
  gram_b = gram_a if b is a else matmul(b, gather(b, axis_name).T)
  return global_sum(jnp.sum(gram_a * gram_b), axis_name)


# Sample-form norms over the whole batch with hand-written backward passes that use the Gram
# matrices' symmetry: autodiff computes d(Z Z^T) as dG Z + dG^T Z, two (N, N) x (N, D)
# matmuls where one suffices. Under axis_name the per-device blocks are not symmetric, and
# autodiff (with the collectives' own transposes) is used instead.

@jax.custom_vjp
def _gram_sq_norm(z: Array) -> Array:
  """``|Z Z^T|_F^2``; backward ``4 (Z Z^T) Z``: 2 matmuls in all instead of 3."""
  return _gram_sq_norm_fwd(z)[0]


def _gram_sq_norm_fwd(z):
  gram = matmul(z, z.T)
  return jnp.sum(gram * gram), (z, gram)


def _gram_sq_norm_bwd(res, g):
  z, gram = res
  return ((4.0 * g) * matmul(gram, z),)


_gram_sq_norm.defvjp(_gram_sq_norm_fwd, _gram_sq_norm_bwd)


@jax.custom_vjp
def _cross_gram_sq_norm(a: Array, b: Array) -> Array:
  """``sum((A A^T) * (B B^T))``; backward ``2 (B B^T) A``, ``2 (A A^T) B``: 4 matmuls, not 6."""
  return _cross_gram_sq_norm_fwd(a, b)[0]


def _cross_gram_sq_norm_fwd(a, b):
  gram_a, gram_b = matmul(a, a.T), matmul(b, b.T)
  return jnp.sum(gram_a * gram_b), (a, b, gram_a, gram_b)


def _cross_gram_sq_norm_bwd(res, g):
  a, b, gram_a, gram_b = res
  return (2.0 * g) * matmul(gram_b, a), (2.0 * g) * matmul(gram_a, b)


_cross_gram_sq_norm.defvjp(_cross_gram_sq_norm_fwd, _cross_gram_sq_norm_bwd)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def logdet_psd(m: Array, floor: float) -> Array:
  """``log det`` of a symmetric positive (semi)definite matrix, finite on singular inputs.

  Cholesky first (``2 sum log diag L``, D^3/3 FLOPs). When rounding makes the factorisation
  fail (a NaN), falls back to an eigendecomposition with eigenvalues clipped at ``floor``:
  ``sum log max(lambda, floor)``. The gradient is ``M^-1`` (from the Cholesky factor), or on the
  fallback ``V diag(1/max(lambda, floor)) V^T``: finite even for repeated eigenvalues, and no
  NaN from the failed factorisation leaks into it.
  """
  return _logdet_and_inverse(m, floor, with_inverse=False)[0]


@logdet_psd.defjvp
def _logdet_psd_jvp(floor, primals, tangents):
  (m,), (dm,) = primals, tangents
  value, inverse = _logdet_and_inverse(m, floor, with_inverse=True)
  return value, jnp.sum(inverse * dm)  # tr(M^-1 dM), M symmetric


def _logdet_and_inverse(m: Array, floor: float, *,
                        with_inverse: bool) -> tuple[Array, Array | None]:
  chol = jnp.linalg.cholesky(m)
  by_cholesky = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))

  def from_cholesky():
    eye = jnp.eye(m.shape[0], dtype=m.dtype)
    return by_cholesky, (jax.scipy.linalg.cho_solve((chol, True), eye) if with_inverse
                         else None)

  def from_eigenvalues():
    eigvals, eigvecs = jnp.linalg.eigh(m)
    clipped = jnp.maximum(eigvals, floor)
    return jnp.sum(jnp.log(clipped)), (matmul(eigvecs / clipped, eigvecs.T) if with_inverse
                                       else None)

  return jax.lax.cond(jnp.isfinite(by_cholesky), from_cholesky, from_eigenvalues)
