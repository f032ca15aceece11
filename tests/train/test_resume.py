"""Runs that survive: real trainer processes killed with SIGKILL (mid-run and mid-save) or
stopped with SIGTERM resume to the same parameters and loss curve as an uninterrupted run;
non-finite steps stop (or are skipped); incompatible workdirs and corrupt checkpoints are
refused with the path named and nothing overwritten."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxssl import errors, evaluate
from jaxssl.data import loader
from jaxssl.train import loop, step as step_lib
from tests.conftest import smoke_config

pytestmark = pytest.mark.slow  # training runs in subprocesses, killed and resumed

ROOT = pathlib.Path(__file__).parents[2]
STEPS, EVERY = 40, 8


def command(workdir, data_dir, *overrides):
  return [sys.executable, "-m", "jaxssl.train", "--config",
          "configs/vicreg_fashion_mnist.py:smoke", "--workdir", str(workdir),
          f"--config.data.data_dir={data_dir}", f"--config.train.steps={STEPS}",
          "--config.train.global_batch=128", "--config.train.log_every=1",
          f"--config.train.checkpoint_every={EVERY}", "--config.train.eval_every=1000",
          "--config.train.keep_checkpoints=10", *overrides]


def run(workdir, data_dir, *overrides, timeout=300):
  return subprocess.run(command(workdir, data_dir, *overrides), cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def logged_steps(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def start_and_wait(workdir, data_dir, at_step: int, *overrides) -> subprocess.Popen:
  """Start a trainer process and return once it has logged ``at_step``."""
  proc = subprocess.Popen(command(workdir, data_dir, *overrides), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and proc.poll() is None:
    steps = logged_steps(workdir)
    if steps and steps[-1]["step"] >= at_step:
      return proc
    time.sleep(0.01)
  proc.kill()
  raise AssertionError(f"the trainer did not reach step {at_step}: {proc.communicate()}")


def final(workdir):
  """The last checkpoint's parameters and BatchNorm statistics, and the logged losses."""
  encoder = evaluate.load_encoder(workdir, devices=jax.devices()[:1])
  losses = {m["step"]: m["loss"] for m in logged_steps(workdir)}
  return jax.device_get(encoder.variables), losses


def assert_same_run(workdir, reference):
  variables, losses = final(workdir)
  ref_variables, ref_losses = reference
  assert sorted(losses) == list(range(1, STEPS + 1)), "one log line per step, no duplicates"
  # The same devices, program and data order: bit-identical on XLA:CPU.
  assert losses == ref_losses
  jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)


