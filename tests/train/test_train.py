"""The train step and loop: every method runs, one compilation, 1 vs 8 devices, configs."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from jaxssl import config as config_lib
from jaxssl import errors, methods
from jaxssl.data import loader, source
from jaxssl.models import onednn
from jaxssl.train import loop, optim, run as run_lib
from tests.conftest import smoke_config


def run_steps(run, steps: int, devices=None):
  """``steps`` train steps of ``run`` from its initial state; the losses and the jitted step."""
  state = run.init_state()
  train_step = run.train_step()
  data = loader.train_dataset(run.train_source, global_batch=run.config.train.global_batch,
                              seed=run.config.seed)
  losses = []
  for i in range(steps):
    state, metrics = train_step(state, loader.to_global(data[i], run.mesh))
    losses.append(float(metrics["loss"]))
  return state, losses, train_step


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_runs_20_steps_on_8_devices_and_compiles_once(name):
  """20 steps on the 8 devices of tests/conftest.py (issue 24: W-MSE used to hang there)."""
  config = smoke_config(None, **{"data.name": "cifar10", "method.name": name})
  config.unlock()
  config.aug = config_lib.vicreg_views(32, config_lib.CIFAR10_STATS)
  config.model.projector = "64-32"
  with tfds.testing.mock_data(num_examples=128):  # (the splits open on first use)
    run = run_lib.Run(config)
    assert run.mesh.size == 8
    _, losses, train_step = run_steps(run, 20)
  assert np.all(np.isfinite(losses)), losses
  assert train_step._cache_size() == 1


@pytest.mark.slow
def test_vicreg_loss_decreases_on_fashion_mnist(fmnist_data_dir):
  config = smoke_config(fmnist_data_dir, **{"optim.lr": 0.5})
  run = run_lib.Run(config)
  _, losses, _ = run_steps(run, 16)
  assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.5, losses


def assert_same_change(before, after, other):
  """``other`` changed every array of ``before`` as ``after`` did, to float32 summation order,
  measured against the largest change in the array: a BatchNorm bias's gradient is a sum over
  the batch that cancels to a small value, so its rounding scales with the terms, not with
  the sum (one such update differed by 7e-4 of its value on an Intel Xeon)."""
  def same(path, old, new, new_other):
    error, scale = np.max(np.abs(new - new_other)), np.max(np.abs(new - old))
    assert error <= 1e-3 * scale + 1e-7, (jax.tree_util.keystr(path), error, scale)
  jax.tree_util.tree_map_with_path(same, before, after, other)


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_step(fmnist_data_dir):
  """Each step, from the same state and batch on 1 and on 8 devices: the same loss and the
  same update of every parameter (``assert_same_change``). Both runs go on from the 1-device
  state, so a step's rounding is not compounded by the next (two steps of this tiny model
  apart amplified differences of 1e-6 up to 2e-5)."""
  config = smoke_config(fmnist_data_dir)
  runs = [run_lib.Run(config, devices=devices) for devices in (jax.devices()[:1], jax.devices())]
  states = [run.init_state() for run in runs]
  data = loader.train_dataset(runs[0].train_source, global_batch=config.train.global_batch,
                              seed=config.seed)
  host = jax.device_get(states[0])  # the 1-device state each step starts from

  for i in range(2):
    (state_1, metrics_1), (state_8, metrics_8) = (
        run.train_step()(state, loader.to_global(data[i], run.mesh))
        for run, state in zip(runs, states))
    np.testing.assert_allclose(float(metrics_1["loss"]), float(metrics_8["loss"]), rtol=1e-5)
    before, host = host, jax.device_get(state_1)
    assert_same_change(before.params, host.params, jax.device_get(state_8.params))
    # Fresh buffers from the host copy: each step donates its state's.
    states = [state_1, jax.tree.map(lambda old, new: jax.device_put(new, old.sharding),
                                    state_8, host)]


@pytest.mark.skipif(onednn.unavailable() is not None,
                    reason=f"model.conv='onednn': {onednn.unavailable()}")
def test_the_onednn_step_equals_the_xla_step_on_8_devices(fmnist_data_dir):
  """The whole train step (views, BatchNorm, loss, LARS) with oneDNN's convolutions, each
  device convolving its share of the batch: the same losses and parameters as lax's."""
  results = []
  for conv in ("onednn", "xla"):
    run = run_lib.Run(smoke_config(fmnist_data_dir, **{"model.conv": conv}))
    initial = jax.device_get(run.init_state().params)
    state, losses, _ = run_steps(run, 3)
    results.append((jax.device_get(state.params), losses))
  (params_onednn, losses_onednn), (params_xla, losses_xla) = results
  np.testing.assert_allclose(losses_onednn, losses_xla, rtol=1e-5)
  # Three steps apart (on a Zen 3 EPYC a BatchNorm bias then differed by 7e-4 of its value).
  assert_same_change(initial, params_xla, params_onednn)


