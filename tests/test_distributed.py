"""Multi-process runs with real processes and real collectives on this CPU: 2 processes x 4
devices (gloo over localhost) against 1 process x 8 devices, checkpoints across the two
topologies, a common stop step on SIGTERM, and a dead process taking the others down."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxssl import distributed
from jaxssl.train import checkpoint, run as run_lib

pytestmark = pytest.mark.slow  # multi-process runs

ROOT = pathlib.Path(__file__).parents[1]
STEPS, EVERY = 6, 3


def train_command(workdir, data_dir, *overrides):
  return [sys.executable, "-m", "jaxssl.train", "--config",
          "configs/vicreg_fashion_mnist.py:smoke", "--workdir", str(workdir),
          f"--config.data.data_dir={data_dir}", f"--config.train.steps={STEPS}",
          "--config.train.global_batch=64", "--config.train.log_every=1",
          f"--config.train.checkpoint_every={EVERY}", "--config.train.eval_every=1000",
          *overrides]


def single_process(command, timeout=300):
  """``command`` as one process with 8 CPU devices."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def two_processes(command, timeout=300):
  """``command`` as 2 processes x 4 CPU devices, through the launch script users run."""
  result = subprocess.run(["bash", "launch/local_multiprocess.sh", "-n", "2", "-d", "4", "--",
                           *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start_processes(command, n=2, devices=4) -> list[subprocess.Popen]:
  """``command`` as ``n`` processes started directly (so a test can signal one of them)."""
  port = free_port()
  procs = []
  for i in range(n):
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": str(n),
           "JAX_PROCESS_ID": str(i)}
    procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  return procs


def logged(workdir) -> dict[int, dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return {}
  lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
  return {m["step"]: m for m in lines}


def wait_for_step(workdir, step, procs, timeout=240):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if any(p.poll() is not None for p in procs):
      raise AssertionError([p.communicate() for p in procs])
    if max(logged(workdir), default=0) >= step:
      return
    time.sleep(0.05)
  for p in procs:
    p.kill()
  raise AssertionError(f"no process logged step {step} in {timeout} s")


def final_state(workdir):
  """The latest checkpoint's whole state, restored in this process (1 process, 8 devices)."""
  run = run_lib.Run(checkpoint.read_config(workdir), training=False)
  mngr = checkpoint.manager(workdir, read_only=True)
  try:
    return jax.device_get(checkpoint.restore(mngr, run.abstract_state()))
  finally:
    mngr.close()


def assert_same_runs(workdir_a, workdir_b, steps, rtol):
  """Equal losses at every step and equal final states, within ``rtol`` (the topologies sum
  the batch in different orders)."""
  log_a, log_b = logged(workdir_a), logged(workdir_b)
  assert sorted(log_a) == sorted(log_b) == list(steps)
  for step in steps:
    for key in ("loss", "terms/invariance", "terms/covariance", "optim/grad_norm"):
      np.testing.assert_allclose(log_a[step][key], log_b[step][key], rtol=rtol,
                                 err_msg=f"{key} at step {step}")
  state_a, state_b = final_state(workdir_a), final_state(workdir_b)
  assert int(state_a.step) == int(state_b.step) == steps[-1]
  # Per array, relative to its norm: rounding differences of a few steps at LARS's large
  # learning rate move single small entries by more than an elementwise rtol allows.
  jax.tree.map(lambda a, b: np.testing.assert_array_less(
      np.linalg.norm(np.ravel(a - b)), rtol * np.linalg.norm(np.ravel(b)) + 1e-7),
               (state_a.params, state_a.batch_stats, state_a.method_state),
               (state_b.params, state_b.batch_stats, state_b.method_state))


# Per method: the settings and the tolerance between topologies. CorInfoMax's gradient goes
# through the inverse of the running covariance, which amplifies rounding about tenfold per
# step at the smoke learning rate; the same spread shows between 4 and 8 devices of one
# process. Its projector is narrower than the batch, the regime the method is used in.
METHOD_RUNS = {
    "vicreg": (("--config.method.name=vicreg",), 1e-4),
    "corinfomax": (("--config.method.name=corinfomax", "--config.model.projector=64-16"),
                   2e-3),
}


@pytest.fixture(scope="module", params=sorted(METHOD_RUNS))
def runs(request, fmnist_data_dir, tmp_path_factory):
  """The same run on 1 x 8 and 2 x 4 devices (checkpoints at steps 3 and 6)."""
  overrides, rtol = METHOD_RUNS[request.param]
  one = tmp_path_factory.mktemp(f"one_{request.param}")
  two = tmp_path_factory.mktemp(f"two_{request.param}")
  single_process(train_command(one, fmnist_data_dir, *overrides))
  result = two_processes(train_command(two, fmnist_data_dir, *overrides))
  return one, two, result, overrides, rtol


@pytest.mark.e2e  # in the README's test command: one real run of this kind
def test_two_processes_train_as_one(runs):
  one, two, result, _, rtol = runs
  # The 2-process checkpoint restores here, in one process on 8 devices.
  assert_same_runs(one, two, range(1, STEPS + 1), rtol)
  # One process logs and writes reports: one progress bar, one final line, one config.
  assert result.stdout.count("final: ") == 1 and "[0] final: " in result.stdout
  assert "[1]" not in "".join(line for line in result.stderr.splitlines()
                              if "%|" in line)
  data = sorted(p.name for p in (two / "checkpoints" / str(STEPS) / "data").glob("*.json"))
  assert data == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.parametrize("resume_in", ["one", "two"])
def test_checkpoint_resumes_in_the_other_topology(runs, fmnist_data_dir, tmp_path, resume_in):
  """A run saved at step 3 by one topology finishes on the other as if never interrupted."""
  one, two, _, overrides, rtol = runs
  written_by = two if resume_in == "one" else one
  workdir = tmp_path / "resumed"
  shutil.copytree(written_by, workdir)
  shutil.rmtree(workdir / "checkpoints" / str(STEPS))  # as if it had crashed after step 3
  launcher = single_process if resume_in == "one" else two_processes
  launcher(train_command(workdir, fmnist_data_dir, *overrides))
  assert_same_runs(workdir, written_by, range(1, STEPS + 1), rtol)


def test_sigterm_to_one_process_stops_every_process_after_the_same_step(fmnist_data_dir,
                                                                       tmp_path):
  procs = start_processes(train_command(tmp_path, fmnist_data_dir,
                                        "--config.train.steps=1000"))
  wait_for_step(tmp_path, 2, procs)
  procs[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=120) for p in procs]
  assert [p.returncode for p in procs] == [75, 75], outputs  # stopped early, resumable
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                 if p.name.isdigit())
  stop = saved[-1]
  assert 2 < stop < 1000
  assert f"SIGTERM received: stopped after step {stop}" in "".join(outputs[0])
  assert max(logged(tmp_path)) == stop
  data = sorted(p.name for p in (tmp_path / "checkpoints" / str(stop) / "data").iterdir())
  assert "process_0-of-2.json" in data and "process_1-of-2.json" in data


