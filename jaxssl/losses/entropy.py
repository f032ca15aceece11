"""Entropy estimators of an embedding batch and the information-theoretic VICReg."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxssl.losses import stats

Array = jax.Array

ESTIMATORS = ("logdet", "pairdist")


def logdet_entropy(z: Array, *, beta: float = 1.0, form: str = "auto",
                   axis_name: str | None = None) -> Array:
  """LogDet entropy estimate ``H(z) = 0.5 * logdet(I_D + beta * C(z))``.

  ``C(z)`` is the unbiased (N - 1) covariance over the global batch. By Sylvester's identity
  ``logdet(I_D + beta Z^T Z / (N-1)) = logdet(I_N + beta Z Z^T / (N-1))``, so
  ``form='feature'`` costs 2 N D^2 + D^3/3 FLOPs and ``form='sample'`` 2 N^2 D + N^3/3;
  ``'auto'`` picks the smaller (sample when N < D). Sharded or under ``axis_name`` each device
  computes its rows' share of the Gram matrix; the factorisation is replicated. The matrix has
  eigenvalues >= 1, so the estimate is finite for any rank (e.g. D > N).

  Args:
    z: ``(N, D)`` embeddings (this device's rows under ``axis_name``).
    beta: scale of the covariance inside the log-det.
    form: ``'auto'``, ``'sample'`` or ``'feature'``; all give the same value.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    The scalar entropy estimate (float32 or wider).

  Example:
    >>> h = logdet_entropy(jax.random.normal(jax.random.key(0), (256, 2048)))
  """
  n = stats.check_embeddings("logdet_entropy", z, axis_name=axis_name)
  z = z.astype(stats.compute_dtype(z))
  dim = z.shape[1]
  form = stats.pick_form(form, sample_flops=2 * n * n * dim + n**3 / 3,
                         feature_flops=2 * n * dim * dim + dim**3 / 3)
  z_c = z - stats.global_mean(z, axis_name)
  if form == "feature":
    gram = stats.global_sum(stats.matmul(z_c.T, z_c), axis_name)
  else:
    gram = stats.gather(stats.matmul(z_c, stats.gather(z_c, axis_name).T), axis_name)
  m = jnp.eye(gram.shape[0], dtype=z.dtype) + (beta / (n - 1)) * gram
  return stats.replicate(0.5 * stats.logdet_psd(m, 1.0), axis_name)


def pairdist_entropy(z: Array, *, sigma: float = 1.0, axis_name: str | None = None) -> Array:
  """Pairwise-distance entropy estimate (Kolchinsky & Tracey 2017, KL form).

  The embedding distribution is a mixture of isotropic Gaussians of width ``sigma`` at the
  samples of the global batch::

    H(z) = -mean_i log mean_j exp(-|z_i - z_j|^2 / (2 sigma^2))

  computed with a log-sum-exp. Cost: 2 N^2 D FLOPs for the distances; under ``axis_name``
  each device computes its rows against the all-gathered batch.

  Args:
    z: ``(N, D)`` embeddings (this device's rows under ``axis_name``).
    sigma: width of the Gaussian kernels.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    The scalar entropy estimate (float32 or wider), between 0 and log N.

  Example:
    >>> h = pairdist_entropy(jax.random.normal(jax.random.key(0), (256, 128)))
  """
  n = stats.check_embeddings("pairdist_entropy", z, axis_name=axis_name)
  z = z.astype(stats.compute_dtype(z))
  everyone = stats.gather(z, axis_name)
  sq_dist = (jnp.sum(z**2, axis=1)[:, None] + jnp.sum(everyone**2, axis=1)[None, :]
             - 2.0 * stats.matmul(z, everyone.T))
  log_kernel = -jnp.maximum(sq_dist, 0.0) / (2.0 * sigma**2)
  log_mean = jax.nn.logsumexp(log_kernel, axis=1) - math.log(n)
  return stats.replicate(-stats.global_sum(jnp.sum(log_mean), axis_name) / n, axis_name)


def info_vicreg(z_a: Array, z_b: Array, *, estimator: str = "logdet", sim_coeff: float = 1.0,
                ent_coeff: float = 1.0, beta: float = 1.0, sigma: float = 1.0,
                form: str = "auto",
                axis_name: str | None = None) -> tuple[Array, dict[str, Array]]:
  """Information-theoretic VICReg (Shwartz-Ziv et al., NeurIPS 2023, arXiv 2303.00633).

  VICReg read as mutual-information maximisation, with its variance and covariance terms (a
  second-order proxy for entropy) replaced by an entropy estimator::

    loss = sim_coeff * mean((z_a - z_b)^2) - ent_coeff * (H(z_a) + H(z_b)) / 2

  with ``H`` :func:`logdet_entropy` (``estimator='logdet'``, uses ``beta`` and ``form``) or
  :func:`pairdist_entropy` (``'pairdist'``, uses ``sigma``). The paper publishes no
  coefficient defaults: ``sim_coeff = ent_coeff = 1`` here, to be tuned per recipe (the
  LogDet entropy grows with D, the pairwise one is at most log N).

  Returns:
    ``(loss, aux)`` with ``aux`` the unweighted ``invariance`` and ``entropy`` (the mean of
    the two views' estimates).

  Example:
    >>> z_a, z_b = jax.random.normal(jax.random.key(0), (2, 256, 512))
    >>> loss, aux = info_vicreg(z_a, z_b, estimator="pairdist", sigma=4.0)
  """
  stats.check_embeddings("info_vicreg", z_a, z_b, axis_name=axis_name)
  if estimator == "logdet":
    entropy = lambda z: logdet_entropy(z, beta=beta, form=form, axis_name=axis_name)
  elif estimator == "pairdist":
    entropy = lambda z: pairdist_entropy(z, sigma=sigma, axis_name=axis_name)
  else:
    raise ValueError(f"info_vicreg: estimator must be one of {ESTIMATORS}; got {estimator!r}.")
  dtype = stats.compute_dtype(z_a, z_b)
  aux = stats.replicate({
      "invariance": stats.global_mse(z_a.astype(dtype), z_b.astype(dtype), axis_name),
      "entropy": (entropy(z_a) + entropy(z_b)) / 2,
  }, axis_name)
  return sim_coeff * aux["invariance"] - ent_coeff * aux["entropy"], aux
