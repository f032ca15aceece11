"""Linear ICA by variance-covariance regularisation (Mialon, Balestriero & LeCun, 2022).

VCReg on the output of a wide MLP projector enforces pairwise independence of the
projector's *input* (METHODS.md). Here the input is ``y = W x``, one candidate unmixing of
mixtures ``x = A s``, and :func:`fit` finds ``W`` by minimising VCReg's covariance term of
``h(y)``:

1. ``x`` is centred and whitened (``V``, the inverse square root of its covariance), so the
   remaining unmixing is a rotation ``Q`` (``W = Q V``): every candidate has unit-variance,
   uncorrelated components and VCReg's variance term is met by construction.
2. ``h`` is one MLP ``R -> R^width`` applied to each component ``y_i`` (shared weights,
   Linear-ReLU-Linear). ``VCReg(h(y))``'s covariance term contains
   ``sum_{i != j} |Cov(h(y_i), h(y_j))|_F^2`` (:func:`pair_dependence`), zero for every ``h``
   when the components are independent and, for a wide random ``h``, an HSIC-like measure of
   their pairwise dependence otherwise. It also contains the covariances among one
   component's own features, which depend on the component's distribution but not on which
   components are paired.

Two ways to find ``Q`` (``method``), measured in ``bench/ica.py`` (N = 10,000, README):

- ``"jacobi"`` (the default): Jacobi sweeps (:func:`jacobi_rotation`). The rotation is a
  product of plane rotations of two components at a time, each chosen by a 1-D search of the
  pair's cross-covariance term under a frozen projector. Amari distance at FastICA's level
  from k = 2 to k = 32 (k = 32: 0.008 mixed, 0.012 Laplace sources, against FastICA's 0.009;
  one to three minutes on 2 CPU cores, FastICA well under a second).
- ``"gradient"``: the paper's ICA experiment, Adam on ``Q = expm(B - B^T)`` and the projector
  together (``train_projector=True``) over the whole VCReg. At k = 4 Laplace sources it is at
  or below FastICA (0.007 against 0.010), frozen 0.010-0.011; beyond a few sources joint
  descent stalls (k = 8 mixed sources: 0.1-0.7; k = 32: about 0.4).

The projector. The paper's theory is about wide *random* projectors, and the gradient method
draws one (:func:`projector_init`, He-initialised, then trained or frozen). For the sweeps
the draw matters more than the width: with a random first layer the hidden units' kinks
(``-b / a``) fall where a Cauchy distribution puts them, a fifth beyond three standard
deviations where there is little data, and units with small slopes barely count. The sweeps
use :func:`threshold_projector` instead, ``relu(y - t)`` at 32 thresholds evenly over +-3
standard deviations: no draw, every feature weighted alike. Over k = 2, 4, 8 (Laplace and
mixed sources, three seeds each, 12 problems) the mean Amari distance of the sweeps was
0.0093 with it, 0.0151 with a random projector and 0.0104 with random slopes and output
layer but the kinks spread evenly; FastICA's was 0.0094 (``bench/ica.py --projectors``).

Non-Gaussian sources are identifiable only up to permutation and scale, Gaussian ones not
at all: :func:`fit` reports how many recovered components look Gaussian (Jarque-Bera test)
and ``ICAResult.identifiable`` is False when two or more do.
"""

from __future__ import annotations

import dataclasses
import functools
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
  """A random per-component MLP ``R -> R^width``: ``relu(y a + b) @ C``, He-initialised."""
  k_a, k_b, k_c = jax.random.split(key, 3)
  return {"a": jax.random.normal(k_a, (1, width)), "b": jax.random.normal(k_b, (width,)),
          "c": jax.random.normal(k_c, (width, width)) * math.sqrt(2.0 / width)}