@pytest.mark.parametrize("killed", [0, 1])
def test_a_dead_process_makes_the_other_exit_nonzero(fmnist_data_dir, tmp_path, killed):
  """Process 0 also hosts the coordination service; either one dying stops the other."""
  heartbeat = 5
  procs = start_processes([*train_command(tmp_path, fmnist_data_dir,
                                          "--config.train.steps=100000"),
                           f"--heartbeat_timeout_s={heartbeat}"])
  wait_for_step(tmp_path, 2, procs)
  procs[killed].kill()
  start = time.monotonic()
  survivor = procs[1 - killed]
  try:
    _, err = survivor.communicate(timeout=90)
  except subprocess.TimeoutExpired:
    survivor.kill()
    raise AssertionError("the surviving process still ran 90 s after the other died") from None
  assert survivor.returncode != 0
  assert time.monotonic() - start < 90
  assert "another task died" in err or "Connection closed by peer" in err or \
      "unhealthy" in err, err[-2000:]


def test_evaluation_on_two_processes_matches_one(runs, tmp_path):
  one, _, _, overrides, _ = runs
  if "--config.method.name=vicreg" not in overrides:
    pytest.skip("one method is enough for the evaluator")
  command = [sys.executable, "-m", "jaxssl.evaluate", "--workdir", str(one),
             "--random_baseline=false", "--evals=finetune_1,knn,linear,logistic,rankme,ridge"]
  single_process([*command, "--out", str(tmp_path / "one")])
  result = two_processes([*command, "--out", str(tmp_path / "two")])
  assert result.stdout.count("Report: ") == 1
  a = json.loads((tmp_path / "one" / "eval.json").read_text())["results"]["pretrained"]
  b = json.loads((tmp_path / "two" / "eval.json").read_text())["results"]["pretrained"]
  assert a.keys() == b.keys() and {"linear", "finetune_1_scratch", "std_min"} <= a.keys()
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-3, err_msg=key)


# Start-up decisions, without starting anything.


@pytest.fixture
def clean_env(monkeypatch):
  for variable in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                   "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(variable, raising=False)
  return monkeypatch


@pytest.mark.parametrize("settings, env, expected", [
    ({}, {}, False),
    ({"num_processes": 1}, {}, False),
    ({"num_processes": 2}, {}, True),
    ({}, {"JAX_NUM_PROCESSES": "4"}, True),
    ({}, {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({}, {"SLURM_NTASKS": "1"}, False),
    ({}, {"SLURM_NTASKS": "16"}, True),
    ({}, {"OMPI_COMM_WORLD_SIZE": "2"}, True),
    ({"mode": "on"}, {}, True),
    ({"mode": "off"}, {"SLURM_NTASKS": "16"}, False),
])
def test_the_runtime_starts_only_for_multiprocess_runs(clean_env, settings, env, expected):
  for key, value in env.items():
    clean_env.setenv(key, value)
  resolved = distributed.Settings(**settings).from_environment()
  assert distributed.wants_runtime(resolved) is expected


def test_single_process_initialize_is_a_noop_and_safe_twice(clean_env):
  assert distributed.initialize() is False
  assert distributed.initialize() is False
  assert not jax.distributed.is_initialized()


@pytest.mark.parametrize("settings, env, message", [
    ({"num_processes": 2}, {}, "needs coordinator_address and process_id"),
    ({"num_processes": 2, "process_id": 0}, {}, "needs coordinator_address"),
    ({"num_processes": 2, "process_id": 2, "coordinator_address": "localhost:1"}, {},
     "process_id 2 is not in [0, 2)"),
    ({}, {"JAX_NUM_PROCESSES": "two"}, "$JAX_NUM_PROCESSES='two' is not an integer"),
    ({"mode": "sometimes"}, {}, "is not one of"),
])
def test_bad_settings_are_refused_before_anything_starts(clean_env, settings, env, message):
  for key, value in env.items():
    clean_env.setenv(key, value)
  with pytest.raises(distributed.DistributedError) as err:
    distributed.initialize(distributed.Settings(**settings))
  assert message in str(err.value)
  assert not jax.distributed.is_initialized()


def test_the_trainer_reports_bad_settings_and_exits_1(fmnist_data_dir, tmp_path):
  result = subprocess.run([*train_command(tmp_path, fmnist_data_dir), "--num_processes=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "error: A run of 2 processes needs coordinator_address and process_id" in \
      result.stderr
  assert not (tmp_path / "checkpoints").exists()
