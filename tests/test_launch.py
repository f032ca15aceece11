"""The launch scripts: SLURM (run for real under a stand-in ``srun`` that starts the tasks on
localhost, so JAX's own SLURM detection joins them), the TPU pod driver (against a stand-in
``gcloud`` that records what would run on the workers), and that every script parses."""

import os
import pathlib
import shlex
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.test_distributed import logged, train_command, wait_for_step

ROOT = pathlib.Path(__file__).parents[1]

FAKE_SRUN = """#!/usr/bin/env bash
# srun on one machine: $SLURM_NTASKS tasks of the command on localhost.
[[ "$1" == --kill-on-bad-exit=1 ]] && shift
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_STEP_NUM_TASKS=$SLURM_NTASKS \\
  SLURM_STEP_NODELIST=localhost "$@" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}"' TERM
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit $status
"""

RECORD = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0")" "$@" >> "$CALLS"
echo --- >> "$CALLS"
"""


def fake_bin(tmp_path, **scripts) -> dict[str, str]:
  """An environment whose PATH starts with ``scripts`` (name -> text)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in scripts.items():
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
          "CALLS": str(tmp_path / "calls.txt")}


def calls(tmp_path) -> list[list[str]]:
  path = tmp_path / "calls.txt"
  if not path.exists():
    return []
  text = path.read_text().split("---\n")
  return [chunk.splitlines() for chunk in text if chunk.strip()]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "launch").iterdir()
                                          if p.suffix in (".sh", ".sbatch")))
def test_every_launch_script_parses(script):
  subprocess.run(["bash", "-n", str(ROOT / "launch" / script)], check=True)


