"""Label-free diagnostics of embeddings: RankMe and the covariance spectrum."""

from __future__ import annotations

import numpy as np

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
