"""Restore a run's encoder from its Orbax checkpoint onto whatever devices the caller has."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.data import loader
from jaxssl.train import checkpoint, run as run_lib
from jaxssl.train import step as step_lib


@dataclasses.dataclass
class Encoder:
  """A pretrained (or freshly initialised) backbone, ready to embed image batches.

  ``embed`` takes uint8 images ``(B, H, W, C)`` (or floats in [0, 1]) and returns the backbone
  features (or the projector's output with ``projector=True``).
  """
  run: run_lib.Run
  variables: dict
  step: int

  def __post_init__(self):
    view = self.run.views[0]
    self._mean, self._std = jnp.asarray(view.mean), jnp.asarray(view.std)
    model = self.run.model

    def embed(variables, images, projector):
      # uint8 as in training (the dtype is static); floats are taken to be in [0, 1].
      x = (step_lib.images_to_float(images) if images.dtype == jnp.uint8
           else images.astype(jnp.float32))
      x = (x - self._mean) / self._std
      return model.apply(variables, x, projector=projector, method=model.embed)

    def embed_batch(variables, batch, projector):
      rows = (batch["label"], batch["mask"], batch["index"])
      return embed(variables, batch["image"], projector), *rows
    self._embed = jax.jit(embed, static_argnames="projector")
    # Replicated out: every process gets every row of the global batch, and the features,
    # labels, masks and indices come out in one layout whatever the device order.
    self._embed_batch = jax.jit(embed_batch, static_argnames="projector",
                                out_shardings=NamedSharding(self.run.mesh, P()))

  @property
  def config(self):
    return self.run.config

  def embed(self, images, *, projector: bool = False) -> jax.Array:
    return self._embed(self.variables, images, projector)

  def features(self, source, *, batch: int, projector: bool = False, watchdog=None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every example of ``source``, in the split's order, on every
    process; computed in batches sharded over the mesh (each process reads its own part).
    ``watchdog`` (a ``jaxssl.watchdog.Watchdog``) is told of every batch done."""
    # Round the batch up to the mesh: a run trained on 8 devices may be restored on 3.
    batch = -(-batch // self.run.mesh.size) * self.run.mesh.size
    feats, labels, indices = [], [], []
    for i, local in enumerate(self.run.eval_batches(source, batch)):
      out, label, mask, index = jax.device_get(self._embed_batch(
          self.variables, loader.to_global(local, self.run.mesh), projector))
      if watchdog is not None and i:  # (batch 0 compiled the program)
        watchdog.beat(i)
      feats.append(out[mask])
      labels.append(label[mask])
      indices.append(index[mask])
    order = np.argsort(np.concatenate(indices), kind="stable")
    return np.concatenate(feats)[order], np.concatenate(labels)[order]


def variables(state) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


def load_encoder(workdir: str | os.PathLike, step: int | None = None,
                 devices=None, config=None) -> Encoder:
  """The encoder of the run in ``workdir`` (a directory or a ``gs://`` URL) at ``step``
  (default: the latest checkpoint), restored onto ``devices`` (default: all of the caller's,
  whatever their count or topology in training) from the config saved with the run (or
  ``config``: that config with other evaluation settings, see
  ``jaxssl.evaluate.run.evaluation_config``)."""
  config = checkpoint.read_config(workdir) if config is None else config
  run = run_lib.Run(config, devices=devices, training=False)
  mngr = checkpoint.manager(workdir, read_only=True)
  try:
    state = checkpoint.restore(mngr, run.abstract_state(), step=step)
  finally:
    mngr.close()
  return Encoder(run, variables(state), int(state.step))


def random_encoder(config, devices=None) -> Encoder:
  """The run's architecture freshly initialised (with the run's seed): the baseline that shows
  what pretraining added. ``config``: a run config, a workdir, or the ``Run`` of an encoder
  (``load_encoder(...).run``), whose devices and opened splits it then shares."""
  if isinstance(config, run_lib.Run):
    if devices is not None:
      raise ValueError("random_encoder: a Run brings its own devices; pass devices=None.")
    run = config
  else:
    if isinstance(config, (str, os.PathLike)):
      config = checkpoint.read_config(config)
    run = run_lib.Run(config, devices=devices, training=False)
  return Encoder(run, variables(run.init_state()), 0)
