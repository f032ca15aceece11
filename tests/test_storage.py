"""Runs in a bucket: ``gs://`` workdirs against a real GCS API (fake-gcs-server, started and
stopped here). Training, a SIGKILL during a save, resume, evaluation and a two-process
collective checkpoint, all against the emulator; the refusals of what cannot work (a missing
bucket, no credentials, another URL scheme, a gs:// data dir) before anything is written."""

import json
import os
import pathlib
import signal
import subprocess
import sys
from unittest import mock

import jax
import numpy as np
import pytest
from etils import epath

from jaxssl import errors, storage, watchdog
from jaxssl.data import source
from jaxssl.train import checkpoint, metrics, run as run_lib
from tests.gcs_emulator import Emulator
from tests.train.test_resume import KILL_IN_SAVE  # dies once a save has started

ROOT = pathlib.Path(__file__).parents[1]
STEPS, EVERY = 24, 8


@pytest.fixture(scope="module")
def gcs():
  """The emulator, with bucket ``bkt``, as this process's GCS too (the environment restored
  whole afterwards, the variables ``connect_emulator`` derives included)."""
  with Emulator() as emulator, mock.patch.dict(os.environ, emulator.env):
    emulator.create_bucket("bkt")
    for key in (storage.TENSORSTORE_ENV, "GOOGLE_AUTH_TOKEN_FOR_TESTING"):
      os.environ.pop(key, None)  # derived from the emulator's address below
    storage.connect_emulator()
    storage._checked.cache_clear()  # pylint: disable=protected-access
    yield emulator
  storage._checked.cache_clear()  # pylint: disable=protected-access


def command(workdir, data_dir, *overrides):
  return [sys.executable, "-m", "jaxssl.train", "--config",
          f"{ROOT}/configs/vicreg_fashion_mnist.py:smoke", "--workdir", str(workdir),
          f"--config.data.data_dir={data_dir}", f"--config.train.steps={STEPS}",
          "--config.train.global_batch=128", "--config.train.log_every=1",
          f"--config.train.checkpoint_every={EVERY}", "--config.train.eval_every=1000",
          "--config.train.keep_checkpoints=10", *overrides]


def run(args, gcs, timeout=300, **env):
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **gcs.env, **env})


def logged(workdir) -> dict[int, dict]:
  path = epath.Path(workdir) / "metrics.jsonl"
  return {m["step"]: m for m in map(json.loads, path.read_text().splitlines())}


def complete_steps(workdir) -> list[int]:
  directory = epath.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir()
                if p.name.isdigit() and (p / "commit_success.txt").exists())


def final_variables(workdir):
  from jaxssl import evaluate  # pylint: disable=g-import-not-at-top
  return jax.device_get(evaluate.load_encoder(workdir, devices=jax.devices()[:1]).variables)


# --- paths, checks and writers (fast) -------------------------------------------------------