@pytest.fixture(scope="module")
def reference(fmnist_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  result = run(workdir, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  # The progress bar shows the epoch, the loss and its terms, the probe and the throughput.
  for shown in ("epoch=", "loss=", "invariance=", "variance=", "covariance=",
                "head_accuracy=", "images_per_s="):
    assert shown in result.stderr, shown
  return workdir, final(workdir)


@pytest.mark.e2e  # in the README's test command: one real run of this kind
def test_sigkill_mid_run_resumes_to_the_same_run(reference, fmnist_data_dir, tmp_path):
  proc = start_and_wait(tmp_path, fmnist_data_dir, 2 * EVERY + 3)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  killed_at = logged_steps(tmp_path)[-1]["step"]
  assert killed_at < STEPS, "the kill came too late to test anything"
  # The latest complete checkpoint: the one at or before the kill, or the one before that if
  # the kill came while its asynchronous save was still being written.
  resumed = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert killed_at - killed_at % EVERY - EVERY <= resumed <= killed_at, (resumed, killed_at)
  result = run(tmp_path, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {tmp_path / 'checkpoints' / str(resumed)}" in result.stdout
  assert_same_run(tmp_path, reference[1])


KILL_IN_SAVE = """
import os, signal, sys
from jaxssl.train import checkpoint
real_save = checkpoint.save
def save(mngr, step, *args, **kwargs):
  real_save(mngr, step, *args, **kwargs)
  if step == {step}:  # the asynchronous write has started: die before it is finalised
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save
sys.argv = ["jaxssl.train"] + sys.argv[1:]
from absl import app
from jaxssl.train import __main__ as main
app.run(main.main)
"""


def test_sigkill_during_a_save_resumes_from_the_previous_checkpoint(reference, fmnist_data_dir,
                                                                     tmp_path):
  cmd = command(tmp_path, fmnist_data_dir)
  script = KILL_IN_SAVE.format(step=2 * EVERY)
  proc = subprocess.run([sys.executable, "-c", script, *cmd[3:]], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  complete = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                    if p.name.isdigit())
  assert complete == [EVERY], complete  # the cut-short save is not listed as a checkpoint
  result = run(tmp_path, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {tmp_path / 'checkpoints' / str(EVERY)}" in result.stdout
  assert_same_run(tmp_path, reference[1])


def test_sigterm_saves_exits_75_and_resumes(reference, fmnist_data_dir, tmp_path):
  """Stopped early: the resumable status (75, EX_TEMPFAIL), not "finished"."""
  proc = start_and_wait(tmp_path, fmnist_data_dir, EVERY + 2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 75, err[-3000:]
  stopped = int(max(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                    if p.name.isdigit()))
  assert stopped < STEPS and stopped % EVERY != 0, ("the final save is at the stopping step",
                                                     stopped, out[-2000:], err[-2000:])
  assert f"SIGTERM received: stopped after step {stopped}" in out + err
  assert "To resume, run the same command again" in out + err
  result = run(tmp_path, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_same_run(tmp_path, reference[1])


def test_init_from_starts_a_new_workdir_from_another_runs_checkpoint(reference,
                                                                      fmnist_data_dir, tmp_path):
  source = reference[0] / "checkpoints" / str(2 * EVERY)
  result = run(tmp_path, fmnist_data_dir, f"--config.init_from={source}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Initialised from {source}" in result.stdout
  variables, losses = final(tmp_path)
  assert sorted(losses) == list(range(2 * EVERY + 1, STEPS + 1))
  assert losses == {s: v for s, v in reference[1][1].items() if s > 2 * EVERY}
  jax.tree.map(np.testing.assert_array_equal, variables, reference[1][0])


def test_incompatible_workdir_is_refused_and_left_alone(reference, fmnist_data_dir, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  result = run(workdir, fmnist_data_dir, "--config.model.projector=32-32",
               "--config.method.name=barlow_twins")
  assert result.returncode == 1
  assert "incompatible config" in result.stderr
  assert "model.projector: '64-64' (saved) vs '32-32' (now)" in result.stderr
  assert "method.name" in result.stderr and "Traceback" not in result.stderr
  assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


def test_corrupt_checkpoint_names_it_and_offers_the_previous(reference, fmnist_data_dir,
                                                           tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  bad = workdir / "checkpoints" / str(STEPS)
  for f in (bad / "state").rglob("*"):  # every file of the saved state truncated
    if f.is_file():
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  files = sorted(p for p in workdir.rglob("*") if p.is_file())
  result = run(workdir, fmnist_data_dir, f"--config.train.steps={STEPS + 8}")
  assert result.returncode == 1
  assert f"Checkpoint {bad} cannot be restored" in result.stderr
  first = result.stderr.strip().splitlines()[0]  # short, naming the file and the cause
  assert first.startswith(f"error: Checkpoint {bad} cannot be restored (file {bad}/")
  assert len(first) < 500 and "Error" in first
  older = workdir / "checkpoints" / str(STEPS - EVERY)
  assert f"The next older checkpoint, {older}, restores" in result.stderr
  assert f"mv {bad} " in result.stderr
  assert sorted(p for p in workdir.rglob("*") if p.is_file()) == files
  # Following the advice resumes from the older checkpoint.
  os.rename(bad, workdir / f"bad_checkpoint_{STEPS}")
  result = run(workdir, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {older}" in result.stdout
  assert_same_run(workdir, reference[1])


def poison_batch(monkeypatch, at_call: int, repeat: bool = False):
  """Make the ``at_call``-th training batch (and with ``repeat`` every later one) produce NaN
  embeddings: its first image is set to 255 (a value absent from the fake data) and the
  step's uint8->float conversion maps 255 to NaN."""
  real_to_global, real_to_float = loader.to_global, step_lib.images_to_float
  calls = {"train": 0}

  def to_global(batch, mesh, *args):
    if "mask" not in batch:  # a training batch (eval batches carry a mask)
      calls["train"] += 1
      if calls["train"] == at_call or (repeat and calls["train"] > at_call):
        batch = {**batch, "image": batch["image"].copy()}
        batch["image"][0] = 255
    return real_to_global(batch, mesh, *args)

  def images_to_float(images):
    x = real_to_float(images)
    return jax.numpy.where(images == 255, jax.numpy.nan, x)

  monkeypatch.setattr(loader, "to_global", to_global)
  monkeypatch.setattr(step_lib, "images_to_float", images_to_float)


def test_nonfinite_step_stops_the_run_with_the_last_checkpoint_intact(fmnist_data_dir,
                                                                      tmp_path, monkeypatch):
  poison_batch(monkeypatch, at_call=5)
  config = smoke_config(fmnist_data_dir, **{"train.log_every": 4})
  # (The NaN image turns into finite embeddings on the way, BatchNorm and ReLU, but not into
  # a finite gradient: the gradient norm is what catches it.)
  expected = r"step 5 in \[.*'optim/grad_norm'.*\]; the last checkpoint \(step 3\)"
  with pytest.raises(errors.NonFiniteError, match=expected):
    loop.train(config, tmp_path)
  monkeypatch.undo()
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [3]
  encoder = evaluate.load_encoder(tmp_path)
  assert encoder.step == 3
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(encoder.variables)))


def test_nonfinite_steps_can_be_skipped_up_to_a_limit(fmnist_data_dir, tmp_path, monkeypatch):
  poison_batch(monkeypatch, at_call=2)
  config = smoke_config(fmnist_data_dir, **{"train.max_skipped": 1})
  scalars = loop.train(config, tmp_path / "skip")
  assert scalars["optim/skipped_steps"] == 1.0
  variables = evaluate.load_encoder(tmp_path / "skip").variables
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(variables)))


def test_skipping_stops_once_past_the_limit(fmnist_data_dir, tmp_path, monkeypatch):
  poison_batch(monkeypatch, at_call=2, repeat=True)
  config = smoke_config(fmnist_data_dir, **{"train.max_skipped": 2})
  with pytest.raises(errors.NonFiniteError, match=r"3 steps .* exceed train.max_skipped=2"):
    loop.train(config, tmp_path)


def test_running_a_finished_run_again_says_so(reference, fmnist_data_dir, tmp_path):
  """Issue 23: the same command on a finished run printed ``final: `` and nothing else."""
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  result = run(workdir, fmnist_data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Nothing to do: the run in" in result.stdout and "final: \n" not in result.stdout
  assert "python -m jaxssl.evaluate --workdir" in result.stdout
