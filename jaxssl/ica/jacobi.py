"""ICA by Jacobi sweeps: the unmixing rotation as a product of plane rotations, two
components at a time, each pair rotated to the angle that minimises its
:func:`~jaxssl.ica.projector.pair_dependence` under a frozen threshold projector."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.ica.projector import dependence, hidden_moments, threshold_projector


@dataclasses.dataclass(frozen=True)
class Jacobi:
  """The Jacobi sweeps' settings (the default method of ``ica.fit``).

  ``width`` thresholds per component spread over ``reach`` standard deviations make the
  frozen projector. At most ``sweeps`` coarse sweeps search a grid of ``angles`` over
  ``[0, pi/2)``, moving a pair only when that lowers its dependence by at least
  ``min_gain``; then ``polish`` sweeps search ``polish_angles`` within two coarse steps of
  each pair's angle. Dependences are summed over chunks of ``chunk`` rows."""
  width: int = 32
  reach: float = 3.0
  sweeps: int = 15
  angles: int = 30
  polish: int = 2
  polish_angles: int = 41
  min_gain: float = 0.2
  chunk: int = 8192

  def rotation(self, xw: jax.Array) -> tuple[np.ndarray, int, np.ndarray]:
    """See :func:`jacobi_rotation`; with this object's projector and settings."""
    return jacobi_rotation(xw, threshold_projector(self.width, self.reach), self)


def round_robin(k: int) -> np.ndarray:
  """``(k - 1, k / 2, 2)``: rounds of disjoint pairs (``k`` even) covering every pair once
  (the circle method)."""
  players = list(range(k))
  rounds = []
  for _ in range(k - 1):
    rounds.append([(players[i], players[k - 1 - i]) for i in range(k // 2)])
    players = [players[0], players[-1], *players[1:-1]]
  return np.asarray(rounds)


def jacobi_rotation(xw: jax.Array, h: dict[str, jax.Array], options: Jacobi = Jacobi()
                    ) -> tuple[np.ndarray, int, np.ndarray]:
  """Pairwise (Jacobi) sweeps on whitened ``xw`` under projector ``h``: the rotation ``Q``
  they reach, the sweeps they took and each sweep's total dependence (the sum of every pair's
  dependence as the sweep found it).

  Each round rotates disjoint pairs of components (:func:`round_robin`), each pair by the
  best angle of a grid (2-D ICA is solved up to a quarter turn), refined to the vertex of the
  parabola through it and its two neighbours. A pair moves only when that lowers its
  dependence by at least ``min_gain`` (an independent pair's profile is flat, and chasing its
  noise would undo earlier rounds). Sweeps stop when no pair moves by more than a grid step;
  then the ``polish`` sweeps move every pair to its minimum on the finer grid, however small
  the gain: that takes the answer from the coarse grid's resolution (3 degrees) to the
  data's (an Amari distance of 0.01 is about half a degree).
  """
  n, k = xw.shape
  even = k + k % 2
  one_round = _round_fn(xw, h, options.chunk)
  step = math.pi / 2 / options.angles
  coarse = jnp.arange(options.angles) * step  # periodic: pi/2 is 0 again, up to a permutation
  fine = jnp.linspace(-2 * step, 2 * step, options.polish_angles)

  def sweep(q, gain, thetas, periodic):
    """One pass over every pair: the new ``Q``, the largest move and the total dependence."""
    moved, total = 0.0, 0.0
    for pairs in round_robin(even):
      q, m, before = one_round(q, jnp.asarray(pairs), gain, thetas, periodic)
      moved, total = max(moved, float(m)), total + float(before)
    return q, moved, total

  q, history = jnp.eye(even), []
  while len(history) < options.sweeps:
    q, moved, total = sweep(q, options.min_gain, coarse, True)
    history.append(total)
    if moved <= 1.5 * step:
      break
  for _ in range(options.polish):
    q, _, total = sweep(q, 0.0, fine, False)
    history.append(total)
  return np.asarray(q, np.float64)[:k, :k], len(history), np.asarray(history)


def _round_fn(xw: jax.Array, h: dict[str, jax.Array], chunk: int):
  """``one_round(q, pairs, min_gain, thetas, periodic) -> (q, largest move, dependence)``,
  jitted: every pair of ``pairs`` rotated to its best angle of ``thetas``. The rows are padded
  (with weight 0) to equal chunks, and a padding column makes ``k`` even."""
  n, k = xw.shape
  even = k + k % 2
  chunks = -(-n // chunk)
  rows = -(-n // chunks)
  y0 = jnp.zeros((chunks * rows, even), xw.dtype).at[:n, :k].set(xw)
  weight = (jnp.arange(chunks * rows) < n).astype(xw.dtype).reshape(chunks, rows)

  def profile(y, pair, thetas):
    """The pair's dependence at each angle of ``thetas``, summed over the chunks."""
    cos, sin = jnp.cos(thetas)[:, None], jnp.sin(thetas)[:, None]

    def accumulate(total, chunk_i):
      y_i, y_j, w = y[chunk_i, :, pair[0]], y[chunk_i, :, pair[1]], weight[chunk_i]
      moments = hidden_moments(h, cos * y_i - sin * y_j, sin * y_i + cos * y_j, w)
      return jax.tree.map(jnp.add, total, moments), None
    size, width = thetas.shape[0], h["b"].shape[0]
    zeros = (jnp.zeros((size, width)), jnp.zeros((size, width)),
             jnp.zeros((size, width, width)))
    return dependence(h, jax.lax.scan(accumulate, zeros, jnp.arange(chunks))[0], n)

  @functools.partial(jax.jit, static_argnames="periodic")
  def one_round(q, pairs, min_gain, thetas, periodic):
    y = (y0 @ q.T).reshape(chunks, rows, even)
    here = jnp.argmin(jnp.abs(thetas))  # the pair's current angle

    def best(pair):
      deps = profile(y, pair, thetas)
      t, mid = _refined_minimum(deps, thetas, periodic)
      real = (pair[0] < k) & (pair[1] < k)  # a pair with the padding column stays put
      return jnp.where(real & (mid <= (1 - min_gain) * deps[here]), t, 0.0), deps[here] * real

    t, before = jax.lax.map(best, pairs)
    i, j = pairs[:, 0], pairs[:, 1]
    c, s = jnp.cos(t), jnp.sin(t)
    g = jnp.eye(even).at[i, i].set(c).at[i, j].set(-s).at[j, i].set(s).at[j, j].set(c)
    t = jnp.abs(t)
    return g @ q, jnp.max(jnp.minimum(t, math.pi / 2 - t)), jnp.sum(before)

  return one_round


def _refined_minimum(deps, thetas, periodic: bool):
  """The angle of the smallest of ``deps``, moved to the vertex of the parabola through it and
  its neighbours (wrapping around when ``periodic``), and the smallest value."""
  size, spacing = thetas.shape[0], thetas[1] - thetas[0]
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
  return t, mid
