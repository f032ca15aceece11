"""The method registry: how the two views' embeddings become a loss (and a method state).

A method is a loss over the projector outputs of the two views, with its coefficients taken
from the config section ``method.kwargs`` (defaults: the loss function's, i.e. the official
ones). ``method.kwargs`` holds every keyword of every method, unset (None) unless a config
file or the command line sets it, so any of them can be set with
``--config.method.kwargs.<name>=<value>``. Adding a method is one entry in ``METHODS``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxssl import losses
from jaxssl.errors import ConfigError

Array = jax.Array
# (z_a, z_b, state, key, **kwargs) -> (loss, aux, new_state)
LossFn = Callable[..., tuple[Array, dict[str, Array], Any]]


@dataclasses.dataclass(frozen=True)
class Method:
  """``loss`` maps the two views' embeddings to ``(loss, aux, state)``; ``init_state`` builds
  the method state from the embedding width; ``supervised`` methods also train the model's
  classification head (and through it the backbone) with the labels."""
  name: str
  loss: LossFn
  takes: Callable[..., Any]  # the losses function whose keyword arguments kwargs may set
  init_state: Callable[[int], Any] | None = None
  supervised: bool = False

  def keywords(self) -> dict[str, type]:
    """The coefficients a config may set, with their types."""
    return _keywords(self.takes)

  def kwargs(self, config_kwargs) -> dict[str, Any]:
    """The keywords set (not None) in the config section ``method.kwargs``; a
    ``ConfigError`` names any that this method does not take."""
    given = {k: v for k, v in dict(config_kwargs).items() if v is not None}
    unknown = set(given) - set(self.keywords())
    if unknown:
      raise ConfigError(f"config.method.kwargs sets {sorted(unknown)}, which method "
                        f"{self.name!r} does not take; it takes {sorted(self.keywords())}.")
    return given


_TYPES = {"float": float, "int": int, "bool": bool, "str": str}
_NOT_COEFFICIENTS = ("axis_name", "key", "estimator")  # set by the step or by the method name


def _keywords(fn) -> dict[str, type]:
  out = {}
  for name, p in inspect.signature(fn).parameters.items():
    if p.kind == p.KEYWORD_ONLY and name not in _NOT_COEFFICIENTS:
      # Annotations are strings here (postponed evaluation): "float", "int | None", ...
      out[name] = _TYPES[str(p.annotation).split("|")[0].strip()]
  return out


def _stateless(fn):
  def loss(z_a, z_b, state, key, **kwargs):
    del key
    value, aux = fn(z_a, z_b, **kwargs)
    return value, aux, state
  return loss


def _wmse(z_a, z_b, state, key, **kwargs):
  value, aux = losses.wmse(z_a, z_b, key=key, **kwargs)
  return value, aux, state


def _corinfomax(z_a, z_b, state, key, **kwargs):
  del key
  value, (state, aux) = losses.corinfomax(state, z_a, z_b, **kwargs)
  return value, aux, state


def _supervised(z_a, z_b, state, key):
  """No loss on the embeddings: the classification head alone trains the backbone."""
  del z_b, key
  return jnp.zeros((), z_a.dtype), {}, state


def _vcreg(z_a, z_b, state, key, **kwargs):
  """VCReg on each view (no invariance term): the regulariser of supervised pretraining."""
  del key
  loss_a, aux_a = losses.vcreg(z_a, **kwargs)
  loss_b, aux_b = losses.vcreg(z_b, **kwargs)
  aux = jax.tree.map(lambda a, b: (a + b) / 2, aux_a, aux_b)
  return (loss_a + loss_b) / 2, aux, state


METHODS: dict[str, Method] = {
    "vicreg": Method("vicreg", _stateless(losses.vicreg), losses.vicreg),
    "vcreg": Method("vcreg", _vcreg, losses.vcreg, supervised=True),
    "supervised": Method("supervised", _supervised, lambda: None, supervised=True),
    "barlow_twins": Method("barlow_twins", _stateless(losses.barlow_twins),
                           losses.barlow_twins),
    "wmse": Method("wmse", _wmse, losses.wmse),
    "corinfomax": Method("corinfomax", _corinfomax, losses.corinfomax,
                         init_state=losses.corinfomax_init),
    "info_vicreg_logdet": Method(
        "info_vicreg_logdet",
        _stateless(functools.partial(losses.info_vicreg, estimator="logdet")),
        losses.info_vicreg),
    "info_vicreg_pairdist": Method(
        "info_vicreg_pairdist",
        _stateless(functools.partial(losses.info_vicreg, estimator="pairdist")),
        losses.info_vicreg),
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ConfigError(f"config.method.name: must be one of {sorted(METHODS)}; got {name!r}.")
  return METHODS[name]


def all_keywords() -> dict[str, type]:
  """Every keyword of every method with its type: the keys of the config's ``method.kwargs``
  (a name shared by several losses, like ``eps``, has one type in all of them)."""
  out: dict[str, type] = {}
  for method in METHODS.values():
    for name, kind in method.keywords().items():
      if out.setdefault(name, kind) is not kind:
        raise TypeError(f"method keyword {name!r} has two types: {out[name]} and {kind}.")
  return out