def threshold_projector(width: int, reach: float) -> dict[str, jax.Array]:
  """The Jacobi sweeps' frozen projector, in :func:`projector_init`'s form: ``h(y)_p =
  relu(y - t_p)`` with the thresholds ``t_p`` evenly over ``[-reach, reach]`` (slopes 1,
  ``C = I``): no random draw to be unlucky with (the module docstring has the comparison)."""
  return {"a": jnp.ones((1, width)), "b": -jnp.linspace(-reach, reach, width),
          "c": jnp.eye(width)}


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
  """Features per component of the gradient method: 256 in all, between 8 and 64 each."""
  return int(min(64, max(8, 256 // k)))


METHODS = ("jacobi", "gradient")
JACOBI_WIDTH = 32  # features per component of the Jacobi sweeps' threshold_projector
JACOBI_REACH = 3.0  # its thresholds lie evenly within this many standard deviations


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
  """VCReg's covariance term between two components: ``|Cov(h(y_i), h(y_j))|_F^2``.

  ``h(y) = relu(y a + b) C`` is linear after the ReLU, so this is ``|C^T K C|_F^2`` with ``K``
  the cross-covariance of the hidden units."""
  return _dependence(h, _hidden_moments(h, y_i, y_j, jnp.ones_like(y_i)), y_i.shape[0])


def _hidden_moments(h, y_i, y_j, weight):
  """Sums over rows of the hidden units of ``h`` on two components and of their products
  (``weight`` 0 leaves a padding row out)."""
  r_i = jax.nn.relu(y_i[..., None] * h["a"][0] + h["b"]) * weight[..., None]
  r_j = jax.nn.relu(y_j[..., None] * h["a"][0] + h["b"]) * weight[..., None]
  return r_i.sum(-2), r_j.sum(-2), jnp.einsum("...ni,...nj->...ij", r_i, r_j)


def _dependence(h, moments, n):
  sum_i, sum_j, products = moments
  cov_hidden = (products - sum_i[..., :, None] * sum_j[..., None, :] / n) / (n - 1)
  return jnp.sum((h["c"].T @ cov_hidden @ h["c"]) ** 2, axis=(-2, -1))


def jacobi_rotation(xw: jax.Array, h: dict[str, jax.Array], *, sweeps: int = 15,
                    angles: int = 30, polish: int = 2, polish_angles: int = 41,
                    min_gain: float = 0.2, chunk: int = 8192
                    ) -> tuple[np.ndarray, int, np.ndarray]:
  """Pairwise (Jacobi) sweeps on whitened ``xw``: the rotation ``Q`` they reach, the sweeps
  they took and each sweep's total dependence (the sum of every pair's
  :func:`pair_dependence` as the sweep found it).

  Each round rotates disjoint pairs of components (:func:`round_robin`), each pair by the
  angle that minimises its :func:`pair_dependence`: the best of a grid of ``angles`` over
  ``[0, pi/2)`` (2-D ICA is solved up to that), refined to the vertex of the parabola through
  it and its two neighbours. A pair moves only when that lowers its dependence by at least
  ``min_gain`` (an independent pair's profile is flat, and chasing its noise would undo
  earlier rounds). Sweeps stop when no pair moves by more than a grid step, or after
  ``sweeps``; then ``polish`` more sweeps search a finer grid of ``polish_angles`` within
  two coarse steps of each pair's current angle and move every pair to its minimum, however
  small the gain: that takes the answer from the coarse grid's resolution (3 degrees; a
  parabola through points that far apart misplaces the minimum of this piecewise-smooth
  profile) to the data's (an Amari distance of 0.01 is about half a degree).
  Dependences are accumulated over all rows in chunks of ``chunk``, so memory does not grow
  with ``N``.
  """
  n, k = xw.shape
  even = k + k % 2
  chunks = -(-n // chunk)
  rows = -(-n // chunks)
  y0 = jnp.zeros((chunks * rows, even), xw.dtype).at[:n, :k].set(xw)
  weight = (jnp.arange(chunks * rows) < n).astype(xw.dtype).reshape(chunks, rows)
  width = h["b"].shape[0]
  step = math.pi / 2 / angles
  coarse = jnp.arange(angles) * step  # periodic: pi/2 is 0 again, up to a permutation
  fine = jnp.linspace(-2 * step, 2 * step, polish_angles)

  @functools.partial(jax.jit, static_argnames="periodic")
  def one_round(q, pairs, min_gain, thetas, periodic):
    y = (y0 @ q.T).reshape(chunks, rows, even)
    cos, sin = jnp.cos(thetas)[:, None], jnp.sin(thetas)[:, None]
    size, spacing = thetas.shape[0], thetas[1] - thetas[0]
    here = jnp.argmin(jnp.abs(thetas))  # the pair's current angle

    def best(pair):
      def accumulate(total, chunk_i):
        y_i, y_j, w = y[chunk_i, :, pair[0]], y[chunk_i, :, pair[1]], weight[chunk_i]
        moments = _hidden_moments(h, cos * y_i - sin * y_j, sin * y_i + cos * y_j, w)
        return jax.tree.map(jnp.add, total, moments), None
      zeros = (jnp.zeros((size, width)), jnp.zeros((size, width)),
               jnp.zeros((size, width, width)))
      deps = _dependence(h, jax.lax.scan(accumulate, zeros, jnp.arange(chunks))[0], n)
      m = jnp.argmin(deps)
      if periodic:
        lo, hi, inside = deps[(m - 1) % size], deps[(m + 1) % size], True
      else:
        lo, hi = deps[jnp.maximum(m - 1, 0)], deps[jnp.minimum(m + 1, size - 1)]
        inside = (m > 0) & (m < size - 1)
      mid, curve = deps[m], lo - 2 * deps[m] + hi
      vertex = 0.5 * (lo - hi) / jnp.where(curve > 0, curve, 1.0)
      shift = jnp.where(inside & (curve > 0), jnp.clip(vertex, -0.5, 0.5), 0.0)
      t = thetas[0] + (m + shift) * spacing
      if periodic:
        t = jnp.where(t < 0, t + math.pi / 2, t)
      real = (pair[0] < k) & (pair[1] < k)  # a pair with the padding column stays put
      return jnp.where(real & (mid <= (1 - min_gain) * deps[here]), t, 0.0), deps[here] * real

    t, before = jax.lax.map(best, pairs)
    i, j = pairs[:, 0], pairs[:, 1]
    c, s = jnp.cos(t), jnp.sin(t)
    g = jnp.eye(even).at[i, i].set(c).at[i, j].set(-s).at[j, i].set(s).at[j, j].set(c)
    t = jnp.abs(t)
    return g @ q, jnp.max(jnp.minimum(t, math.pi / 2 - t)), jnp.sum(before)

  def sweep(q, gain, thetas, periodic):
    """One pass over every pair: the new ``Q``, the largest move and the total dependence."""
    moved, total = 0.0, 0.0
    for pairs in round_robin(even):
      q, m, before = one_round(q, jnp.asarray(pairs), gain, thetas, periodic)
      moved, total = max(moved, float(m)), total + float(before)
    return q, moved, total

  q, history = jnp.eye(even), []
  while len(history) < sweeps:
    q, moved, total = sweep(q, min_gain, coarse, True)
    history.append(total)
    if moved <= 1.5 * step:
      break
  for _ in range(polish):
    q, _, total = sweep(q, 0.0, fine, False)
    history.append(total)
  return np.asarray(q, np.float64)[:k, :k], len(history), np.asarray(history)


def fit(x: np.ndarray, *, method: str = "jacobi", width: int | None = None, seed: int = 0,
        sweeps: int = 15, angles: int = 30, polish: int = 2, polish_angles: int = 41,
        min_gain: float = 0.2, chunk: int = 8192, steps: int = 1000, batch_size: int | None = 4096,
        learning_rate: float = 0.02, train_projector: bool = True, cross_only: bool = False,
        std_coeff: float = 25.0) -> ICAResult:
  """Unmix ``x`` (``(N, k)`` mixtures) by minimising VCReg's covariance term of ``h(W x)``.

  ``method="jacobi"`` (the default): pairwise sweeps with the frozen
  :func:`threshold_projector` of ``width`` (default :data:`JACOBI_WIDTH`) features per
  component over :data:`JACOBI_REACH` standard deviations; see :func:`jacobi_rotation` for
  ``sweeps``, ``angles``, ``polish``, ``polish_angles``, ``min_gain`` and ``chunk``. It is
  deterministic: ``seed`` only matters to the gradient method.
  ``method="gradient"``: the paper's joint descent, Adam over ``steps`` minibatches of
  ``batch_size`` rows (``None``: all rows each step) on ``VCReg(h(W x))`` with ``h`` of
  ``width`` (default :func:`default_width`) features per component, trained with ``W``
  unless ``train_projector=False``; ``cross_only`` drops the within-component covariances.
  The module docstring says what each reaches."""
  if method not in METHODS:
    raise ValueError(f"ica.fit: method must be one of {METHODS}; got {method!r}.")
  x = _check_input(x)
  start = time.perf_counter()
  k = x.shape[1]
  mean, v = whitening(x)
  xw = jnp.asarray((x - mean) @ v.T, jnp.float32)
  if method == "jacobi":
    h = threshold_projector(JACOBI_WIDTH if width is None else width, JACOBI_REACH)
    q, used, history = jacobi_rotation(xw, h, sweeps=sweeps, angles=angles, polish=polish,
                                       polish_angles=polish_angles, min_gain=min_gain,
                                       chunk=chunk)
  else:
    width = default_width(k) if width is None else width
    key_h, key_b, key_batches = jax.random.split(jax.random.key(seed), 3)
    q, history = _gradient_rotation(
        xw, projector_init(key_h, width), key_b, key_batches, steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, train_projector=train_projector,
        cross_only=cross_only, width=width, std_coeff=std_coeff)
    used = 0
  unmixing = q @ v
  sources = (x - mean) @ unmixing.T
  gaussian = int(np.sum(jarque_bera_p(sources) > GAUSSIAN_P_VALUE))
  return ICAResult(unmixing, sources, mean, history, gaussian, time.perf_counter() - start,
                   used)


def _gradient_rotation(xw, h, key_b, key_batches, *, steps, batch_size, learning_rate,
                       train_projector, cross_only, width, std_coeff):
  """The rotation Adam reaches on VCReg of the projected components, and the loss per step."""
  n, k = xw.shape
  params = {"b": 0.1 * jax.random.normal(key_b, (k, k)), "h": h}
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  if not train_projector:
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               {"b": "train", "h": jax.tree.map(lambda _: "frozen", h)})
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
  return np.asarray(rotation(params["b"]), np.float64), np.asarray(history)
