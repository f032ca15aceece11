"""``fit``: whiten the mixtures, find the rotation with the chosen method, report the
unmixing, the sources and whether they are identifiable."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.ica.gradient import Gradient
from jaxssl.ica.jacobi import Jacobi
from jaxssl.ica.problems import jarque_bera_p

GAUSSIAN_P_VALUE = 1e-3  # Jarque-Bera: above this a component is indistinguishable from Gaussian


@dataclasses.dataclass(frozen=True)
class ICAResult:
  """``unmixing``: ``W`` with ``sources = (x - mean) @ W.T``; ``losses``: the total pairwise
  dependence per sweep (Jacobi) or the loss per step (gradient); ``gaussian_components``: how
  many recovered components a Jarque-Bera test cannot tell from Gaussian."""
  unmixing: np.ndarray
  sources: np.ndarray
  mean: np.ndarray
  losses: np.ndarray
  gaussian_components: int
  seconds: float
  sweeps: int = 0  # Jacobi sweeps taken, polish included (0: the gradient method)

  @property
  def identifiable(self) -> bool:
    """ICA recovers at most one Gaussian component; with two or more the answer is arbitrary
    within their span."""
    return self.gaussian_components < 2


def fit(x: np.ndarray, method: Jacobi | Gradient = Jacobi()) -> ICAResult:
  """Unmix ``x`` (``(N, k)`` mixtures) by minimising VCReg's covariance term of ``h(W x)``
  with ``method``: ``ica.Jacobi(...)`` (the default: no random draw, and the same answer on
  every call on CPU; on GPU its per-cell sums are scatter-adds, summed in a run-dependent
  order unless ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``) or ``ica.Gradient(...)``, each
  with its own settings."""
  if not isinstance(method, (Jacobi, Gradient)):
    raise TypeError(f"ica.fit: method must be ica.Jacobi(...) or ica.Gradient(...) (their "
                    f"fields are the settings); got {method!r}.")
  x = _check_input(x)
  start = time.perf_counter()
  mean, v = whitening(x)
  # float32 in full on every platform, as on a CPU: JAX's default is TF32 on NVIDIA GPUs and
  # one bfloat16 pass on TPUs, of the order of the small dependences the method compares.
  with jax.default_matmul_precision("float32"):
    q, sweeps, history = method.rotation(jnp.asarray((x - mean) @ v.T, jnp.float32))
    unmixing = q @ v
    sources = (x - mean) @ unmixing.T
  gaussian = int(np.sum(jarque_bera_p(sources) > GAUSSIAN_P_VALUE))
  return ICAResult(unmixing, sources, mean, history, gaussian, time.perf_counter() - start,
                   sweeps)


def _check_input(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f"ica.fit: x must be (N, k) mixtures; got shape {x.shape}.")
  n, k = x.shape
  if k < 2:
    raise ValueError(f"ica.fit: need at least 2 mixtures (columns); got {k}.")
  if n <= k:
    raise ValueError(f"ica.fit: need more samples than mixtures; got N={n} <= k={k}.")
  if not np.all(np.isfinite(x)):
    bad = np.argwhere(~np.isfinite(x))[0]
    raise ValueError(f"ica.fit: x has non-finite values (first at row {bad[0]}, column "
                     f"{bad[1]}); remove or impute them first.")
  return x


def whitening(x: np.ndarray, rcond: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
  """The mean and the symmetric whitening matrix ``V`` (``cov((x - mean) V^T) = I``); a
  rank-deficient ``x`` (fewer independent mixtures than columns) is an error."""
  mean = x.mean(0)
  cov = np.cov(x - mean, rowvar=False)
  eigvals, eigvecs = np.linalg.eigh(cov)
  if eigvals[0] <= rcond * eigvals[-1]:
    raise ValueError(
        f"ica.fit: the mixtures are rank-deficient (covariance eigenvalues {eigvals[0]:.3g} "
        f"to {eigvals[-1]:.3g}): some columns are linear combinations of others. Reduce them "
        "first (e.g. PCA to the number of sources).")
  return mean, (eigvecs / np.sqrt(eigvals)) @ eigvecs.T
