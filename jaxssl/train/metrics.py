"""What a run reports as it trains: the step's nested metrics kept on the device until they
are needed, checked for non-finite values, averaged over the log interval, flattened to
``section/name`` and written to ``metrics.jsonl`` and TensorBoard (on a local disk or in a
bucket: ``jaxssl.storage``)."""

from __future__ import annotations

import json
import math
from typing import Any

import jax
import numpy as np

from jaxssl import distributed
from jaxssl import storage
from jaxssl.errors import NonFiniteError

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Scalars to ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow),
  from process 0 only."""

  def __init__(self, workdir: storage.Path, first_step: int = 0):
    self.active = distributed.is_main_process()
    if self.active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._jsonl = JsonLines(workdir / METRICS_FILE, keep_through=first_step)
      # purge_step: TensorBoard hides events at or after it written by the crashed attempt.
      self._tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"),
                                            purge_step=first_step or None)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """``scalars``: flat names (``flatten``) to numbers."""
    if not self.active:
      return
    self._jsonl.write({"step": step, **scalars})
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
    self.pending: list[dict[str, Any]] = []
    self.fetched: list[dict[str, Any]] = []
    self.next_step = first_step + 1  # the step number of pending[0]
    self.max_skipped, self.skipped = max_skipped, skipped

  def add(self, metrics: dict[str, Any]) -> None:
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
      if metrics.pop("finite") == 1.0:
        self.fetched.append(jax.tree.map(float, metrics))
        continue
      bad = sorted(k for k, v in flatten(metrics).items() if not math.isfinite(v))
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

  def means(self) -> dict[str, Any]:
    """Means over the finite steps since the last call, nested as the step's metrics (empty
    if there were none)."""
    fetched, self.fetched = self.fetched, []
    if not fetched:
      return {}
    return jax.tree.map(lambda *values: float(np.mean(values)), *fetched)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """Nested metrics as the flat names they are written under: ``{"head": {"accuracy": x}}``
  -> ``{"head/accuracy": x}`` (TensorBoard groups the charts by the part before the slash)."""
  flat = {}
  for key, value in metrics.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}/"))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def progress_fields(scalars: dict[str, Any]) -> dict[str, float]:
  """What the progress bar shows: the epoch, the loss and its terms, the online probe's
  accuracy, k-NN and RankMe when they ran, and the throughput."""
  progress, head, evals = (scalars.get(k, {}) for k in ("progress", "head", "eval"))
  fields = {"epoch": progress.get("epoch"), "loss": scalars.get("loss"),
            **scalars.get("terms", {}), "head_accuracy": head.get("accuracy"),
            "knn": evals.get("knn"), "rankme": evals.get("rankme"),
            "images_per_s": progress.get("images_per_s")}
  return {k: v for k, v in fields.items() if v is not None}


class JsonLines:
  """``metrics.jsonl``: one JSON line per log step, readable while the run goes on. Opening it
  drops the lines after step ``keep_through`` (written by an attempt that crashed after its
  last checkpoint; they are written again).

  On a disk each line is appended and flushed. An object store has no append: there the log
  is kept in memory and the whole object rewritten at each write, which the store does
  atomically (a reader, or a crash, finds the old or the new log, never half a line). Each
  log step then uploads the whole log, under a kilobyte a line (10,000 log steps: a 10 MB
  object); ``train.log_every`` keeps that small next to the steps between two logs.
  """

  def __init__(self, path: storage.Path, keep_through: int):
    self.path = path
    lines = _lines(path)
    kept = [line for line in _finished(lines) if json.loads(line)["step"] <= keep_through]
    self._remote = storage.is_object_store(path)
    if kept != lines:
      path.write_text("".join(kept), encoding="utf-8")
    if self._remote:
      self._lines = kept
    else:
      self._file = path.open("a", encoding="utf-8")

  def write(self, record: dict[str, Any]) -> None:
    line = json.dumps(record) + "\n"
    if self._remote:
      self._lines.append(line)
      self.path.write_text("".join(self._lines), encoding="utf-8")
    else:
      self._file.write(line)
      self._file.flush()

  def close(self) -> None:
    if not self._remote:
      self._file.close()


def read(workdir: storage.Path) -> list[dict[str, Any]]:
  """The records of a run's ``metrics.jsonl``, oldest first (none if it has none)."""
  return [json.loads(line) for line in _finished(_lines(workdir / METRICS_FILE))]


def _lines(path: storage.Path) -> list[str]:
  """The file's lines, newlines kept (none if there is no file)."""
  return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _finished(lines: list[str]) -> list[str]:
  """The complete lines: a last line without its newline was cut short by a crash."""
  return [line for line in lines if line.strip() and line.endswith("\n")]


def _say(message: str) -> None:
  """Print from process 0 only (every process runs the same loop)."""
  if distributed.is_main_process():
    print(message, flush=True)
