"""The train state and its construction directly on the devices."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes. The step's randomness is ``fold_in(key(seed), step)``,
  so no key is carried: the seed is in the config and the step is here."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  method_state: Any  # e.g. CorInfoMax's running covariances; {} for stateless methods
  skipped: jax.Array  # steps whose update was dropped for non-finite values (train.max_skipped)


def _init_fn(model, tx, method, *, seed: int, image_shape: tuple[int, int, int]):
  def init() -> TrainState:
    dummy = jnp.zeros((2, *image_shape), jnp.float32)
    variables = model.init(jax.random.key(seed), dummy, train=True)
    params = variables["params"]
    dim = jax.eval_shape(lambda: model.apply(variables, dummy, train=False))["embeddings"]
    method_state = method.init_state(dim.shape[-1]) if method.init_state else {}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), method_state=method_state,
                      skipped=jnp.zeros((), jnp.int32))
  return init


def abstract_state(model, tx: optax.GradientTransformation, method, *, seed: int,
                   image_shape: tuple[int, int, int], mesh: jax.sharding.Mesh) -> TrainState:
  """The state's shapes, dtypes and (replicated) shardings, without computing it."""
  replicated = NamedSharding(mesh, P())
  shapes = jax.eval_shape(_init_fn(model, tx, method, seed=seed, image_shape=image_shape))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                      shapes)


def create_state(model, tx: optax.GradientTransformation, method, *, seed: int,
                 image_shape: tuple[int, int, int], mesh: jax.sharding.Mesh) -> TrainState:
  """Initialise on the devices, replicated over ``mesh`` (never materialised on the host)."""
  abstract = abstract_state(model, tx, method, seed=seed, image_shape=image_shape, mesh=mesh)
  init = _init_fn(model, tx, method, seed=seed, image_shape=image_shape)
  return jax.jit(init, out_shardings=jax.tree.map(lambda s: s.sharding, abstract))()