def test_local_paths_resolve_to_absolute_paths(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.resolve("runs/a") == epath.Path(tmp_path / "runs" / "a")
  assert storage.scheme("runs/a") is None and storage.scheme("gs://b/x") == "gs"


@pytest.mark.parametrize("url, message", [
    ("s3://bkt/run", "not s3://"),
    ("gs:///run", "no bucket named"),
])
def test_unusable_urls_are_refused_with_what_to_do(url, message):
  with pytest.raises(errors.CheckpointError, match=message):
    storage.resolve(url)


def test_a_missing_bucket_is_refused_naming_it(gcs):
  with pytest.raises(errors.CheckpointError) as err:
    storage.resolve("gs://no-such-bucket/runs/a")
  assert "gs://no-such-bucket does not exist" in str(err.value)
  assert "gcloud storage buckets create gs://no-such-bucket" in str(err.value)


def test_no_credentials_are_refused_before_any_request(monkeypatch, tmp_path):
  for key in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
    monkeypatch.delenv(key, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud credentials file
  monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
  monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on a Google Cloud VM (offline here)
  storage._checked.cache_clear()  # pylint: disable=protected-access
  with pytest.raises(errors.CheckpointError) as err:
    storage.resolve("gs://bkt/runs/a")
  storage._checked.cache_clear()  # pylint: disable=protected-access
  assert "no Google Cloud credentials" in str(err.value)
  assert "gcloud auth application-default login" in str(err.value)
  assert "Nothing was written" in str(err.value)


def test_the_advice_to_move_a_bad_checkpoint_fits_the_store():
  assert storage.move_command(epath.Path("/r/checkpoints/8"), epath.Path("/r/bad_8")) == (
      "mv /r/checkpoints/8 /r/bad_8")
  assert storage.move_command(epath.Path("gs://b/r/checkpoints/8"),
                              epath.Path("gs://b/r/bad_8")) == (
      "gcloud storage mv gs://b/r/checkpoints/8 gs://b/r/bad_8")


def test_data_is_read_from_a_bucket(gcs, fmnist_data_dir, tmp_path):
  """A TFDS array_record data dir, a packed folder and a folder of files, each read from
  gs:// (array_record's own reader, and gcsfs for the files): the same records as locally."""
  import fsspec  # pylint: disable=g-import-not-at-top
  from tests.data.test_folder import data_config, make_digits, open_role  # pylint: disable=g-import-not-at-top
  from jaxssl.data import pack  # pylint: disable=g-import-not-at-top
  fs = fsspec.filesystem("gs")
  fs.put(fmnist_data_dir, "bkt/tfds", recursive=True)
  local, _ = source.open_split("fashion_mnist_idx", "test", data_dir=fmnist_data_dir)
  remote, info = source.open_split("fashion_mnist_idx", "test", data_dir="gs://bkt/tfds")
  assert len(remote) == len(local) == info.num_examples
  for i in (0, 7, len(local) - 1):
    np.testing.assert_array_equal(remote[i]["image"], local[i]["image"])
  make_digits(tmp_path / "imgs", 40, np.random.default_rng(0))
  pack.pack(str(tmp_path / "imgs"), "gs://bkt/packed", cache_dir=str(tmp_path / "idx"))
  fs.put(str(tmp_path / "imgs"), "bkt/raw", recursive=True)
  direct, direct_info, _ = open_role(data_config(tmp_path / "imgs"), "train")
  for path in ("gs://bkt/packed", "gs://bkt/raw"):
    data = data_config(tmp_path / "x")
    data.path = path
    got, got_info, _ = open_role(data, "train")
    assert got.paths == direct.paths and got_info.num_classes == direct_info.num_classes == 4
    assert [got[i]["image"] for i in (0, 5)] == [direct[i]["image"] for i in (0, 5)]


def test_a_bucket_data_path_without_credentials_is_refused(monkeypatch, tmp_path):
  for key in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
    monkeypatch.delenv(key, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
  monkeypatch.setenv("NO_GCE_CHECK", "True")
  from jaxssl.data import folder  # pylint: disable=g-import-not-at-top
  storage._checked.cache_clear()  # pylint: disable=protected-access
  with pytest.raises(errors.UserError, match="config.data.path gs://bkt/imgs: no Google Cloud "
                                             "credentials"):
    folder.resolve("gs://bkt/imgs", "data.path")
  storage._checked.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_the_metrics_log_drops_lines_after_the_checkpoint_and_rewrites_in_place(gcs, tmp_path,
                                                                               where):
  workdir = epath.Path(tmp_path) if where == "local" else epath.Path("gs://bkt/logs/a")
  path = workdir / metrics.METRICS_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4))
                  + '{"step": 5, "lo')  # a line cut short by a crash
  assert [r["step"] for r in metrics.read(workdir)] == [1, 2, 3, 4]  # (the evaluation report)
  log = metrics.JsonLines(path, keep_through=2)
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
  log.write({"step": 3, "loss": 1.0})
  log.write({"step": 4, "loss": 0.5})
  # Readable while the run goes on (the object rewritten whole at each write in a bucket).
  assert [json.loads(line) for line in path.read_text().splitlines()][2:] == [
      {"step": 3, "loss": 1.0}, {"step": 4, "loss": 0.5}]
  log.close()


def test_the_watchdog_report_is_written_to_a_bucket(gcs):
  watchdog._write_report("gs://bkt/runs/w/stalled.process0.txt", "stacks")  # pylint: disable=protected-access
  assert epath.Path("gs://bkt/runs/w/stalled.process0.txt").read_text() == "stacks"


