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

Many sources (``bench/ica.py``, README): beyond a few sources joint gradient descent on the
rotation stalls (k = 8 mixed sources: Amari 0.11 frozen to 0.70 trained; k = 32: 0.38-0.45,
where FastICA reaches about 0.01). ``sweeps > 0`` first runs Jacobi sweeps: rounds of disjoint
pairs of components, each pair rotated by the grid angle that minimises VCReg's covariance
term between the two (a frozen random projector), which only ever looks at two components.
From there the refinement must keep the projector frozen and leave out the within-component
covariances (``MANY_SOURCES``); with either, it walks away from the sweeps' answer. k = 8
mixed sources then reach FastICA's 0.009. k = 32 still does not converge (the sweeps keep
rotating pairs: two mixtures of many sources are nearly Gaussian and their pairwise
dependence is too weak for 4,000 rows and 32 random features to steer by); use FastICA there.

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
  sweeps: int = 0  # Jacobi sweeps taken (0: none)

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


# The settings for more than 4 sources: Jacobi sweeps to get near the unmixing, then the
# refinement with the projector frozen and the within-component covariances left out (with
# them, or with the projector trained, the refinement walks away from the sweeps' answer).
MANY_SOURCES = {"sweeps": 10, "train_projector": False, "cross_only": True, "width": 32}


def round_robin(k: int) -> np.ndarray:
  """``(k - 1, k / 2, 2)``: rounds of disjoint pairs (``k`` even) covering every pair once
  (the circle method)."""
  players = list(range(k))
  rounds = []
  for _ in range(k - 1):
    rounds.append([(players[i], players[k - 1 - i]) for i in range(k // 2)])
    players = [players[0], players[-1], *players[1:-1]]
  return np.asarray(rounds)


def pair_dependence(h: dict[str, jax.Array], y_i: jax.Array, y_j: jax.Array) -> jax.Array:
  """VCReg's covariance term between two components: ``|Cov(h(y_i), h(y_j))|_F^2``."""
  f_i, f_j = project(h, y_i[:, None]), project(h, y_j[:, None])
  f_i, f_j = f_i - f_i.mean(0), f_j - f_j.mean(0)
  return jnp.sum((f_i.T @ f_j / (y_i.shape[0] - 1)) ** 2)


def jacobi_rotation(xw: jax.Array, h: dict[str, jax.Array], *, sweeps: int, angles: int,
                    min_gain: float = 0.2) -> tuple[np.ndarray, int]:
  """The rotation ``Q`` that pairwise (Jacobi) sweeps reach, and the sweeps they took.

  Each round rotates disjoint pairs of components, each by the angle in a grid of ``angles``
  over ``[0, pi/2)`` (2-D ICA is solved up to that) that minimises their
  :func:`pair_dependence`, when that lowers it by at least ``min_gain`` (an independent
  pair's profile is flat, and chasing its noise would undo earlier rounds). Sweeps stop when
  no pair moves by more than a grid step. This is what scales to many sources: each 1-D
  search sees only two components, where joint gradient descent on all of them stalls.
  """
  n, k = xw.shape
  even = k + k % 2
  y0 = jnp.concatenate([xw, jnp.zeros((n, even - k), xw.dtype)], 1)
  thetas = jnp.arange(angles) * (math.pi / 2 / angles)

  @jax.jit
  def one_round(q, pairs):
    y = y0 @ q.T

    def best(pair):
      y_i, y_j = y[:, pair[0]], y[:, pair[1]]
      rotated = lambda t: (jnp.cos(t) * y_i - jnp.sin(t) * y_j,
                           jnp.sin(t) * y_i + jnp.cos(t) * y_j)
      deps = jax.vmap(lambda t: pair_dependence(h, *rotated(t)))(thetas)
      real = (pair[0] < k) & (pair[1] < k)  # a pair with the padding column stays put
      return jnp.where(real & (jnp.min(deps) < (1 - min_gain) * deps[0]),
                       thetas[jnp.argmin(deps)], 0.0)

    t = jax.lax.map(best, pairs)
    i, j = pairs[:, 0], pairs[:, 1]
    c, s = jnp.cos(t), jnp.sin(t)
    g = jnp.eye(even).at[i, i].set(c).at[i, j].set(-s).at[j, i].set(s).at[j, j].set(c)
    return g @ q, jnp.max(jnp.minimum(t, math.pi / 2 - t))

  q = jnp.eye(even)
  for sweep in range(1, sweeps + 1):
    moved = 0.0
    for pairs in round_robin(even):
      q, m = one_round(q, jnp.asarray(pairs))
      moved = max(moved, float(m))
    if moved <= 1.5 * math.pi / 2 / angles:
      break
  return np.asarray(q, np.float64)[:k, :k], sweep


def fit(x: np.ndarray, *, width: int | None = None, steps: int = 1000,
        batch_size: int | None = 4096, learning_rate: float = 0.02,
        train_projector: bool = True, cross_only: bool = False, std_coeff: float = 25.0,
        sweeps: int = 0, angles: int = 60, jacobi_rows: int = 4000, jacobi_width: int = 32,
        seed: int = 0) -> ICAResult:
  """Unmix ``x`` (``(N, k)`` mixtures) by minimising VCReg of ``h(W x)`` with Adam over
  ``steps`` minibatches of ``batch_size`` rows (``None``: the whole data each step).
  ``width``: features per component (default :func:`default_width`).

  ``sweeps > 0`` first runs up to that many Jacobi sweeps over pairs of components
  (:func:`jacobi_rotation`, on ``jacobi_rows`` rows, with a frozen random projector of
  ``jacobi_width`` features) and starts Adam from where they end. For more than 4 sources
  use ``sweeps=10, train_projector=False, cross_only=True`` (:data:`MANY_SOURCES`); see the
  module docstring for what each setting reaches."""
  x = _check_input(x)
  start = time.perf_counter()
  n, k = x.shape
  width = default_width(k) if width is None else width
  mean, v = whitening(x)
  key_h, key_b, key_batches, key_rows = jax.random.split(jax.random.key(seed), 4)
  h = projector_init(key_h, width)
  xw = jnp.asarray((x - mean) @ v.T, jnp.float32)
  q0, used = np.eye(k), 0
  if sweeps:
    rows = jax.random.permutation(key_rows, n)[:min(n, jacobi_rows)]
    q0, used = jacobi_rotation(xw[rows], projector_init(key_h, jacobi_width), sweeps=sweeps,
                               angles=angles)
  xw = xw @ jnp.asarray(q0.T, jnp.float32)
  params = {"b": (0.0 if sweeps else 0.1) * jax.random.normal(key_b, (k, k)), "h": h}
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
  unmixing = np.asarray(rotation(params["b"]), np.float64) @ q0 @ v
  sources = (x - mean) @ unmixing.T
  gaussian = int(np.sum(jarque_bera_p(sources) > GAUSSIAN_P_VALUE))
  return ICAResult(unmixing, sources, mean, np.asarray(history), gaussian,
                   time.perf_counter() - start, used)
