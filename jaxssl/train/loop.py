"""The training loop: build everything from the config, resume from the workdir, run the jitted
step, log, evaluate the online probe, checkpoint."""

from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from jaxssl import config as config_lib
from jaxssl import distributed
from jaxssl import watchdog as watchdog_lib
from jaxssl.data import decode, loader, source
from jaxssl.train import checkpoint, recipe as recipe_lib, state as state_lib, step as step_lib


METRICS_FILE = "metrics.jsonl"


class NonFiniteError(FloatingPointError):
  """A loss term or the gradient norm went NaN or inf."""


class MetricWriter:
  """Scalars to ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow),
  from process 0 only."""

  def __init__(self, workdir: pathlib.Path, first_step: int = 0):
    self.active = distributed.is_main_process()
    if self.active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      _truncate_metrics(workdir, first_step)
      self._jsonl = open(workdir / METRICS_FILE, "a", encoding="utf-8")
      # purge_step: TensorBoard hides events at or after it written by the crashed attempt.
      self._tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"),
                                            purge_step=first_step or None)

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


class Monitor:
  """The per-step metrics between fetches: kept on the device until a log, a save or a stop
  needs them (adding them up eagerly would launch computations that run concurrently with the
  train step, which on XLA:CPU's shared thread pool can stall both), then checked step by
  step for non-finite values and averaged over the log interval."""

  def __init__(self, first_step: int, max_skipped: int, skipped: int = 0):
    self.pending: list[dict[str, jax.Array]] = []
    self.fetched: list[dict[str, float]] = []
    self.next_step = first_step + 1  # the step number of pending[0]
    self.max_skipped, self.skipped = max_skipped, skipped

  def add(self, metrics: dict[str, jax.Array]) -> None:
    if self.pending:
      # At most two steps in flight: enough to overlap the host's work with the device's;
      # deeper async queues were seen to slow XLA:CPU steps several-fold.
      jax.block_until_ready(self.pending[-1])
    self.pending.append(metrics)

  def check(self, last_good: int | None) -> None:
    """Fetch the pending metrics; raise ``NonFiniteError`` at the first non-finite step (or,
    when skipping, once more than ``max_skipped`` steps were skipped)."""
    for metrics in jax.device_get(self.pending):
      step, self.next_step = self.next_step, self.next_step + 1
      scalars = {k: float(v) for k, v in metrics.items()}
      if scalars.pop("finite") == 1.0:
        self.fetched.append(scalars)
        continue
      bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
      checkpoint_note = (f"the last checkpoint (step {last_good}) is from before it and "
                         "intact" if last_good is not None else "no checkpoint was written")
      if self.max_skipped == 0:
        raise NonFiniteError(
            f"Non-finite values at step {step} in {bad}; {checkpoint_note}. Lower optim.lr, "
            "raise optim.warmup_epochs or check the inputs, then run the same command to "
            "resume; or set train.max_skipped=N to skip such steps (at most N).")
      self.skipped += 1
      _say(f"Step {step}: non-finite {bad}; update skipped ({self.skipped} of at most "
           f"{self.max_skipped}).")
      if self.skipped > self.max_skipped:
        raise NonFiniteError(
            f"{self.skipped} steps with non-finite values (the last at step {step}, in {bad}) "
            f"exceed train.max_skipped={self.max_skipped}; {checkpoint_note}.")
    self.pending = []

  def means(self) -> dict[str, float]:
    """Means over the finite steps since the last call (empty if there were none)."""
    fetched, self.fetched = self.fetched, []
    if not fetched:
      return {}
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


class StopSignal:
  """SIGTERM (what TPU and cloud schedulers send before pre-empting) and SIGINT stop the run
  after a step, with a final checkpoint; a second SIGINT interrupts at once.

  In a multi-process run every process must stop after the same step, or the collective
  checkpoint would wait forever for the ones still training. There JAX's preemption service
  (started by ``jax.distributed.initialize``) catches SIGTERM on any process, agrees on the
  first step all processes can still reach, and ``should_stop`` turns true at that step on
  every one; SIGINT is forwarded to it as a SIGTERM.
  """

  def __init__(self):
    self.received: int | None = None
    self._previous = {}
    self._shared = distributed.is_multiprocess()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      signals = (signal.SIGINT,) if self._shared else (signal.SIGTERM, signal.SIGINT)
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signum
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
    if self._shared:
      os.kill(os.getpid(), signal.SIGTERM)

  def should_stop(self, step: int) -> bool:
    """Whether to stop after ``step`` (called once per step, on every process)."""
    if self._shared:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.received is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.received or signal.SIGTERM).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _say(message: str) -> None:
  """Print from process 0 only (every process runs the same loop)."""
  if distributed.is_main_process():
    print(message, flush=True)


