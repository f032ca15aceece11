"""ViT backbones through the whole stack: the recipes take real steps in smoke form, 8
devices equal one, FSDP-sharded state equals the replicated one at 1/devices of its memory
per device, a SIGKILL'd ViT run resumes bit-identically, and its checkpoint restores on
another device count and runs every evaluator."""

import os
import signal

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxssl import config as config_lib
from jaxssl import evaluate
from jaxssl.data import loader, source
from jaxssl.train import run as run_lib
from tests.conftest import smoke_config
from tests.train import test_resume
from tests.train.test_configs import load
from tests.train.test_train import run_steps

TINY_VIT = {"model.backbone": "vit"}


def tiny_vit(data_dir, **overrides):
  c = smoke_config(data_dir, **TINY_VIT, **overrides)
  c.unlock()
  c.model.vit.update(width=32, depth=2, mlp_dim=64, heads=2, patch=7, drop_path=0.1)
  return c


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", [("vicreg_imagenet", "vit_s16"),
                                      ("vicreg_imagenet", "vit_b16"),
                                      ("barlow_twins_imagenet", "vit_s16"),
                                      ("barlow_twins_imagenet", "vit_b16"),
                                      ("vicreg_fashion_mnist", "vit")])
def test_vit_recipes_take_real_steps_in_smoke_form(name, arg, monkeypatch, fmnist_data_dir):
  c = load(name, f"{arg},smoke")
  assert c.model.backbone == "vit" and c.model.vit.depth == 2  # the recipe's ViT, shrunk
  if c.data.name == "imagenet2012":
    from tests.data.test_decode import JpegSource  # pylint: disable=g-import-not-at-top
    data = JpegSource(16)
    monkeypatch.setattr(source, "open_split", lambda name, split, **_: (
        data, source.SplitInfo(name, split, len(data), (None, None, 3), 1000)))
    c.train.global_batch = 16
  else:
    c.data.data_dir = fmnist_data_dir
  run = run_lib.Run(c)
  state, step, batches = run.init_state(), run.train_step(), run.train_iterator()
  losses = []
  for _ in range(2):  # (the host decodes and crops the JPEGs)
    state, metrics = step(state, loader.to_global(next(batches), run.mesh))
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)), losses
  assert step._cache_size() == 1
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))


def test_vit_recipes_use_the_transformer_optimiser():
  c = load("vicreg_imagenet", "vit_b16")
  assert (c.model.vit.width, c.model.vit.depth, c.model.vit.patch) == (768, 12, 16)
  assert (c.optim.name, c.optim.weight_decay, c.optim.clip_norm) == ("adamw", 0.05, 3.0)
  assert c.model.dtype == "bfloat16"
  assert load("barlow_twins_imagenet", "vit_s16").optim.bias_lr is None
  with pytest.raises(config_lib.ConfigError, match="one ViT switch"):
    load("vicreg_imagenet", "vit_s16,vit_b16")


@pytest.mark.slow
def test_vit_on_eight_devices_and_fsdp_equal_one_replicated_device(fmnist_data_dir):
  results = {}
  for label, devices, sharding in (("1", jax.devices()[:1], "replicated"),
                                   ("8", jax.devices(), "replicated"),
                                   ("8 fsdp", jax.devices(), "fsdp")):
    c = tiny_vit(fmnist_data_dir, **{"train.state_sharding": sharding,
                                     "train.fsdp_min_mb": 0.0})
    state, losses, _ = run_steps(run_lib.Run(c, devices=devices), 3)
    results[label] = (jax.device_get(state.params), losses, state)
  sharded = results["8 fsdp"][2].params["backbone"]["Transformer"]["encoderblock_0"]
  assert sharded["MlpBlock_0"]["Dense_0"]["kernel"].sharding.spec == P(None, "data")
  for label in ("8", "8 fsdp"):
    np.testing.assert_allclose(results[label][1], results["1"][1], rtol=1e-5)
    chex.assert_trees_all_close(results[label][0], results["1"][0], rtol=2e-4, atol=2e-5)


