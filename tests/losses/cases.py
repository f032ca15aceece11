"""One table of every loss: its jaxssl call and its NumPy reference, as scalar functions."""

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from jaxssl import losses
from tests.losses import reference as ref

SIGMA = 5.0  # a kernel width at which the pairwise entropy is far from both its bounds
WMSE_KEY = jax.random.key(7)


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  loss: Callable  # (z_a, z_b, *, form, axis_name) -> scalar loss
  reference: Callable  # (z_a, z_b) as float64 NumPy -> float
  has_forms: bool = True


def _wmse_args(n, dim):
  """Sub-batches of 2 D rows with a key when the batch allows, else one shrunk block."""
  if n >= 2 * (dim + 1) and n % 2 == 0:
    return {"w_size": n // 2, "eps": 0.0, "key": WMSE_KEY}
  return {"w_size": None, "eps": 0.1, "key": None}


def _wmse(z_a, z_b, form, axis_name):
  del form
  n = z_a.shape[0] * (1 if axis_name is None else jax.lax.axis_size(axis_name))
  return losses.wmse(z_a, z_b, **_wmse_args(n, z_a.shape[1]), axis_name=axis_name)[0]


def _wmse_reference(z_a, z_b):
  args = _wmse_args(*z_a.shape)
  perm = None if args["key"] is None else np.asarray(jax.random.permutation(args["key"],
                                                                            len(z_a)))
  return ref.wmse(z_a, z_b, args["w_size"] or len(z_a), args["eps"], perm)


def _corinfomax(z_a, z_b, form, axis_name):
  del form
  state = losses.corinfomax_init(z_a.shape[1])
  return losses.corinfomax(state, z_a, z_b, axis_name=axis_name)[0]


CASES = [
    Case("vicreg", lambda a, b, form, axis_name: losses.vicreg(
        a, b, form=form, axis_name=axis_name)[0], lambda a, b: ref.vicreg(a, b)[0]),
    Case("vcreg", lambda a, b, form, axis_name: losses.vcreg(
        a, form=form, axis_name=axis_name)[0], lambda a, b: ref.vcreg(a)[0]),
    Case("barlow_twins", lambda a, b, form, axis_name: losses.barlow_twins(
        a, b, form=form, axis_name=axis_name)[0], lambda a, b: ref.barlow_twins(a, b)[0]),
    Case("wmse", _wmse, _wmse_reference, has_forms=False),
    Case("corinfomax", _corinfomax,
         lambda a, b: ref.corinfomax_run([a], [b])[0][0], has_forms=False),
    Case("logdet_entropy", lambda a, b, form, axis_name: losses.logdet_entropy(
        a, beta=0.5, form=form, axis_name=axis_name), lambda a, b: ref.logdet_entropy(a, 0.5)),
    Case("pairdist_entropy", lambda a, b, form, axis_name: losses.pairdist_entropy(
        a, sigma=SIGMA, axis_name=axis_name), lambda a, b: ref.pairdist_entropy(a, SIGMA),
         has_forms=False),
    Case("info_vicreg_logdet", lambda a, b, form, axis_name: losses.info_vicreg(
        a, b, estimator="logdet", form=form, axis_name=axis_name)[0],
         lambda a, b: ref.info_vicreg(a, b, "logdet")),
    Case("info_vicreg_pairdist", lambda a, b, form, axis_name: losses.info_vicreg(
        a, b, estimator="pairdist", sigma=SIGMA, axis_name=axis_name)[0],
         lambda a, b: ref.info_vicreg(a, b, "pairdist", sigma=SIGMA), has_forms=False),
]
CASE_IDS = [c.name for c in CASES]


def views(n, dim, seed=0, dtype=np.float32):
  """Two correlated views: a shared signal plus view-specific noise, with unequal scales."""
  rng = np.random.default_rng(seed)
  signal = rng.normal(size=(n, dim)) * rng.uniform(0.3, 2.0, size=dim)
  z_a = signal + 0.5 * rng.normal(size=(n, dim)) + 0.2
  z_b = signal + 0.5 * rng.normal(size=(n, dim)) - 0.1
  return z_a.astype(dtype), z_b.astype(dtype)
