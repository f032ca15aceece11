"""The training loop: build everything from the config, resume from the workdir, run the jitted
step, log, evaluate the online probe, checkpoint."""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxssl import config as config_lib
from jaxssl import distributed, methods
from jaxssl.data import loader, source
from jaxssl.models import model_from_config
from jaxssl.train import checkpoint, optim, state as state_lib, step as step_lib


class NonFiniteError(FloatingPointError):
  """A loss term or the gradient norm went NaN or inf."""


class MetricWriter:
  """Scalars to ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow),
  from process 0 only."""

  def __init__(self, workdir: pathlib.Path):
    self.active = jax.process_index() == 0
    if self.active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
      self._tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.active:
      return
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()


def _fetch_mean(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Means over the log interval. The per-step metrics stay on the device until here: adding
  them up eagerly between steps would launch computations that run concurrently with the
  train step, which on XLA:CPU's shared thread pool can stall both."""
  history = jax.device_get(history)
  return {k: float(np.mean([m[k] for m in history])) for k in history[0]}


def _check_finite(step: int, scalars: dict[str, float]) -> None:
  bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
  if bad:
    raise NonFiniteError(
        f"Non-finite values at step {step} in {bad} (means over the last log interval). The "
        "checkpoints in the workdir are from before this and intact. Lower optim.lr, raise "
        "optim.warmup_epochs, or check the inputs.")


class Run:
  """Everything a run is built from its config: data, model, method, optimiser, state."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
               devices=None, for_training: bool = True):
    self.config, self.workdir = config, pathlib.Path(workdir)
    self.mesh = distributed.data_mesh(devices)
    # Restoring for evaluation works on any device count; training needs batches that split.
    config_lib.validate(config, num_devices=self.mesh.size if for_training else 1)
    c = config
    self.train_source, self.train_info = source.open_split(
        c.data.name, c.data.train_split, data_dir=c.data.data_dir, in_memory=c.data.in_memory)
    self.eval_source, self.eval_info = source.open_split(
        c.data.name, c.data.eval_split, data_dir=c.data.data_dir, in_memory=c.data.in_memory)
    self.views = config_lib.views(c)
    self.image_shape = (self.views[0].out_size, self.views[0].out_size,
                        self.train_info.image_shape[-1])
    if not self.train_info.fixed_size:
      raise source.DatasetError(
          f"{c.data.name!r} has images of varying size; the training pipeline crops on the "
          "device and needs one image size (Fashion-MNIST, CIFAR, ...).")
    self.steps_per_epoch = max(self.train_info.num_examples // c.train.global_batch, 1)
    self.total_steps = c.train.steps or int(c.train.epochs * self.steps_per_epoch)
    self.method = methods.get_method(c.method.name)
    self.model = model_from_config(c.model, self.train_info.num_classes,
                                   probe_gradient=self.method.supervised)
    self.schedule = optim.learning_rate(c.optim, global_batch=c.train.global_batch,
                                        total_steps=self.total_steps,
                                        steps_per_epoch=self.steps_per_epoch)
    self.tx = optim.with_probe(
        optim.make_optimizer(c.optim, global_batch=c.train.global_batch,
                             total_steps=self.total_steps,
                             steps_per_epoch=self.steps_per_epoch),
        c.probe, self.method.supervised)

  def abstract_state(self):
    return state_lib.abstract_state(self.model, self.tx, self.method, seed=self.config.seed,
                                    image_shape=self.image_shape, mesh=self.mesh)

  def init_state(self):
    return state_lib.create_state(self.model, self.tx, self.method, seed=self.config.seed,
                                  image_shape=self.image_shape, mesh=self.mesh)

  def train_iterator(self):
    c = self.config
    return loader.train_iterator(self.train_source, global_batch=c.train.global_batch,
                                 seed=c.seed, num_threads=c.data.num_threads,
                                 prefetch=c.data.prefetch)

  def head_accuracy(self, state) -> float:
    """Accuracy of the online linear head on the eval split (every example once)."""
    view = self.views[0]
    mean, std = jnp.asarray(view.mean), jnp.asarray(view.std)
    if not hasattr(self, "_eval_step"):
      self._eval_step = jax.jit(step_lib.make_eval_step(self.model))
    counts = [self._eval_step(state, loader.to_global(batch, self.mesh), mean, std)
              for batch in loader.eval_batches(self.eval_source,
                                               global_batch=self.config.eval.batch)]
    correct, total = np.sum(jax.device_get(counts), axis=0)
    return float(correct) / float(total)


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          devices=None) -> dict[str, Any]:
  """Train (resuming from ``workdir`` if it holds checkpoints) on ``devices`` (default: all);
  returns the metrics of the last log step."""
  run = Run(config, workdir, devices)
  workdir = run.workdir
  c = config
  mngr = checkpoint.manager(workdir, keep=c.train.keep_checkpoints,
                            keep_period=c.train.keep_period)
  data_iter = run.train_iterator()
  if mngr.latest_step() is not None:
    state = checkpoint.restore(mngr, run.abstract_state(), data_iter)
    print(f"Resumed from {mngr.directory}/{mngr.latest_step()}.", flush=True)
  else:
    state = run.init_state()
  if jax.process_index() == 0:
    checkpoint.write_config(workdir, c)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(run.model, run.method, dict(c.method.kwargs), run.tx, run.views,
                               seed=c.seed, schedule=run.schedule), state, run.mesh)
  writer = MetricWriter(workdir)
  first = int(state.step)
  progress = tqdm.tqdm(total=run.total_steps, initial=first, disable=jax.process_index() != 0,
                       dynamic_ncols=True, unit="step")
  history, tick, scalars = [], time.perf_counter(), {}
  try:
    for step in range(first, run.total_steps):
      batch = loader.to_global(next(data_iter), run.mesh)
      state, metrics = train_step(state, batch)
      if history:
        # At most two steps in flight: enough to overlap the host's work with the device's;
        # deeper async queues were seen to slow XLA:CPU steps several-fold.
        jax.block_until_ready(history[-1])
      history.append(metrics)
      done = step + 1
      if done % c.train.log_every == 0 or done == run.total_steps:
        scalars = _fetch_mean(history)
        _check_finite(done, scalars)
        elapsed = time.perf_counter() - tick
        scalars["images_per_s"] = len(history) * c.train.global_batch / elapsed
        scalars["epoch"] = done / run.steps_per_epoch
        if done % c.train.eval_every == 0 or done == run.total_steps:
          scalars["val_head_accuracy"] = run.head_accuracy(state)
        writer.write(done, scalars)
        progress.set_postfix({k: f"{scalars[k]:.4g}" for k in
                              ("epoch", "loss", "head_accuracy", "images_per_s")})
        progress.update(len(history))
        history, tick = [], time.perf_counter()
      if done % c.train.checkpoint_every == 0 or done == run.total_steps:
        checkpoint.save(mngr, done, state, data_iter)
  finally:
    progress.close()
    writer.close()
    mngr.wait_until_finished()
    mngr.close()
  return scalars