def run_optax(tx, params, grads):
  """``params`` after one ``tx`` update per gradient in ``grads``."""
  p = jax.tree.map(np.asarray, params)
  s = tx.init(p)
  for g in grads:
    updates, s = tx.update(g, s, p)
    p = optax.apply_updates(p, updates)
  return p


def torch_lars_reference(params, grads, lrs, momentum, adapt):
  """The PyTorch LARS loop written out in NumPy: ``adapt(p, g, lr)`` turns the gradient of a
  weight matrix into its update direction (biases and norms, ``ndim <= 1``, keep theirs, as
  ``exclude_bias_and_norm`` does); then momentum, then the learning rate."""
  ref = {k: v.copy() for k, v in params.items()}
  mu = {k: np.zeros_like(v) for k, v in params.items()}
  for lr, g in zip(lrs, grads):
    for k in ref:
      dp = adapt(ref[k], g[k], lr) if ref[k].ndim > 1 else g[k]
      mu[k] = momentum * mu[k] + dp
      ref[k] = ref[k] - lr * mu[k]
  return ref


def test_lars_matches_the_official_update():
  """Two steps of optax LARS against the official PyTorch LARS written out in NumPy."""
  rng = np.random.default_rng(0)
  params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
  grads = [{"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)} for _ in range(2)]
  lrs, wd, momentum, eta = [0.1, 0.3], 1e-2, 0.9, 0.001
  tx = optim.lars(lambda step: np.asarray(lrs)[step], weight_decay=wd, momentum=momentum,
                  eta=eta)
  p = run_optax(tx, params, grads)

  def adapt(w, g, lr):
    del lr
    dp = g + wd * w
    return dp * eta * np.linalg.norm(w) / np.linalg.norm(dp)

  ref = torch_lars_reference(params, grads, lrs, momentum, adapt)
  for k in ref:
    np.testing.assert_allclose(p[k], ref[k], rtol=1e-5)


def test_clipped_lars_matches_solo_learn():
  """Two steps of the clipped trust ratio (solo-learn's LARS with clip_lr, the CIFAR recipes)
  against its PyTorch update written out in NumPy."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  params = {"w": rng.normal(size=(5, 4)), "b": rng.normal(size=4)}
  grads = [{"w": rng.normal(size=(5, 4)) * s, "b": rng.normal(size=4)} for s in (1e-3, 10.0)]
  cfg = ml_collections.ConfigDict(dict(
      name="lars", lr=0.3, scale_lr_by_batch=False, weight_decay=1e-4, momentum=0.9, eta=0.02,
      clip_trust_ratio=True, bias_lr=None, warmup_epochs=1.0, end_lr_factor=0.0,
      clip_norm=None))
  tx = optim.make_optimizer(cfg, global_batch=256, total_steps=4, steps_per_epoch=2)
  schedule = optim.learning_rate(cfg, global_batch=256, total_steps=4, steps_per_epoch=2)
  p = run_optax(tx, params, grads)

  def adapt(w, g, lr):
    p_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
    lars_lr = cfg.eta * p_norm / (g_norm + p_norm * cfg.weight_decay + 1e-8)
    lars_lr = min(lars_lr / lr, 1.0) if lr > 0 else 1.0
    return (g + cfg.weight_decay * w) * lars_lr

  lrs = [float(schedule(step)) for step in range(len(grads))]
  ref = torch_lars_reference(params, grads, lrs, cfg.momentum, adapt)
  for k in ref:
    np.testing.assert_allclose(p[k], ref[k], rtol=1e-5)
  assert not np.allclose(p["w"], params["w"])


def test_bias_lr_scales_only_biases_and_norms():
  import ml_collections  # pylint: disable=g-import-not-at-top
  params = {"w": np.ones((3, 2)), "b": np.ones(2)}
  grads = {"w": np.full((3, 2), 0.5), "b": np.full(2, 0.5)}
  updates = []
  for bias_lr in (None, 0.0048):
    cfg = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.2, scale_lr_by_batch=False, weight_decay=0.0, momentum=0.0, eta=0.0,
        clip_trust_ratio=False, bias_lr=bias_lr, warmup_epochs=0.0, end_lr_factor=1.0,
        clip_norm=None))
    tx = optim.make_optimizer(cfg, global_batch=256, total_steps=2, steps_per_epoch=1)
    updates.append(tx.update(grads, tx.init(params), params)[0])
  plain, split = updates
  np.testing.assert_allclose(plain["w"], -0.2 * 0.5)
  np.testing.assert_allclose(split["w"], plain["w"])
  np.testing.assert_allclose(split["b"], -0.0048 * 0.5, rtol=1e-6)


def test_clip_norm_and_the_vit_parameters_kept_out_of_weight_decay():
  params = {"backbone": {"pos_embedding": np.ones((1, 5, 4)), "cls": np.ones((1, 1, 4)),
                         "embedding": {"kernel": np.ones((2, 2, 1, 4)), "bias": np.ones(4)}}}
  mask = optim.decay_mask(params)["backbone"]
  assert (mask["pos_embedding"], mask["cls"], mask["embedding"]["bias"]) == (False,) * 3
  assert mask["embedding"]["kernel"]
  c = config_lib.base_config().optim
  c.update(name="sgd", lr=1.0, scale_lr_by_batch=False, momentum=0.0, weight_decay=0.0,
           warmup_epochs=0.0, end_lr_factor=1.0, clip_norm=2.0)
  tx = optim.make_optimizer(c, global_batch=256, total_steps=2, steps_per_epoch=1)
  grads = {"w": np.full((2, 2), 3.0), "b": np.full(2, 3.0)}  # global norm sqrt(54)
  updates = tx.update(grads, tx.init(grads), grads)[0]
  np.testing.assert_allclose(optax.tree.norm(updates), 2.0, rtol=1e-6)


FASHION_MNIST_INFO = source.SplitInfo("fashion_mnist_idx", "train", 60000, (28, 28, 1), 10)


@pytest.mark.parametrize("key,value,match", [
    ("method.name", "simclr", "config.method.name"),
    ("optim.name", "lamb", "config.optim.name"),
    ("optim.lr", -1.0, "config.optim.lr"),
    ("model.projector", "64-x", "config.model.projector"),
    ("model.dtype", "float16", "config.model.dtype"),
    ("model.stem", "tiny", "config.model.stem"),
    ("train.global_batch", 12, "config.train.global_batch.*device count"),
    ("train.log_every", 0, "config.train.log_every"),
    ("model.backbone", "vgg", "config.model.backbone"),
    ("eval.crop_fraction", 1.5, "config.eval.crop_fraction"),
    ("model.vit.heads", 5, r"config.model.vit.heads: must divide the width \(384\)"),
    ("model.vit.pool", "map", "config.model.vit.pool"),
    ("model.vit.patch", 5, r"config.model.vit.patch: must divide the image side \(28"),
    ("model.vit.drop_path", 1.0, "config.model.vit.drop_path"),
    ("train.state_sharding", "zero3", "config.train.state_sharding"),
    ("optim.clip_norm", -1.0, "config.optim.clip_norm"),
])
def test_building_a_bad_config_names_the_key(key, value, match):
  """The builder is the validation: one ConfigError (a UserError) naming the key."""
  config = smoke_config(None)
  *parents, name = key.split(".")
  section = config
  for parent in parents:
    section = section[parent]
  section[name] = value
  if key == "model.stem":
    config.model.backbone = "resnet18"
  if key.startswith("model.vit"):
    config.model.backbone = "vit"
    config.model.vit.patch = value if key == "model.vit.patch" else 7  # (28x28 images)
  with pytest.raises(errors.ConfigError, match=match):
    run_lib.Run(config, info=FASHION_MNIST_INFO)


def test_a_batch_larger_than_the_split_is_a_config_error_before_any_work(fmnist_data_dir):
  config = smoke_config(fmnist_data_dir, **{"train.global_batch": 1024})  # the split: 512
  with pytest.raises(errors.ConfigError, match=r"train.global_batch.*512 examples"):
    run_lib.Run(config)


def test_unknown_method_kwargs_name_the_key():
  config = smoke_config(None)
  config.method.kwargs = {"sim_coef": 1.0}
  with pytest.raises(errors.ConfigError, match=r"method.kwargs.*sim_coef.*sim_coeff"):
    run_lib.Run(config, info=FASHION_MNIST_INFO)


def test_every_keyword_of_every_method_is_a_config_key():
  keys = set(config_lib.base_config().method.kwargs)
  for method in methods.METHODS.values():
    assert set(method.keywords()) <= keys, method.name


@pytest.mark.parametrize("config_file", ["vicreg_fashion_mnist.py", "vicreg_cifar.py"])
def test_command_line_sets_a_method_keyword_the_file_did_not_list(config_file):
  """The README's ``--config.method.kwargs.sim_coeff=25.0`` (an AttributeError before)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ["prog", f"--config=configs/{config_file}", "--config.method.kwargs.sim_coeff=25.0",
          "--config.method.kwargs.cov_coeff=2"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  config = values.config
  assert methods.get_method("vicreg").kwargs(config.method.kwargs) == {"sim_coeff": 25.0,
                                                                       "cov_coeff": 2.0}


def test_a_keyword_the_method_does_not_take_is_a_config_error():
  config = smoke_config(None, **{"method.name": "barlow_twins"})
  config.method.kwargs.sim_coeff = 25.0
  with pytest.raises(errors.ConfigError,
                     match=r"method.kwargs sets \['sim_coeff'\].*'barlow_twins'.*lambd"):
    run_lib.Run(config, info=FASHION_MNIST_INFO)


def test_wmse_on_a_wide_embedding_is_a_config_error_before_any_work():
  """Issue 23: the Fashion-MNIST default switched to W-MSE failed at the first step."""
  config = config_lib.load("configs/vicreg_fashion_mnist.py")
  config.method.name = "wmse"
  with pytest.raises(errors.ConfigError, match=r"method.kwargs.w_size.*1024"):
    run_lib.Run(config, info=FASHION_MNIST_INFO)


@pytest.mark.parametrize("override", ["--config.optim.nosuch=1",
                                      "--config.method.kwargs.sim_coef=1"])
@pytest.mark.slow
def test_cli_rejects_an_unknown_key_in_one_paragraph(tmp_path, override):
  result = subprocess.run(
      [sys.executable, "-m", "jaxssl.train", "--config", "configs/vicreg_fashion_mnist.py:smoke",
       "--workdir", str(tmp_path), override],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
  assert override.split("=")[0] in result.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_cli_reports_a_user_error_in_one_paragraph(tmp_path, fmnist_data_dir):
  """Every UserError, caught once by the command line: here a batch larger than the split."""
  result = subprocess.run(
      [sys.executable, "-m", "jaxssl.train", "--config", "configs/vicreg_fashion_mnist.py:smoke",
       "--workdir", str(tmp_path), f"--config.data.data_dir={fmnist_data_dir}",
       "--config.train.global_batch=1024"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  assert result.stderr.startswith("error: config.train.global_batch: 1024 is larger")
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_dataset_of_varying_image_sizes_trains_with_host_crops(monkeypatch, tmp_path):
  """ImageNet-style data (JPEG bytes of varying sizes): the host decodes and crops both
  views, the device runs the photometric ops, evaluation centre-crops; the whole loop runs,
  checkpoints and resumes to the same state."""
  from jaxssl.data import source  # pylint: disable=g-import-not-at-top
  from tests.data.test_decode import JpegSource  # pylint: disable=g-import-not-at-top
  splits = {"train": JpegSource(64, seed=0), "validation": JpegSource(20, seed=1)}

  def open_split(name, split, **kwargs):
    del kwargs
    return splits[split], source.SplitInfo(name, split, len(splits[split]), (None, None, 3),
                                           10)
  monkeypatch.setattr(source, "open_split", open_split)
  config = smoke_config(None, **{"data.name": "imagenet_like", "data.in_memory": False,
                                 "data.eval_split": "validation", "train.global_batch": 16,
                                 "train.steps": 4, "train.checkpoint_every": 2,
                                 "train.eval_every": 2, "eval.batch": 8})
  config.unlock()
  config.aug = config_lib.vicreg_views(32, config_lib.IMAGENET_STATS)
  run = run_lib.Run(config)
  assert run.host_crops is not None and run.eval_transform is not None
  batch = next(run.train_iterator())
  assert batch["view_a"].shape == batch["view_b"].shape == (16, 32, 32, 3)
  scalars = loop.train(config, tmp_path / "a")
  assert np.isfinite(scalars["loss"]) and 0 <= scalars["head/val_accuracy"] <= 1
  # Stop after step 2 and resume: the host crops are a function of (seed, step).
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
  resumed = loop.train(config, tmp_path / "b")
  assert resumed["loss"] == scalars["loss"]


def test_a_cpu_run_without_huge_pages_says_how_to_get_them(monkeypatch):
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
  assert loop.allocator_note("cpu") is None  # asked for already (launch/_cpu.sh)
  monkeypatch.delenv("GLIBC_TUNABLES")
  assert loop.allocator_note("gpu") is None  # the host's allocator is not the step's there
  libc, version = loop.platform.libc_ver()
  if libc != "glibc" or tuple(map(int, version.split(".")[:2])) < (2, 35):
    pytest.skip(f"glibc 2.35+ has the tunable; this is {libc} {version}")
  note = loop.allocator_note("cpu")
  pages = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")
  if not pages.exists() or "[never]" in pages.read_text():
    assert note is None  # no huge pages on offer here
  else:
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in note and "launch/_cpu.sh" in note
