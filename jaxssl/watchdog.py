"""A stall watchdog: a run whose steps stop completing is stopped loudly instead of silently.

A hung step (a collective waiting for a process that will never arrive, a deadlocked XLA
thread pool, a loader blocked on storage) leaves the progress bar still and burns a job's whole
time limit; SIGTERM cannot help, because the trainer correctly waits for the step in flight.
The watchdog is told each time a step completes (``beat``). Once the run has completed its
first step (compilation is never timed), a step that takes longer than the limit makes it
print, on every process that sees the stall, what it was doing and the Python stacks of all
its threads, then end the process with ``EXIT_STATUS`` so that a scheduler restarts it (the run
resumes from its last checkpoint). ``paused()`` covers work that is slow but not a step:
checkpoint saves, evaluation passes, compiling a second program.

The limit is ``timeout_s`` when set; otherwise ``factor`` times the slowest step seen so far,
and never less than ``floor_s``. A Python thread does the reporting; in case the stalled
thread holds the interpreter lock, ``faulthandler`` (which needs no lock) is armed as a
backstop at twice the limit plus 30 s.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

EXIT_STATUS = 3


class Watchdog:
  """Ends the process when no ``beat`` arrives within the limit (see the module docstring).

  Args:
    what: what a beat means, for the message ("training step", "evaluation batch").
    timeout_s: a fixed limit in seconds; None derives it from the step times.
    floor_s: the least limit a derived one can be.
    factor: a derived limit is this many times the slowest step seen so far.
    advice: the last line of the message: what the user should do.
    report_file: also write the message and the stacks there (e.g. in the workdir: a local
      path or a ``gs://`` URL; a store that does not answer within 30 s is given up on).
    exit_fn: what ends the process (``os._exit``; tests may replace it).
    grace_s: how long process 0 of a multi-process run waits between its report and its exit;
      None: the limit, at most 30 s.
  """

  def __init__(self, what: str, *, timeout_s: float | None = None, floor_s: float = 300.0,
               factor: float = 20.0, advice: str = "", report_file: str | None = None,
               exit_fn: Callable[[int], None] = os._exit, grace_s: float | None = None):
    if timeout_s is not None and timeout_s <= 0:
      raise ValueError(f"watchdog timeout_s must be > 0 (or None); got {timeout_s}.")
    self.what, self.advice, self.report_file = what, advice, report_file
    self.timeout_s, self.floor_s, self.factor = timeout_s, floor_s, factor
    self._exit, self.grace_s = exit_fn, grace_s
    self._lock = threading.Lock()
    self._last: float | None = None  # when the last beat came; None: not armed (or paused)
    self._slowest = 0.0
    self._step: int | None = None
    self._paused = 0
    self._running = False
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch, name="jaxssl-watchdog", daemon=True)

  @property
  def limit_s(self) -> float:
    if self.timeout_s is not None:
      return self.timeout_s
    return max(self.floor_s, self.factor * self._slowest)

  def __enter__(self) -> Watchdog:
    self._running = True
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._running = False
    self._stop.set()
    self._thread.join()
    faulthandler.cancel_dump_traceback_later()

  def beat(self, step: int) -> None:
    """Step ``step`` completed; the next one is now being waited for."""
    now = time.monotonic()
    with self._lock:
      if self._last is not None and not self._paused:
        self._slowest = max(self._slowest, now - self._last)
      self._last, self._step = now, step
      limit = self.limit_s
    if self._running:  # the backstop lives between __enter__ and __exit__ only
      _arm_backstop(limit)

  @contextlib.contextmanager
  def paused(self):
    """Not timed: the clock restarts when the block ends (if the watchdog was armed)."""
    with self._lock:
      self._paused += 1
    faulthandler.cancel_dump_traceback_later()
    try:
      yield
    finally:
      with self._lock:
        self._paused -= 1
        if self._last is not None:
          self._last = time.monotonic()
          limit = self.limit_s
      if self._last is not None and self._running:
        _arm_backstop(limit)

  def _watch(self) -> None:
    while not self._stop.wait(min(1.0, self.limit_s / 4)):
      with self._lock:
        if self._last is None or self._paused:
          continue
        waited, limit, step = time.monotonic() - self._last, self.limit_s, self._step
      if waited > limit:
        self._fire(waited, limit, step)
        return

  def _fire(self, waited: float, limit: float, step: int | None) -> None:
    faulthandler.cancel_dump_traceback_later()
    message = (
        f"\njaxssl watchdog: no {self.what} completed for {waited:.0f} s (limit {limit:.0f} s); "
        f"the last one to complete was {step}, process {_process()}, pid {os.getpid()}. The "
        f"Python stacks of all threads follow. The process exits with status {EXIT_STATUS}. "
        f"{self.advice}\n")
    grace = (min(30.0, limit) if self.grace_s is None else self.grace_s) if _coordinator() else 0
    if grace:
      message += (f"Process 0 hosts the coordination service: it exits in {grace:.0f} s, so "
                  "that the other processes' watchdogs can report first.\n")
    report = message + all_stacks()
    sys.stderr.write(report)
    sys.stderr.flush()
    if self.report_file:
      _write_report(self.report_file, report)
    time.sleep(grace)
    self._exit(EXIT_STATUS)


def _write_report(path: str, report: str, timeout_s: float = 30.0) -> None:
  """``report`` to ``path`` through etils' epath (a disk or a bucket), in a thread: storage
  that hangs (perhaps the very stall) must not keep the process from exiting."""

  def write():
    try:
      from etils import epath  # pylint: disable=g-import-not-at-top
      epath.Path(path).write_text(report, encoding="utf-8")
    except Exception as err:  # pylint: disable=broad-except  (any store's error types)
      sys.stderr.write(f"(could not write {path}: {type(err).__name__}: {err})\n")

  writer = threading.Thread(target=write, name="watchdog-report", daemon=True)
  writer.start()
  writer.join(timeout_s)
  if writer.is_alive():
    sys.stderr.write(f"(gave up writing {path} after {timeout_s:.0f} s)\n")


def _arm_backstop(limit: float) -> None:
  """faulthandler's own timer, well after the Python thread would have fired: it dumps the
  stacks and exits even if the interpreter lock is never released (then the Python watchdog
  thread cannot run)."""
  try:
    faulthandler.dump_traceback_later(2 * limit + 30, exit=True, file=sys.__stderr__)
  except (AttributeError, ValueError, OSError):  # no real stderr (embedded interpreters)
    pass


def all_stacks() -> str:
  """The Python stack of every thread of this process, innermost call last."""
  names = {t.ident: t.name for t in threading.enumerate()}
  parts = []
  for ident, frame in sys._current_frames().items():  # pylint: disable=protected-access
    parts.append(f"\nThread {names.get(ident, '?')} ({ident}):\n"
                 + "".join(traceback.format_stack(frame)))
  return "".join(parts)


def _coordinator() -> bool:
  """Whether this is process 0 of a multi-process run (JAX already imported)."""
  jax = sys.modules.get("jax")
  try:
    return jax is not None and jax.process_count() > 1 and jax.process_index() == 0
  except Exception:  # pylint: disable=broad-except
    return False


def _process() -> str:
  """``i of n`` in a multi-process run, from JAX when it is already imported."""
  jax = sys.modules.get("jax")
  if jax is None:
    return "0 of 1"
  try:
    return f"{jax.process_index()} of {jax.process_count()}"
  except Exception:  # pylint: disable=broad-except
    return "? of ?"
