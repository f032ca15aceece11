"""Train a tiny run, restore it on other device counts, evaluate it end to end."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxssl import evaluate
from jaxssl.train import checkpoint


def test_run_writes_checkpoints_config_and_metrics(tiny_run):
  assert sorted(int(p.name) for p in (tiny_run / "checkpoints").iterdir()) == [3, 6]
  config = checkpoint.read_config(tiny_run)
  assert config.model.widths == (8, 16) and config.train.steps == 6
  lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [2, 3, 4, 6]  # 3: the evaluators
  assert any(p.name.startswith("events") for p in (tiny_run / "tensorboard").iterdir())


def test_restore_on_one_and_eight_devices_embeds_alike(tiny_run):
  images = np.random.default_rng(0).integers(0, 255, (16, 28, 28, 1), dtype=np.uint8)
  one = evaluate.load_encoder(tiny_run, devices=jax.devices()[:1])
  eight = evaluate.load_encoder(tiny_run, devices=jax.devices())
  assert one.step == eight.step == 6
  np.testing.assert_allclose(one.embed(images), eight.embed(images), rtol=1e-5, atol=1e-6)
  three = evaluate.load_encoder(tiny_run, devices=jax.devices()[:3])  # 64 % 3 != 0
  np.testing.assert_allclose(three.embed(images[:15]), one.embed(images[:15]), rtol=1e-5,
                             atol=1e-6)
  earlier = evaluate.load_encoder(tiny_run, step=3, devices=jax.devices()[:1])
  assert not np.allclose(earlier.embed(images), one.embed(images))


def test_random_encoder_from_a_run_shares_its_data_and_equals_one_from_the_config(tiny_run):
  images = np.random.default_rng(0).integers(0, 255, (16, 28, 28, 1), dtype=np.uint8)
  pretrained = evaluate.load_encoder(tiny_run, devices=jax.devices()[:1])
  fresh = evaluate.random_encoder(tiny_run, devices=jax.devices()[:1])
  shared = evaluate.random_encoder(pretrained.run)
  assert shared.run is pretrained.run and shared.step == fresh.step == 0
  np.testing.assert_array_equal(shared.embed(images), fresh.embed(images))
  assert not np.allclose(shared.embed(images), pretrained.embed(images))
  with pytest.raises(ValueError, match="a Run brings its own devices"):
    evaluate.random_encoder(pretrained.run, devices=jax.devices()[:1])


@pytest.mark.slow
def test_evaluate_writes_the_report(tiny_run, tmp_path):
  summary = evaluate.evaluate(tiny_run, out_dir=tmp_path)
  assert set(summary["results"]) == {"pretrained", "random init"}
  for result in summary["results"].values():
    assert 0.0 <= result["logistic"] <= 1.0 and 1.0 <= result["rankme"] <= result["dim"]
  for name in ("eval.json", "report.md", "spectrum.png", "curves.png", "map.png"):
    assert (tmp_path / name).stat().st_size > 0
  markdown = (tmp_path / "report.md").read_text()
  assert "| pretrained |" in markdown and "![t-SNE map of 100 test features](map.png)" in markdown


def test_missing_and_corrupt_checkpoints_are_reported(tiny_run, tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="not a jaxssl run directory"):
    evaluate.load_encoder(tmp_path)
  shutil.copytree(tiny_run, tmp_path / "run")
  with pytest.raises(checkpoint.CheckpointError, match="No checkpoint for step 5"):
    evaluate.load_encoder(tmp_path / "run", step=5)
  for f in (tmp_path / "run" / "checkpoints" / "6" / "state").rglob("*"):
    if f.is_file() and "manifest" in f.name:
      f.write_bytes(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match="checkpoints/6"):
    evaluate.load_encoder(tmp_path / "run")


def test_a_truncated_array_file_is_named_in_a_short_first_line(tiny_run, tmp_path):
  """TensorStore's useful message (which array, which file, what size) is the first line;
  its long one (a whole TensorStore spec) a paragraph of its own after it."""
  shutil.copytree(tiny_run, tmp_path / "run")
  state = tmp_path / "run" / "checkpoints" / "6" / "state"
  for f in state.glob("ocdbt.process_0/d/*"):
    f.write_bytes(f.read_bytes()[:100])
  with pytest.raises(checkpoint.CheckpointError) as err:
    evaluate.load_encoder(tmp_path / "run")
  first, _, rest = str(err.value).partition("\n")
  assert first.startswith(f"Checkpoint {state.parent} cannot be restored") and len(first) < 500
  assert f'local file "{state}/"' in first and "value of size 100" in first
  assert rest.strip().startswith("The library's full message:")


@pytest.mark.slow
def test_cli_reports_a_missing_run_without_a_traceback(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  result = subprocess.run([sys.executable, "-m", "jaxssl.evaluate", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert "not a jaxssl run directory" in result.stderr
  assert "Traceback" not in result.stderr


def test_reading_a_run_logs_no_orbax_warnings(tiny_run, caplog):
  """Issue 23: every evaluation printed three Orbax read_only warnings."""
  import logging  # pylint: disable=g-import-not-at-top
  with caplog.at_level(logging.WARNING):
    mngr = checkpoint.manager(tiny_run, read_only=True)
    assert mngr.latest_step() is not None
    mngr.close()
  assert not [r for r in caplog.records if "read only" in r.getMessage().lower()
              or "read_only" in r.getMessage()]
