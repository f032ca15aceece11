"""Linear ICA by variance-covariance regularisation (Mialon, Balestriero & LeCun, 2022).

VCReg on the output of a wide MLP projector enforces pairwise independence of the
projector's *input* (METHODS.md). Here the input is ``y = W x``, one candidate unmixing of
mixtures ``x = A s``, and :func:`fit` finds ``W`` by minimising VCReg of ``h(y)``:

1. ``x`` is centred and whitened (``V``, the inverse square root of its covariance), so the
   remaining unmixing is a rotation ``Q`` (``W = Q V``), parametrised as ``expm(B - B^T)``:
   every candidate has unit-variance, uncorrelated components and VCReg's variance term is
   met by construction.
2. ``h`` is one MLP ``R -> R^width`` applied to each component ``y_i`` (shared weights,
   Linear-ReLU-Linear). ``VCReg(h(y))``'s covariance term contains
   ``sum_{i != j} |Cov(h(y_i), h(y_j))|_F^2``, zero for every ``h`` when the components are
   independent and, for a wide random ``h``, an HSIC-like measure of their pairwise
   dependence otherwise. It also contains the covariances among one component's own features,
   which depend on the component's distribution but not on which components are paired;
   ``cross_only=True`` drops them.
3. ``h`` starts random and is trained with ``Q`` (``train_projector=True``, the default, as
   in the paper's ICA experiments); ``train_projector=False`` keeps it frozen at its random
   initialisation, the wide-random-projector setting of the paper's theory. Measured on
   k = 4 Laplace sources, N = 10,000 (``bench/ica.py``): trained, Amari distance 0.007-0.008,
   at or below FastICA's 0.007-0.013 on the same data; frozen, 0.010-0.011.

Known limit (``bench/ica.py``, README): beyond a few sources the optimisation does not reach
the unmixing. k = 8 Laplace gives 0.015 (FastICA 0.010), but k = 8 mixed sources give 0.11
(frozen projector) to 0.70 (trained), and k = 32 gives 0.38-0.45, where FastICA stays at
about 0.01. Use FastICA for k > 4 until this is fixed.

Non-Gaussian sources are identifiable only up to permutation and scale, Gaussian ones not
at all: :func:`fit` reports how many recovered components look Gaussian (Jarque-Bera test)
and ``ICAResult.identifiable`` is False when two or more do.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl import losses

SOURCE_KINDS = ("laplace", "uniform", "exponential", "mixed", "gaussian")
GAUSSIAN_P_VALUE = 1e-3  # Jarque-Bera: above this a component is indistinguishable from Gaussian


def amari_distance(p: np.ndarray) -> float:
  """Amari distance of ``P = W A`` (0 = perfect unmixing up to permutation and scale)::

    (sum_i (sum_j |p_ij| / max_j |p_ij| - 1) + sum_j (sum_i |p_ij| / max_i |p_ij| - 1))
      / (2 k (k - 1))
  """
  p = np.abs(np.asarray(p, np.float64))
  if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] < 2:
    raise ValueError(f"amari_distance: P must be square and at least 2x2; got {p.shape}.")
  k = p.shape[0]
  rows = np.sum(np.sum(p, 1) / np.max(p, 1) - 1)
  cols = np.sum(np.sum(p, 0) / np.max(p, 0) - 1)
  return float((rows + cols) / (2 * k * (k - 1)))


def make_sources(n: int, k: int, kind: str = "laplace", seed: int = 0) -> np.ndarray:
  """``(n, k)`` independent sources with zero mean and unit variance. ``kind``: ``laplace``,
  ``uniform``, ``exponential``, ``gaussian``, or ``mixed`` (the first three in turn)."""
  if kind not in SOURCE_KINDS:
    raise ValueError(f"make_sources: kind must be one of {SOURCE_KINDS}; got {kind!r}.")
  rng = np.random.default_rng(seed)
  draw = {
      "laplace": lambda: rng.laplace(0.0, 1 / math.sqrt(2), n),
      "uniform": lambda: rng.uniform(-math.sqrt(3), math.sqrt(3), n),
      "exponential": lambda: rng.exponential(1.0, n) - 1.0,
      "gaussian": lambda: rng.normal(0.0, 1.0, n),
  }
  kinds = ["laplace", "uniform", "exponential"] if kind == "mixed" else [kind]
  return np.stack([draw[kinds[i % len(kinds)]]() for i in range(k)], axis=1)


def random_mixing(k: int, seed: int = 0, condition: float = 4.0) -> np.ndarray:
  """A random ``(k, k)`` mixing matrix with condition number ``condition`` (random rotations
  around singular values spread log-uniformly between 1 and ``condition``)."""
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(k, k)))
  v, _ = np.linalg.qr(rng.normal(size=(k, k)))
  return u @ np.diag(np.geomspace(1.0, condition, k)) @ v.T


@dataclasses.dataclass(frozen=True)
class ICAResult:
  """``unmixing``: ``W`` with ``sources = (x - mean) @ W.T``; ``gaussian_components``: how many
  recovered components a Jarque-Bera test cannot tell from Gaussian."""
  unmixing: np.ndarray
  sources: np.ndarray
  mean: np.ndarray
  losses: np.ndarray
  gaussian_components: int
  seconds: float

  @property
  def identifiable(self) -> bool:
    """ICA recovers at most one Gaussian component; with two or more the answer is arbitrary
    within their span."""
    return self.gaussian_components < 2


def jarque_bera_p(y: np.ndarray) -> np.ndarray:
  """Per-column p-values of the Jarque-Bera normality test (chi-squared with 2 dof)."""
  y = np.asarray(y, np.float64)
  y = (y - y.mean(0)) / y.std(0)
  skew, kurt = np.mean(y**3, 0), np.mean(y**4, 0) - 3.0
  stat = len(y) / 6.0 * (skew**2 + kurt**2 / 4.0)
  return np.exp(-stat / 2.0)  # the chi2(2) survival function


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


def projector_init(key: jax.Array, width: int) -> dict[str, jax.Array]:
  """The per-component MLP ``R -> R^width``: ``relu(y a + b) @ C``, He-initialised."""
  k_a, k_b, k_c = jax.random.split(key, 3)
  return {"a": jax.random.normal(k_a, (1, width)), "b": jax.random.normal(k_b, (width,)),
          "c": jax.random.normal(k_c, (width, width)) * math.sqrt(2.0 / width)}


def project(h: dict[str, jax.Array], y: jax.Array) -> jax.Array:
  """``(n, k)`` components -> ``(n, k * width)`` features, the same MLP on each component."""
  features = jax.nn.relu(y[..., None] * h["a"][0] + h["b"]) @ h["c"]
  return features.reshape(y.shape[0], -1)


def rotation(b: jax.Array) -> jax.Array:
  return jax.scipy.linalg.expm(b - b.T)


def vcreg_ica_loss(params, xw: jax.Array, *, cross_only: bool, width: int,
                   std_coeff: float = 25.0) -> jax.Array:
  """VCReg of the projected components of ``xw @ Q^T`` (``xw`` whitened)."""
  y = xw @ rotation(params["b"]).T
  z = project(params["h"], y)
  if not cross_only:
    return losses.vcreg(z, std_coeff=std_coeff)[0]
  z = z - z.mean(0)
  c = (z.T @ z) / (z.shape[0] - 1)
  k = y.shape[1]
  same = jnp.kron(jnp.eye(k), jnp.ones((width, width)))  # within-component blocks
  return jnp.sum((c * (1 - same)) ** 2) / z.shape[1]


def default_width(k: int) -> int:
  """Features per component: 256 features in all, between 8 and 64 per component."""
  return int(min(64, max(8, 256 // k)))


def fit(x: np.ndarray, *, width: int | None = None, steps: int = 1000,
        batch_size: int | None = 4096, learning_rate: float = 0.02,
        train_projector: bool = True, cross_only: bool = False, std_coeff: float = 25.0,
        seed: int = 0) -> ICAResult:
  """Unmix ``x`` (``(N, k)`` mixtures) by minimising VCReg of ``h(W x)``, with Adam over
  ``steps`` minibatches of ``batch_size`` rows (``None``: the whole data each step).
  ``width``: features per component (default :func:`default_width`)."""
  x = _check_input(x)
  start = time.perf_counter()
  n, k = x.shape
  width = default_width(k) if width is None else width
  mean, v = whitening(x)
  xw = jnp.asarray((x - mean) @ v.T, jnp.float32)
  key_h, key_b, key_batches = jax.random.split(jax.random.key(seed), 3)
  params = {"b": 0.1 * jax.random.normal(key_b, (k, k)), "h": projector_init(key_h, width)}
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  if not train_projector:
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               {"b": "train", "h": jax.tree.map(lambda _: "frozen",
                                                                params["h"])})
  batch = n if batch_size is None or batch_size >= n else batch_size
  loss_fn = lambda p, xb: vcreg_ica_loss(p, xb, cross_only=cross_only, width=width,
                                         std_coeff=std_coeff)

  @jax.jit
  def run(params):
    def one(carry, key):
      params, opt_state = carry
      rows = jax.random.choice(key, n, (batch,), replace=False) if batch < n else slice(None)
      loss, grads = jax.value_and_grad(loss_fn)(params, xw[rows])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    keys = jax.random.split(key_batches, steps)
    (params, _), history = jax.lax.scan(one, (params, tx.init(params)), keys)
    return params, history

  params, history = run(params)
  unmixing = np.asarray(rotation(params["b"]), np.float64) @ v
  sources = (x - mean) @ unmixing.T
  gaussian = int(np.sum(jarque_bera_p(sources) > GAUSSIAN_P_VALUE))
  return ICAResult(unmixing, sources, mean, np.asarray(history), gaussian,
                   time.perf_counter() - start)
