"""The training loop: build everything from the config, resume from the workdir, run the jitted
step, log, evaluate (the online probe and the evaluators that run during training),
checkpoint."""

from __future__ import annotations

import os
import pathlib
import platform
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import tqdm
from jax.experimental import multihost_utils

from jaxssl import distributed
from jaxssl import storage
from jaxssl import watchdog as watchdog_lib
from jaxssl.data import loader
from jaxssl.evaluate import evaluators
from jaxssl.train import checkpoint, run as run_lib
from jaxssl.train.metrics import MetricWriter, Monitor, flatten, progress_fields


BAD_IMAGES_FILE = "bad_images.txt"


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


def _start_state(run: run_lib.Run, mngr, data_iter):
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


def training_watchdog(c: ml_collections.ConfigDict, workdir: storage.Path
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


def _open(config: ml_collections.ConfigDict, workdir: storage.Path, devices):
  """The run, the evaluators it runs as it trains, its checkpoint manager, the data iterator
  and the state to start from (see ``_start_state``); the workdir's config is checked against
  ``config`` and written."""
  run = run_lib.Run(config, devices=devices)
  during = evaluators.DuringTraining(run)  # (their settings fail here, before any data is read)
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
    _note_data(run, during, workdir)
    note = allocator_note(run.mesh.devices.flat[0].platform)
    if note:
      _say(note)
  return run, during, mngr, data_iter, state


def allocator_note(platform_name: str) -> str | None:
  """What to say when a CPU run's per-step buffers will be faulted in 4 KiB at a time: glibc
  2.35+ with transparent huge pages on offer, but ``GLIBC_TUNABLES`` not asking for them
  (``launch/_cpu.sh`` does; docs/training.md, "The host's allocator")."""
  if platform_name != "cpu" or "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
    return None
  libc, version = platform.libc_ver()
  try:
    pages = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
  except OSError:
    return None
  if libc != "glibc" or tuple(map(int, version.split(".")[:2])) < (2, 35) or "[never]" in pages:
    return None
  return ("Note: on this CPU, XLA maps each step's buffers afresh and faults them in 4 KiB "
          "at a time. Set GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (launch/_cpu.sh does) for "
          "huge pages: steps measured 8% to 37% faster (docs/training.md, \"The host's "
          "allocator\").")


def _note_data(run: run_lib.Run, during: evaluators.DuringTraining,
               workdir: storage.Path) -> None:
  """Say once what the data leaves out: image files that do not decode (listed in
  ``bad_images.txt``) and evaluators that need labels it lacks."""
  bad = run.bad_images
  if bad:
    (workdir / BAD_IMAGES_FILE).write_text("\n".join(bad) + "\n")
    _say(f"Left out {len(bad)} image file(s) that do not decode (data.on_bad_image=skip); "
         f"listed in {workdir / BAD_IMAGES_FILE}.")
  if during.notice:
    _say(f"Note: {during.notice}")


def _log_scalars(run: run_lib.Run, monitor: Monitor, state, *, steps: int, seconds: float,
                 evaluate: bool) -> dict[str, Any]:
  """The log step's metrics, nested: the means since the last log, the throughput over
  ``steps`` steps in ``seconds``, and the online probe on the eval split when ``evaluate``."""
  c = run.config
  scalars = monitor.means()
  scalars["progress"] = {"epoch": int(state.step) / run.steps_per_epoch,
                         "images_per_s": steps * c.train.global_batch / seconds}
  if monitor.max_skipped:
    scalars.setdefault("optim", {})["skipped_steps"] = float(monitor.skipped)
  if evaluate and run.has_head:
    scalars.setdefault("head", {})["val_accuracy"] = run.head_accuracy(state)
  return scalars


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          devices=None) -> dict[str, Any]:
  """Train on ``devices`` (default: all), resuming ``workdir`` (a directory or a ``gs://``
  URL) if it holds checkpoints;
  returns the metrics of the last log step under their written (flat) names, plus
  ``stopped_by`` (a signal's name) when a SIGTERM or SIGINT ended the run early after a
  final checkpoint."""
  workdir = checkpoint.workdir_path(workdir)
  run, during, mngr, data_iter, state = _open(config, workdir, devices)
  c, train_step, first = config, run.train_step(), int(state.step)
  writer = MetricWriter(workdir, first)
  monitor = Monitor(first, c.train.max_skipped, int(state.skipped))
  progress = tqdm.tqdm(total=run.total_steps, initial=first, dynamic_ncols=True, unit="step",
                       disable=not distributed.is_main_process())
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
        evaluating = bool(during.due(done, last))
        log = done % c.train.log_every == 0 or last or evaluating
        # Asked once per step: a signal arriving later in this step is handled after the next.
        stopping = stop.should_stop(done) and not last
        save = done % c.train.checkpoint_every == 0 or last or stopping
        if log or save:
          # Never log or save past a non-finite step: the checkpoints stay good.
          monitor.check(last_good=mngr.latest_step())
        if log:
          with watchdog.paused():  # the online probe's and the evaluators' passes
            scalars = _log_scalars(run, monitor, state, steps=done - logged,
                                   seconds=time.perf_counter() - tick,
                                   evaluate=done % c.train.eval_every == 0 or last)
            if evaluating:
              scalars["eval"], warnings = during(state, done, last)
              for warning in warnings if distributed.is_main_process() else ():
                progress.write(f"Warning (step {done}): {warning}")
          writer.write(done, flatten(scalars))
          progress.set_postfix({k: f"{v:.4g}" for k, v in progress_fields(scalars).items()})
          progress.update(done - logged)
          tick, logged = time.perf_counter(), done
        if save:
          with watchdog.paused():
            checkpoint.save(mngr, done, state, data_iter)
        if stopping:
          with watchdog.paused():
            mngr.wait_until_finished()
          if distributed.is_main_process():
            progress.write(
                f"{stop.name} received: stopped after step {done} and saved "
                f"{mngr.directory / str(done)}. To resume, run the same command again (same "
                f"--workdir {workdir}).")
          return {**flatten(scalars), "stopped_by": stop.name, "step": float(done)}
  finally:
    progress.close()
    writer.close()
    mngr.wait_until_finished()
    mngr.close()
  return flatten(scalars)
