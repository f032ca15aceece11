"""CorInfoMax: log-determinant of a running covariance estimate."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssl.losses import stats

Array = jax.Array


class CorInfoMaxState(NamedTuple):
  """Running estimates of each branch's covariance ``(D, D)`` and mean ``(D,)``."""
  r_a: Array
  r_b: Array
  mu_a: Array
  mu_b: Array


def corinfomax_init(dim: int, *, r_init: float = 1.0,
                    dtype: jnp.dtype = jnp.float32) -> CorInfoMaxState:
  """The initial CorInfoMax state: covariances ``r_init * I``, means zero.

  The official code keeps the state in float64; pass ``dtype=jnp.float64`` (with
  ``jax_enable_x64``) for that, or keep the default float32 on accelerators without fast
  float64, which :func:`corinfomax` keeps finite and close to the float64 path.

  Example:
    >>> state = corinfomax_init(64)
  """
  if int(dim) < 1:
    raise ValueError(f"corinfomax_init: dim must be a positive embedding size; got {dim}.")
  eye = r_init * jnp.eye(dim, dtype=dtype)
  zeros = jnp.zeros((dim,), dtype)
  return CorInfoMaxState(r_a=eye, r_b=eye, mu_a=zeros, mu_b=zeros)


def corinfomax(state: CorInfoMaxState, z_a: Array, z_b: Array, *, alpha: float = 250.0,
               cov_weight: float = 1.0, la_R: float = 0.01, la_mu: float = 0.01,
               eps: float = 1e-8, normalize: bool = True, axis_name: str | None = None,
               ) -> tuple[Array, tuple[CorInfoMaxState, dict[str, Array]]]:
  """CorInfoMax loss (Ozsoy et al., NeurIPS 2022; serdarozsoy/corinfomax-ssl).

  For each branch, with ``la_*`` the weight of the *old* estimate and statistics over the
  global batch::

    mu'  = la_mu * mu + (1 - la_mu) * mean(z)
    R'   = la_R * R + (1 - la_R) * (z - mu')^T (z - mu') / N
    cov_loss = -(logdet(R'_a + eps I) + logdet(R'_b + eps I)) / D
    loss = alpha * mean((z_a - z_b)^2) + cov_weight * cov_loss

  The gradient flows through this batch's terms only; the returned state is
  ``stop_gradient(R', mu')``. As in the official model, rows are L2-normalised first
  (``normalize=False`` to skip). Defaults are the CIFAR-10 recipe (alpha 1000 for CIFAR-100).

  Numerics: the update is symmetrised and the log-det taken by Cholesky, with an eigenvalue
  fallback (clipped at ``eps``) when rounding breaks the factorisation, so a float32 state
  stays finite for rank-deficient batches (N < D) and tracks the float64 reference. Cost:
  2 N D^2 (covariance update, split over devices) + D^3/3 (Cholesky) per branch.

  Args:
    state: from :func:`corinfomax_init` or the previous call; equal on all devices.
    z_a, z_b: ``(N, D)`` embeddings of the two views (this device's rows under ``axis_name``).
    alpha: weight of the invariance (MSE) term.
    cov_weight: weight of the log-det term.
    la_R, la_mu: weights of the previous covariance and mean estimates.
    eps: added to the diagonal before the log-det.
    normalize: L2-normalise each row of ``z_a``, ``z_b`` first.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    ``(loss, (new_state, aux))`` with ``aux`` the unweighted ``invariance`` and
    ``covariance`` (the log-det term).

  Example:
    >>> state = corinfomax_init(64)
    >>> z_a, z_b = jax.random.normal(jax.random.key(0), (2, 512, 64))
    >>> loss, (state, aux) = corinfomax(state, z_a, z_b)
  """
  n = stats.check_embeddings("corinfomax", z_a, z_b, axis_name=axis_name)
  dim = z_a.shape[1]
  expected = {"r_a": (dim, dim), "r_b": (dim, dim), "mu_a": (dim,), "mu_b": (dim,)}
  got = {name: tuple(jnp.shape(v)) for name, v in state._asdict().items()}
  if got != expected:
    raise ValueError(
        f"corinfomax: the state does not fit embeddings of shape {tuple(z_a.shape)}: got "
        f"{got}, expected {expected}. Build it with corinfomax_init({dim}).")
  dtype = stats.compute_dtype(z_a, z_b, state.r_a)
  z_a, z_b = z_a.astype(dtype), z_b.astype(dtype)
  if normalize:
    z_a, z_b = stats.l2_normalise(z_a), stats.l2_normalise(z_b)
  invariance = stats.global_mse(z_a, z_b, axis_name)
  logdet_a, r_a, mu_a = _update_and_logdet(z_a, state.r_a, state.mu_a, n, la_R, la_mu, eps,
                                           axis_name)
  logdet_b, r_b, mu_b = _update_and_logdet(z_b, state.r_b, state.mu_b, n, la_R, la_mu, eps,
                                           axis_name)
  aux = stats.replicate({
      "invariance": invariance,
      "covariance": -(logdet_a + logdet_b) / dim,
  }, axis_name)
  loss = alpha * aux["invariance"] + cov_weight * aux["covariance"]
  new_state = jax.lax.stop_gradient(CorInfoMaxState(
      r_a=r_a.astype(state.r_a.dtype), r_b=r_b.astype(state.r_b.dtype),
      mu_a=mu_a.astype(state.mu_a.dtype), mu_b=mu_b.astype(state.mu_b.dtype)))
  return loss, (new_state, aux)


def _update_and_logdet(z: Array, r: Array, mu: Array, n: int, la_R: float, la_mu: float,
                       eps: float, axis_name: str | None) -> tuple[Array, Array, Array]:
  """One branch: the updated mean and covariance, and ``logdet(R' + eps I)``."""
  mu_new = la_mu * mu.astype(z.dtype) + (1.0 - la_mu) * stats.global_mean(z, axis_name)
  z_hat = z - mu_new
  update = stats.global_sum(stats.matmul(z_hat.T, z_hat), axis_name) / n
  r_new = la_R * r.astype(z.dtype) + (1.0 - la_R) * update
  r_new = (r_new + r_new.T) / 2
  eye = jnp.eye(z.shape[1], dtype=z.dtype)
  return stats.logdet_psd(r_new + eps * eye, eps), r_new, mu_new
