"""The train state and its construction directly on the devices."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
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


SHARDINGS = ("replicated", "fsdp")


def sharding_of(shape: jax.ShapeDtypeStruct, mesh: jax.sharding.Mesh, strategy: str,
                min_mb: float, axis: str = "data") -> NamedSharding:
  """Where one array of the state lives. ``"replicated"``: whole on every device. ``"fsdp"``
  (big_vision's rule): split over ``axis`` on its largest dimension that the axis size
  divides, if it holds more than ``min_mb`` MiB; replicated otherwise. XLA then gathers each
  parameter where the step uses it and reduce-scatters its gradient, so the step computes
  what the replicated one does while each device holds 1/devices of the state."""
  nbytes = np.prod(shape.shape, dtype=np.int64) * np.dtype(shape.dtype).itemsize
  if strategy == "fsdp" and nbytes > min_mb * 2**20:
    for dim in np.argsort(shape.shape, kind="stable")[::-1]:
      if shape.shape[dim] % mesh.shape[axis] == 0:
        return NamedSharding(mesh, P(*[axis if d == dim else None
                                       for d in range(len(shape.shape))]))
  return NamedSharding(mesh, P())


def abstract_state(model, tx: optax.GradientTransformation, method, *, seed: int,
                   image_shape: tuple[int, int, int], mesh: jax.sharding.Mesh,
                   sharding: str = "replicated", fsdp_min_mb: float = 1.0) -> TrainState:
  """The state's shapes, dtypes and shardings (``sharding_of``), without computing it."""
  shapes = jax.eval_shape(_init_fn(model, tx, method, seed=seed, image_shape=image_shape))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
      s.shape, s.dtype, sharding=sharding_of(s, mesh, sharding, fsdp_min_mb)), shapes)


def create_state(model, tx: optax.GradientTransformation, method, *, seed: int,
                 image_shape: tuple[int, int, int], mesh: jax.sharding.Mesh,
                 sharding: str = "replicated", fsdp_min_mb: float = 1.0) -> TrainState:
  """Initialise on the devices with ``abstract_state``'s shardings (never materialised on
  the host)."""
  abstract = abstract_state(model, tx, method, seed=seed, image_shape=image_shape, mesh=mesh,
                            sharding=sharding, fsdp_min_mb=fsdp_min_mb)
  init = _init_fn(model, tx, method, seed=seed, image_shape=image_shape)
  return jax.jit(init, out_shardings=jax.tree.map(lambda s: s.sharding, abstract))()
