"""Label-free diagnostics of embeddings: RankMe, the covariance spectrum, the correlation
matrix and pairwise independence (normalised HSIC), for any ``(N, D)`` array."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.losses import stats

RANKME_EPS = 1e-7  # Garrido et al. (2023)


def singular_values(z: np.ndarray) -> np.ndarray:
  """Singular values of the ``(N, D)`` embeddings, descending."""
  z = np.asarray(z, np.float64)
  if z.ndim != 2:
    raise ValueError(f"Embeddings must be (N, D); got {z.shape}.")
  return np.linalg.svd(z, compute_uv=False)


def rankme(z: np.ndarray) -> float:
  """RankMe (Garrido et al., ICML 2023): ``exp(-sum p_k log p_k)`` with
  ``p_k = sigma_k / ||sigma||_1 + eps``, the effective rank of the embeddings."""
  sigma = singular_values(z)
  p = sigma / np.sum(sigma) + RANKME_EPS
  return float(np.exp(-np.sum(p * np.log(p))))


def covariance_spectrum(z: np.ndarray) -> np.ndarray:
  """Eigenvalues of the embedding covariance, descending (the collapse diagnostic)."""
  z = np.asarray(z, np.float64)
  z = z - z.mean(0)
  return singular_values(z) ** 2 / max(len(z) - 1, 1)


def correlation_matrix(z: np.ndarray) -> np.ndarray:
  """The ``(D, D)`` Pearson correlations of the embedding's features."""
  return np.corrcoef(np.asarray(z, np.float64), rowvar=False)


def _centred_kernels(z: jax.Array) -> jax.Array:
  """Per feature, the double-centred Gaussian kernel matrix with the median-heuristic
  bandwidth (the median of the feature's nonzero pairwise distances): ``(D, n, n)``."""
  n = z.shape[0]
  dist = jnp.abs(z.T[:, :, None] - z.T[:, None, :])  # (D, n, n)
  upper = jnp.triu_indices(n, k=1)
  width = jnp.median(dist[:, upper[0], upper[1]], axis=1)
  width = jnp.where(width > 0, width, 1.0)
  k = jnp.exp(-dist**2 / (2 * width[:, None, None] ** 2))
  k = k - k.mean(1, keepdims=True)
  return k - k.mean(2, keepdims=True)


@jax.jit
def _normalised_hsic(z: jax.Array) -> jax.Array:
  k = _centred_kernels(z).reshape(z.shape[1], -1)
  # (D, D): (n-1)^2 HSIC_b of every pair of features. In full float32 on every platform:
  # an independent pair's HSIC (about 1/n of the diagonal) is of the order of TF32's rounding.
  gram = stats.matmul(k, k.T)
  norms = jnp.sqrt(jnp.clip(jnp.diag(gram), 1e-30))
  return gram / norms[:, None] / norms[None, :]


def pairwise_hsic(z, *, max_samples: int = 512, seed: int = 0) -> np.ndarray:
  """Normalised HSIC between every pair of features of ``(N, D)`` embeddings: ``(D, D)``
  with ones on the diagonal, 0 for independent features and up to 1 for dependent ones,
  whatever the form of the dependence (unlike correlation). Gaussian kernels with the
  median heuristic; ``HSIC(i, j) / sqrt(HSIC(i, i) HSIC(j, j))`` with the biased estimator
  (Gretton et al., 2005). Rows are subsampled to ``max_samples`` (cost ``D n^2``), which also
  sets the estimator's bias for independent features, about ``1 / n``."""
  z = np.asarray(z, np.float32)
  if z.ndim != 2 or len(z) < 4:
    raise ValueError(f"pairwise_hsic: embeddings must be (N >= 4, D); got {z.shape}.")
  if not np.all(np.isfinite(z)):
    raise ValueError("pairwise_hsic: the embeddings have non-finite values.")
  if len(z) > max_samples:
    rows = np.random.default_rng(seed).choice(len(z), max_samples, replace=False)
    z = z[rows]
  return np.asarray(_normalised_hsic(jnp.asarray(z)), np.float64)