@pytest.mark.parametrize("before,after", [
    (None, "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # the user's own choice stands
])
def test_cpu_settings_ask_malloc_for_huge_pages_keeping_the_users_tunables(before, after):
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  if before is not None:
    env["GLIBC_TUNABLES"] = before
  # What a process the scripts start sees: python, reading its own environment.
  out = subprocess.run(["bash", "-c", "source launch/_cpu.sh && python3 -c "
                        "'import os; print(os.environ[\"GLIBC_TUNABLES\"])'"],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
  assert out.strip() == after


def slurm_env(tmp_path):
  env = fake_bin(tmp_path, srun=FAKE_SRUN, scontrol=RECORD)
  env.update({"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_SUBMIT_DIR": str(ROOT),
              "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable,
              "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  return env


@pytest.mark.slow
def test_slurm_job_runs_two_tasks_as_one_run(fmnist_data_dir, tmp_path):
  workdir = tmp_path / "run"
  command = train_command(workdir, fmnist_data_dir)[3:]  # the trainer's flags
  result = subprocess.run(["bash", "launch/slurm.sbatch", *command], cwd=ROOT,
                          env=slurm_env(tmp_path), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("final: ") == 1
  saved = workdir / "checkpoints" / "6" / "data"
  assert sorted(p.name for p in saved.glob("*.json")) == ["process_0-of-2.json",
                                                         "process_1-of-2.json"]
  assert calls(tmp_path) == []  # finished: no requeue


def start_slurm_job(workdir, data_dir, tmp_path) -> subprocess.Popen:
  """A long SLURM job of 2 tasks (the stand-in srun), returned once it has logged step 2."""
  command = train_command(workdir, data_dir, "--config.train.steps=1000")[3:]
  job = subprocess.Popen(["bash", "launch/slurm.sbatch", *command], cwd=ROOT,
                         env=slurm_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  wait_for_step(workdir, 2, [job])
  return job


@pytest.mark.slow
def test_slurm_time_limit_stops_at_a_common_step_and_requeues(fmnist_data_dir, tmp_path):
  workdir = tmp_path / "run"
  job = start_slurm_job(workdir, fmnist_data_dir, tmp_path)
  job.send_signal(signal.SIGTERM)  # what --signal=B:TERM@300 does
  out, err = job.communicate(timeout=120)
  assert job.returncode == 0, err[-3000:]
  stop = max(logged(workdir))
  assert (workdir / "checkpoints" / str(stop) / "data" / "process_1-of-2.json").exists()
  assert f"stopped after step {stop}" in out + err
  assert calls(tmp_path) == [["scontrol", "requeue", "4242"]]


def trainer_pids(workdir) -> list[int]:
  """The trainer processes of ``workdir`` (the tasks a launch script started)."""
  found = subprocess.run(["pgrep", "-f", f"jaxssl.train .*{workdir}"], capture_output=True,
                         text=True, check=False).stdout.split()
  return [int(pid) for pid in found]


@pytest.mark.slow
def test_slurm_requeues_tasks_stopped_early(fmnist_data_dir, tmp_path):
  """A pre-empted task (SIGTERM to a task, not to the batch script): every task stops after a
  common step with exit status 75, and the batch script requeues the job on it."""
  workdir = tmp_path / "run"
  job = start_slurm_job(workdir, fmnist_data_dir, tmp_path)
  os.kill(trainer_pids(workdir)[-1], signal.SIGTERM)
  out, err = job.communicate(timeout=120)
  assert job.returncode == 0, err[-3000:]
  assert "stopped early and resumable (exit status 75); requeueing" in err
  assert calls(tmp_path) == [["scontrol", "requeue", "4242"]]


@pytest.mark.slow
def test_quickstart_stopped_early_exits_75_without_evaluating(fmnist_data_dir, tmp_path):
  workdir = tmp_path / "run"
  env = {**os.environ, "FASHION_MNIST_DIR": str(pathlib.Path(fmnist_data_dir).parent / "idx"),
         "JAX_PLATFORMS": "cpu"}
  job = subprocess.Popen(["bash", "launch/quickstart.sh", str(workdir),
                          f"--config.data.data_dir={fmnist_data_dir}",
                          "--config.model.widths=(8, 16)", "--config.model.projector=64-64",
                          "--config.train.global_batch=64", "--config.train.log_every=1"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
  wait_for_step(workdir, 2, [job], timeout=400)
  os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
  out, err = job.communicate(timeout=120)
  assert job.returncode == 75, err[-3000:]
  assert "run the same command again to resume it" in err
  assert not (workdir / "eval").exists()


def test_tpu_pod_driver_runs_one_command_on_every_worker(tmp_path):
  env = fake_bin(tmp_path, gcloud=RECORD)
  env.update({"TPU_NAME": "pod", "ZONE": "us-central2-b", "BUCKET": "bkt"})
  args = ["--config", "configs/vicreg_imagenet.py", "--workdir", "gs://bkt/runs/a b",
          "--config.optim.lr=0.3"]
  for verb in (["setup"], ["train", *args], ["stop"]):
    subprocess.run(["bash", "launch/tpu_pod.sh", *verb], cwd=ROOT, env=env, check=True,
                   timeout=60)
  setup_scp, setup_ssh, train, stop = calls(tmp_path)
  assert setup_scp[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and "scp" in setup_scp
  assert "--worker=all" in setup_scp and "pod:jaxssl.tar.gz" in setup_scp
  for call in (setup_ssh, train, stop):
    assert call[4:6] == ["ssh", "--zone=us-central2-b"] and "--worker=all" in call
  script = "\n".join(setup_ssh[setup_ssh.index("pod") + 2:])
  # The data through gcsfuse, read-only (array_record reads local files); the runs in the bucket.
  assert "jax[tpu]" in script and "gcsfuse --implicit-dirs -o ro bkt /mnt/bkt" in script
  remote = next(c for c in train if c.startswith("--command="))[len("--command="):]
  words = shlex.split(remote)
  assert "TFDS_DATA_DIR=/mnt/bkt/tensorflow_datasets" in words
  assert words[words.index("-m") + 1:] == ["jaxssl.train", "--distributed=on", *args]
  assert "pkill -TERM" in stop[-1]


def test_tpu_pod_driver_skips_gcsfuse_for_a_local_data_dir(tmp_path):
  env = fake_bin(tmp_path, gcloud=RECORD)
  env.update({"TPU_NAME": "pod", "ZONE": "z", "BUCKET": "bkt", "DATA_DIR": "/data/tfds"})
  for verb in (["setup"], ["train", "--workdir", "gs://bkt/runs/a"]):
    subprocess.run(["bash", "launch/tpu_pod.sh", *verb], cwd=ROOT, env=env, check=True,
                   timeout=60)
  _, setup_ssh, train = calls(tmp_path)
  assert "gcsfuse" not in " ".join(setup_ssh) and "jax[tpu]" in " ".join(setup_ssh)
  assert "TFDS_DATA_DIR=/data/tfds" in " ".join(train)


def shipped(setup_scp) -> set[str]:
  """The files in the archive ``setup`` copied to the workers."""
  archive = next(a for a in setup_scp if a.endswith("jaxssl.tar.gz") and ":" not in a)
  with tarfile.open(archive) as tar:
    return {os.path.normpath(m.name) for m in tar.getmembers() if m.isfile()}


def test_tpu_pod_setup_ships_the_checkout_from_git_or_an_unpacked_tree(tmp_path):
  env = fake_bin(tmp_path, gcloud=RECORD)
  env.update({"TPU_NAME": "pod", "ZONE": "z", "BUCKET": "bkt"})
  subprocess.run(["bash", "launch/tpu_pod.sh", "setup"], cwd=ROOT, env=env, check=True,
                 timeout=60)
  tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
  assert shipped(calls(tmp_path)[0]) == set(tracked)
  # An unpacked release (no .git): the tree, less the venv and the runs made there.
  tree = tmp_path / "tree"
  source = ("launch/tpu_pod.sh", "pyproject.toml", "jaxssl/__init__.py")
  for name in (*source, ".venv/bin/python", "runs/a/metrics.jsonl", "jaxssl/__pycache__/x.pyc"):
    (tree / name).parent.mkdir(parents=True, exist_ok=True)
    (tree / name).write_text((ROOT / name).read_text() if name in source else "")
  (tmp_path / "calls.txt").unlink()
  subprocess.run(["bash", "launch/tpu_pod.sh", "setup"], cwd=tree, env=env, check=True,
                 timeout=60)
  assert shipped(calls(tmp_path)[0]) == set(source)


def test_tpu_pod_driver_says_what_is_missing(tmp_path):
  env = fake_bin(tmp_path, gcloud=RECORD)
  env.pop("TPU_NAME", None)
  result = subprocess.run(["bash", "launch/tpu_pod.sh", "train"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode != 0 and "set TPU_NAME" in result.stderr
  assert calls(tmp_path) == []


@pytest.mark.slow
def test_local_multiprocess_stops_the_others_when_one_fails(tmp_path):
  script = ("import os, sys, time\n"
            "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
            "time.sleep(600)\n")
  start = time.monotonic()
  result = subprocess.run(["bash", "launch/local_multiprocess.sh", "-n", "3", "--",
                           sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 3
  assert "a process exited with status 3; stopping the others" in result.stderr
  assert time.monotonic() - start < 60