def state_bytes_per_device(c, devices) -> tuple[int, int]:
  """(the state's bytes on one device, per the compiled step's memory analysis; the state's
  total bytes)."""
  run = run_lib.Run(c, devices=devices)
  state = run.abstract_state()
  batch = {"image": jax.ShapeDtypeStruct((c.train.global_batch, 28, 28, 1), np.uint8),
           "label": jax.ShapeDtypeStruct((c.train.global_batch,), np.int32)}
  analysis = run.train_step().lower(state, batch).compile().memory_analysis()
  batch_bytes = c.train.global_batch * (28 * 28 + 4) // len(devices)
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  return analysis.argument_size_in_bytes - batch_bytes, total


def test_fsdp_state_memory_per_device_falls_as_one_over_devices(fmnist_data_dir):
  c = tiny_vit(fmnist_data_dir, **{"train.state_sharding": "fsdp", "train.fsdp_min_mb": 0.0})
  c.model.vit.update(width=128, mlp_dim=512, heads=4)
  c.model.projector = "512-512"
  for n in (1, 2, 4, 8):
    per_device, total = state_bytes_per_device(c, jax.devices()[:n])
    # Everything whose largest axis the device count divides is split; what is left (the
    # step counters, 2-wide biases) is under 1% of the state.
    assert total / n <= per_device <= total / n + 0.01 * total, (n, per_device, total)
  c.train.state_sharding = "replicated"
  per_device, total = state_bytes_per_device(c, jax.devices())
  assert per_device == total


@pytest.fixture(scope="module")
def vit_reference(fmnist_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vit_uninterrupted")
  result = test_resume.run(workdir, fmnist_data_dir, *VIT_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, test_resume.final(workdir)


# A tiny ViT with stochastic depth (the step's dropout keys) and FSDP-sharded state.
VIT_FLAGS = ["--config.model.backbone=vit", "--config.model.vit.width=32",
             "--config.model.vit.depth=2", "--config.model.vit.mlp_dim=64",
             "--config.model.vit.heads=2", "--config.model.vit.patch=7",
             "--config.model.vit.drop_path=0.1", "--config.train.state_sharding=fsdp",
             "--config.train.fsdp_min_mb=0"]


@pytest.mark.slow
def test_sigkilled_vit_run_resumes_bit_identically(vit_reference, fmnist_data_dir, tmp_path):
  proc = test_resume.start_and_wait(tmp_path, fmnist_data_dir, 2 * test_resume.EVERY + 3,
                                    *VIT_FLAGS)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert test_resume.logged_steps(tmp_path)[-1]["step"] < test_resume.STEPS
  result = test_resume.run(tmp_path, fmnist_data_dir, *VIT_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from" in result.stdout
  # (final() restores the 8-device FSDP checkpoint on one device)
  test_resume.assert_same_run(tmp_path, vit_reference[1])


@pytest.mark.slow
def test_vit_checkpoint_runs_every_evaluator_on_another_device_count(vit_reference, tmp_path):
  workdir = vit_reference[0]
  encoder = evaluate.load_encoder(workdir, devices=jax.devices()[:2])
  backbone = encoder.variables["params"]["backbone"]
  assert backbone["Transformer"]["encoder_norm"]["scale"].shape == (32,)
  summary = evaluate.evaluate(
      workdir, out_dir=tmp_path, random_baseline=False,
      chosen=["logistic", "ridge", "knn", "rankme", "linear", "finetune_1", "finetune_10"])
  results = summary["results"]["pretrained"]
  for name in ("logistic", "ridge", "knn", "linear", "finetune_1", "finetune_10"):
    assert 0 <= results[name] <= 1, (name, results)
  assert results["rankme"] >= 1
  assert os.path.exists(tmp_path / "report.md")
