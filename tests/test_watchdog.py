"""The stall watchdog: fires on a step that never completes (one process, and 2 processes x 4
devices, where both exit), with the stacks in its output; never on slow but progressing work,
paused work or compilation."""

import os
import subprocess
import sys
import time

import pytest

from jaxssl import watchdog as watchdog_lib
from tests.test_distributed import ROOT, start_processes


class Exited(Exception):
  pass


def run_watchdog(schedule, **kwargs):
  """Run ``schedule(dog)`` under a watchdog whose exit is recorded, not taken."""
  exits = []
  with watchdog_lib.Watchdog("test step", exit_fn=exits.append, **kwargs) as dog:
    schedule(dog)
  return exits


def test_fires_when_no_step_completes(tmp_path, capsys):
  report = tmp_path / "stalled.txt"

  def stall(dog):
    dog.beat(7)
    time.sleep(3.5)
  exits = run_watchdog(stall, timeout_s=1.0, report_file=str(report), advice="Do X.")
  assert exits == [watchdog_lib.EXIT_STATUS]
  err = capsys.readouterr().err
  assert "no test step completed" in err and "the last one to complete was 7" in err
  assert "Do X." in err
  # The stacks of every thread, the stalled one (this test, in time.sleep) included.
  assert "Thread MainThread" in err and "in stall" in err
  assert report.read_text() in err


def test_quiet_while_steps_complete_or_paused():
  def progress(dog):
    for step in range(12):
      dog.beat(step)
      time.sleep(0.25)  # each step well inside the limit, the run far beyond it
    with dog.paused():
      time.sleep(2.5)  # a slow save or evaluation pass
    dog.beat(12)
  assert run_watchdog(progress, timeout_s=1.0) == []


def test_not_armed_before_the_first_step():
  assert run_watchdog(lambda dog: time.sleep(2.5), timeout_s=1.0) == []  # compiling


def test_process_0_of_many_waits_before_it_exits(monkeypatch, capsys):
  # Its exit would abort the other processes before their watchdogs report.
  monkeypatch.setattr(watchdog_lib, "_coordinator", lambda: True)
  exits = []
  record = lambda status: exits.append((status, time.monotonic()))
  with watchdog_lib.Watchdog("test step", timeout_s=0.5, grace_s=1.5, exit_fn=record) as dog:
    dog.beat(0)
    beat = time.monotonic()
    time.sleep(3.5)
  [(status, when)] = exits
  assert status == watchdog_lib.EXIT_STATUS and when - beat >= 0.5 + 1.5
  assert "exits in 2 s, so that the other processes' watchdogs can report first" in (
      capsys.readouterr().err)


def test_derived_limit_follows_the_slowest_step():
  dog = watchdog_lib.Watchdog("test step", floor_s=2.0, factor=10.0)  # not entered: no timer
  assert dog.limit_s == 2.0
  dog.beat(0)
  time.sleep(0.3)
  dog.beat(1)
  assert 3.0 <= dog.limit_s < 5.0
  with pytest.raises(ValueError, match="timeout_s must be > 0"):
    watchdog_lib.Watchdog("x", timeout_s=0)


def stalling_command(workdir, data_dir, stall_at, process):
  from tests.test_distributed import train_command  # pylint: disable=g-import-not-at-top
  command = train_command(workdir, data_dir, "--config.watchdog.timeout_s=8")
  return [sys.executable, "tests/stalling_train.py", str(stall_at), str(process), *command[3:]]


@pytest.mark.slow
def test_training_stall_one_process(tmp_path, fmnist_data_dir):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run(stalling_command(tmp_path / "w", fmnist_data_dir, 4, -1), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == watchdog_lib.EXIT_STATUS, result.stderr[-3000:]
  assert "no training step completed" in result.stderr
  assert "the last one to complete was 3" in result.stderr
  assert "in train_step" in result.stderr  # the stalled step's frame, in the stacks
  assert (tmp_path / "w" / "stalled.process0.txt").is_file()
  # The checkpoint before the stall is intact: the same command resumes from it.
  assert (tmp_path / "w" / "checkpoints" / "3").is_dir()


@pytest.mark.slow
def test_training_stall_two_processes(tmp_path, fmnist_data_dir):
  # Process 1 stalls; process 0 waits in the next step's collectives. Both stop: process 1 by
  # its watchdog, process 0 by its own or, when process 1 leaves first, by the collective
  # failing on the closed connection. Process 0's watchdog waits before it exits: its exit
  # would abort process 1 (SIGABRT) before process 1's watchdog reported.
  # A 10 s heartbeat: after process 1 leaves, process 0's shutdown waits for the coordination
  # service to notice (100 s by default; the stalled process's heartbeats go on, so it is not
  # this that stops it).
  procs = start_processes([*stalling_command(tmp_path / "w", fmnist_data_dir, 4, 1),
                           "--heartbeat_timeout_s=10"])
  (_, err0), (_, err1) = [p.communicate(timeout=300) for p in procs]
  assert procs[1].returncode == watchdog_lib.EXIT_STATUS, err1[-3000:]
  assert "no training step completed" in err1 and "process 1 of 2" in err1
  assert "in train_step" in err1
  assert procs[0].returncode != 0, err0[-3000:]
  assert "no training step completed" in err0 or "Connection closed by peer" in err0