# --- whole runs against the emulator (slow) ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e  # in the README's test command: one real run of this kind
def test_train_sigkill_in_a_save_resume_and_evaluate_in_a_bucket(gcs, fmnist_data_dir):
  reference, workdir = "gs://bkt/runs/uninterrupted", "gs://bkt/runs/killed"
  result = run(command(reference, fmnist_data_dir), gcs)
  assert result.returncode == 0, result.stderr[-3000:]
  assert complete_steps(reference) == [EVERY, 2 * EVERY, STEPS]
  assert epath.Path(f"{reference}/config.json").exists()
  assert list(epath.Path(f"{reference}/tensorboard").glob("events.out.tfevents.*"))

  args = command(workdir, fmnist_data_dir)
  killed = run([sys.executable, "-c", KILL_IN_SAVE.format(step=2 * EVERY), *args[3:]], gcs)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  # The save cut short left objects under checkpoints/16 but no commit marker: not a checkpoint.
  assert complete_steps(workdir) == [EVERY]
  result = run(args, gcs)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {workdir}/checkpoints/{EVERY}" in result.stdout
  # Bit-identical to the uninterrupted run: every logged loss and the final parameters.
  assert sorted(logged(workdir)) == list(range(1, STEPS + 1))
  assert ({s: m["loss"] for s, m in logged(workdir).items()} ==
          {s: m["loss"] for s, m in logged(reference).items()})
  jax.tree.map(np.testing.assert_array_equal, final_variables(workdir),
               final_variables(reference))

  # init_from a checkpoint in the bucket starts another workdir there from it.
  source = f"{reference}/checkpoints/{2 * EVERY}"
  result = run(command("gs://bkt/runs/from", fmnist_data_dir, f"--config.init_from={source}"),
               gcs)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Initialised from {source}" in result.stdout
  assert sorted(logged("gs://bkt/runs/from")) == list(range(2 * EVERY + 1, STEPS + 1))

  result = run([sys.executable, "-m", "jaxssl.evaluate", "--workdir", workdir,
                "--examples=256,128", "--evals=knn,ridge"], gcs)
  assert result.returncode == 0, result.stderr[-3000:]
  report = epath.Path(workdir) / "eval"
  assert json.loads((report / "eval.json").read_text())["step"] == STEPS
  for name in ("report.md", "spectrum.png", "curves.png"):
    assert (report / name).exists(), name


@pytest.mark.slow
def test_two_processes_write_one_checkpoint_to_a_bucket(gcs, fmnist_data_dir, tmp_path):
  from tests.test_distributed import free_port  # pylint: disable=g-import-not-at-top
  workdir = "gs://bkt/runs/two"
  args = command(workdir, fmnist_data_dir, "--config.train.steps=6",
                 "--config.train.checkpoint_every=3", "--config.train.global_batch=64")
  port = free_port()
  procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={
                                **os.environ, **gcs.env, "JAX_PLATFORMS": "cpu",
                                "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
                                "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
           for i in range(2)]
  outputs = [p.communicate(timeout=400) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
  assert complete_steps(workdir) == [3, 6]
  data = epath.Path(workdir) / "checkpoints" / "6" / "data"
  assert sorted(p.name for p in data.glob("process_*.json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  # The same run on one process and 8 devices, on a local disk.
  local = tmp_path / "one"
  result = run(command(local, fmnist_data_dir, "--config.train.steps=6",
                       "--config.train.checkpoint_every=3", "--config.train.global_batch=64"),
               gcs)
  assert result.returncode == 0, result.stderr[-3000:]
  for step in range(1, 7):
    np.testing.assert_allclose(logged(workdir)[step]["loss"], logged(local)[step]["loss"],
                               rtol=1e-4)
  config = checkpoint.read_config(workdir)
  abstract = run_lib.Run(config, training=False).abstract_state()
  states = []
  for where in (workdir, local):
    mngr = checkpoint.manager(where, read_only=True)
    try:
      states.append(jax.device_get(checkpoint.restore(mngr, abstract)))
    finally:
      mngr.close()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               states[0].params, states[1].params)


@pytest.mark.slow
@pytest.mark.parametrize("workdir, message", [
    ("gs://no-such-bucket/runs/a", "gs://no-such-bucket does not exist"),
    ("s3://bkt/runs/a", "not s3://"),
])
def test_the_trainer_refuses_unusable_workdirs_and_writes_nothing(gcs, fmnist_data_dir,
                                                                  tmp_path, workdir, message):
  result = subprocess.run(command(workdir, fmnist_data_dir), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **gcs.env,
                                                       "PYTHONPATH": str(ROOT)})
  assert result.returncode == 1, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1 and message in lines[0] and workdir in lines[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert list(tmp_path.iterdir()) == []  # no local "gs:" or "s3:" directory either
  assert gcs.objects("bkt/runs/a") == []