def _progress_keys(scalars: dict[str, float]) -> list[str]:
  """What the progress bar shows: epoch, the loss and its terms, the probe, throughput."""
  terms = [k for k in scalars if k not in _NOT_LOSS_TERMS]
  shown = ["epoch", "loss", *sorted(terms), "head_accuracy", "images_per_s"]
  return [k for k in shown if k in scalars]


_NOT_LOSS_TERMS = {"epoch", "loss", "lr", "grad_norm", "head_loss", "head_accuracy",
                   "images_per_s", "skipped_steps", "val_head_accuracy"}


def _truncate_metrics(workdir: pathlib.Path, step: int) -> None:
  """Drop the log lines after ``step`` (written before a crash, to be written again)."""
  path = workdir / METRICS_FILE
  if not path.exists():
    return
  lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
  keep = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
  if len(keep) != len(lines):
    path.write_text("".join(keep), encoding="utf-8")


class Run:
  """Everything a run is built from its config: data, model, method, optimiser, state."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
               devices=None, for_training: bool = True):
    self.config, self.workdir = config, checkpoint.workdir_path(workdir)
    self.mesh = distributed.data_mesh(devices)
    # Restoring for evaluation works on any device count; training needs batches that split.
    config_lib.validate(config, num_devices=self.mesh.size if for_training else 1)
    c = config
    self.train_source, self.train_info = source.open_split(
        c.data.name, c.data.train_split, data_dir=c.data.data_dir, in_memory=c.data.in_memory)
    self.eval_source, self.eval_info = source.open_split(
        c.data.name, c.data.eval_split, data_dir=c.data.data_dir, in_memory=c.data.in_memory)
    r = recipe_lib.recipe(c, self.train_info)
    self.views, self.image_shape = r.views, r.image_shape
    # Images of one size are cropped on the device; images of varying size by the host
    # (decoded with their crops), and centre-cropped for evaluation.
    channels = self.image_shape[-1]
    self.host_crops = None if self.train_info.fixed_size else decode.TwoCrops(
        self.views, channels, draft=c.data.jpeg_draft)
    self.eval_transform = None if self.eval_info.fixed_size else decode.CentreCrop(
        self.views[0].out_size, channels, c.eval.crop_fraction)
    self.steps_per_epoch, self.total_steps = r.steps_per_epoch, r.total_steps
    self.method, self.model, self.schedule, self.tx = r.method, r.model, r.schedule, r.tx

  def abstract_state(self):
    return state_lib.abstract_state(self.model, self.tx, self.method, seed=self.config.seed,
                                    image_shape=self.image_shape, mesh=self.mesh)

  def init_state(self):
    return state_lib.create_state(self.model, self.tx, self.method, seed=self.config.seed,
                                  image_shape=self.image_shape, mesh=self.mesh)

  def train_iterator(self):
    c = self.config
    return loader.train_iterator(self.train_source, global_batch=c.train.global_batch,
                                 seed=c.seed, crops=self.host_crops,
                                 num_threads=c.data.num_threads, prefetch=c.data.prefetch)

  def eval_batches(self, split_source, batch: int):
    """Every example of an eval split once (see ``loader.eval_batches``), centre-cropped
    on the host when the images vary in size."""
    return loader.eval_batches(split_source, global_batch=batch,
                               transform=self.eval_transform,
                               num_threads=self.config.data.num_threads)

  def head_accuracy(self, state) -> float:
    """Accuracy of the online linear head on the eval split (every example once)."""
    view = self.views[0]
    mean, std = jnp.asarray(view.mean), jnp.asarray(view.std)
    if not hasattr(self, "_eval_step"):
      self._eval_step = jax.jit(step_lib.make_eval_step(self.model))
    counts = [self._eval_step(state, loader.to_global(batch, self.mesh), mean, std)
              for batch in self.eval_batches(self.eval_source, self.config.eval.batch)]
    correct, total = np.sum(jax.device_get(counts), axis=0)
    return float(correct) / float(total)


def _start_state(run: Run, mngr, data_iter):
  """Resume order: the workdir's latest checkpoint, else ``init_from`` (another run's
  workdir or one of its ``checkpoints/<step>`` directories), else a fresh initialisation."""
  c = run.config
  if mngr.latest_step() is not None:
    state = checkpoint.restore_latest(mngr, run.abstract_state(), data_iter)
    _say(f"Resumed from {mngr.directory / str(int(state.step))}.")
    return state
  if c.init_from:
    source_dir, step = checkpoint.locate(c.init_from)
    checkpoint.check_compatible(checkpoint.read_config(source_dir), c, what="init_from")
    other = checkpoint.manager(source_dir, read_only=True)
    try:
      state = (checkpoint.restore_latest(other, run.abstract_state(), data_iter)
               if step is None else
               checkpoint.restore(other, run.abstract_state(), data_iter, step=step))
    finally:
      other.close()
    _say(f"Initialised from {other.directory / str(int(state.step))} (init_from).")
    return state
  return run.init_state()


def training_watchdog(c: ml_collections.ConfigDict, workdir: pathlib.Path
                      ) -> watchdog_lib.Watchdog:
  """The run's stall watchdog (config section ``watchdog``), reporting to the workdir too."""
  return watchdog_lib.Watchdog(
      "training step", timeout_s=c.watchdog.timeout_s, floor_s=c.watchdog.floor_s,
      factor=c.watchdog.factor,
      report_file=str(workdir / f"stalled.process{jax.process_index()}.txt"),
      advice=f"Run the same command to resume from the last checkpoint in {workdir}. If the "
             "run stalls again, the stacks show where: a collective waiting for another "
             "process (check that every process is alive and runs the same config), the "
             "data loader (storage), or inside a compiled step (report it with the stacks; "
             "watchdog.timeout_s sets the limit).")


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          devices=None) -> dict[str, Any]:
  """Train on ``devices`` (default: all), resuming ``workdir`` if it holds checkpoints;
  returns the metrics of the last log step, plus ``stopped_by`` (a signal's name) when a
  SIGTERM or SIGINT ended the run early after a final checkpoint."""
  run = Run(config, workdir, devices)
  workdir = run.workdir
  c = config
  if (workdir / checkpoint.CONFIG_FILE).exists():
    checkpoint.check_compatible(checkpoint.read_config(workdir), c, what="workdir")
  mngr = checkpoint.manager(workdir, keep=c.train.keep_checkpoints,
                            keep_period=c.train.keep_period)
  data_iter = run.train_iterator()
  try:
    state = _start_state(run, mngr, data_iter)
  except BaseException:
    mngr.close()
    raise
  if distributed.is_main_process():
    checkpoint.write_config(workdir, c)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(run.model, run.method, run.method.kwargs(c.method.kwargs), run.tx,
                               run.views, seed=c.seed, schedule=run.schedule,
                               skip_nonfinite=c.train.max_skipped > 0), state, run.mesh)
  first = int(state.step)
  writer = MetricWriter(workdir, first)
  monitor = Monitor(first, c.train.max_skipped, int(state.skipped))
  progress = tqdm.tqdm(total=run.total_steps, initial=first, disable=not distributed.is_main_process(),
                       dynamic_ncols=True, unit="step")
  tick, scalars, logged = time.perf_counter(), {}, first
  try:
    with StopSignal() as stop, training_watchdog(c, workdir) as watchdog:
      for step in range(first, run.total_steps):
        state, metrics = train_step(state, loader.to_global(next(data_iter), run.mesh))
        monitor.add(metrics)
        if step > first:  # add() has waited for the previous step, the first one compiled
          watchdog.beat(step)
        done = step + 1
        last = done == run.total_steps
        log = done % c.train.log_every == 0 or last
        # Asked once per step: a signal arriving later in this step is handled after the next.
        stopping = stop.should_stop(done) and not last
        save = done % c.train.checkpoint_every == 0 or last or stopping
        if log or save:
          # Never log or save past a non-finite step: the checkpoints stay good.
          monitor.check(last_good=mngr.latest_step())
        if log:
          scalars = monitor.means()
          elapsed = time.perf_counter() - tick
          scalars["images_per_s"] = (done - logged) * c.train.global_batch / elapsed
          scalars["epoch"] = done / run.steps_per_epoch
          if monitor.max_skipped:
            scalars["skipped_steps"] = float(monitor.skipped)
          if done % c.train.eval_every == 0 or last:
            with watchdog.paused():
              scalars["val_head_accuracy"] = run.head_accuracy(state)
          writer.write(done, scalars)
          progress.set_postfix({k: f"{scalars[k]:.4g}" for k in _progress_keys(scalars)})
          progress.update(done - logged)
          tick, logged = time.perf_counter(), done
        if save:
          with watchdog.paused():
            checkpoint.save(mngr, done, state, data_iter)
        if stopping:
          with watchdog.paused():
            mngr.wait_until_finished()
          name = stop.name
          if distributed.is_main_process():
            progress.write(
                f"{name} received: stopped after step {done} and saved "
                f"{mngr.directory / str(done)}. To resume, run the same command again (same "
                f"--workdir {workdir}).")
          return {**scalars, "stopped_by": name, "step": float(done)}
  finally:
    progress.close()
    writer.close()
    mngr.wait_until_finished()
    mngr.close()
  return scalars
