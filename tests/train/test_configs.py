"""Every file under configs/: loads, validates, builds its model at the recipe's full size
(traced at shape, parameter counts against the published architectures), and runs real steps
in its smoke form; the full CIFAR ResNet-18 recipe runs one real step."""

import pathlib

import jax
import numpy as np
import pytest

from jaxssl import config as config_lib
from jaxssl.data import source
from jaxssl.train import run as run_lib
from tests.train.test_train import run_steps

CONFIG_DIR = pathlib.Path(__file__).parents[2] / "configs"
# Each config file with the switch combinations it is tested with.
CONFIGS = {
    "vicreg_fashion_mnist": [None, "vit"],
    "barlow_twins_fashion_mnist": [None],
    "wmse_fashion_mnist": [None],
    "corinfomax_fashion_mnist": [None],
    "info_vicreg_fashion_mnist": [None, "pairdist"],
    "vcreg_fashion_mnist": [None, "plain"],
    "vicreg_cifar": [None, "cifar100"],
    "barlow_twins_cifar": [None, "cifar100"],
    "wmse_cifar": [None, "cifar100"],
    "corinfomax_cifar": [None, "cifar100"],
    "info_vicreg_cifar": [None, "cifar100,pairdist"],
    "vicreg_imagenet": [None, "vit_s16", "vit_b16"],
    "barlow_twins_imagenet": [None, "vit_s16", "vit_b16"],
    "corinfomax_imagenet": [None],
    "vicreg_folder": [None, "cpu"],
    "vicreg_imagenet100": [None],
    "barlow_twins_imagenet100": [None],
}
SPLITS = {  # what the named datasets hold: (train examples, image shape, classes)
    "fashion_mnist_idx": (60000, (28, 28, 1), 10),
    "cifar10_bin": (50000, (32, 32, 3), 10),
    "cifar100_bin": (50000, (32, 32, 3), 100),
    "imagenet2012": (1281167, (None, None, 3), 1000),
    "folder": (100000, (None, None, 3), 10),  # a labeled folder of one's own images
    "imagenet100": (126689, (None, None, 3), 100),
}
# Backbone parameter counts without the classifier: torchvision's resnet50 (25,557,032 with
# its 2048x1000 fc), the CIFAR ResNet-18 (3x3 stem, no max-pool) of solo-learn, and timm's
# vit_small_patch16_224 / vit_base_patch16_224 (22,050,664 / 86,567,656 with their heads).
BACKBONE_PARAMS = {("resnet50", "imagenet"): 23_508_032, ("resnet18", "cifar"): 11_168_832,
                   ("resnet18", "imagenet"): 11_176_512,  # torchvision's, less its fc
                   ("vit", 384, 16): 22_050_664 - 385_000,
                   ("vit", 768, 16): 86_567_656 - 769_000}


def backbone_key(c) -> tuple:
  if c.model.backbone == "vit":
    return ("vit", c.model.vit.width, c.model.vit.patch)
  return (c.model.backbone, c.model.stem)
CASES = [(name, arg) for name, args in CONFIGS.items() for arg in args]
# The ResNet-50 ones take 7-11 s each to trace on this CPU: in the slow part.
FULL_SIZE_CASES = [pytest.param(name, arg, marks=pytest.mark.slow) if "imagenet" in name
                   else (name, arg) for name, arg in CASES]


def load(name: str, arg: str | None):
  return config_lib.load(f"{CONFIG_DIR / name}.py" + (f":{arg}" if arg else ""))


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_every_config_file_is_covered():
  assert sorted(p.stem for p in CONFIG_DIR.glob("*.py")) == sorted(CONFIGS)


@pytest.mark.parametrize("name,arg", FULL_SIZE_CASES)
def test_full_size_config_validates_and_traces(name, arg):
  c = load(name, arg)
  examples, shape, classes = SPLITS[c.data.name]
  r = run_lib.Run(c, info=source.SplitInfo(c.data.name, c.data.train_split, examples, shape,
                                           classes))
  assert r.mesh.size == 8
  state = r.abstract_state()
  key = backbone_key(c)
  if key in BACKBONE_PARAMS:
    assert count(state.params["backbone"]) == BACKBONE_PARAMS[key]
  step = r.train_step()
  batch_shape = (c.train.global_batch, *r.image_shape[:2], shape[-1])
  batch = {"image": jax.ShapeDtypeStruct(batch_shape, np.uint8),
           "label": jax.ShapeDtypeStruct((c.train.global_batch,), np.int32)}
  new_state, metrics = jax.eval_shape(step, state, batch)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state)
  assert metrics["loss"].shape == ()
  widths = [int(w) for w in c.model.projector.split("-")]
  last = state.params["projector"][f"Dense_{len(widths) - 1}"]["kernel"]
  assert last.shape[-1] == widths[-1]  # the embedding width the method's loss sees
  assert state.params["head"]["kernel"].shape[1] == classes
  assert r.total_steps == int(c.train.epochs * (examples // c.train.global_batch))


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", [c for c in CASES if c[0].endswith("_fashion_mnist")])
def test_fashion_mnist_recipes_train_in_smoke_form(name, arg, fmnist_data_dir):
  """Every method's Fashion-MNIST recipe (issue 19) takes real steps in its smoke form."""
  c = load(name, ",".join(a for a in (arg, "smoke") if a))
  c.data.data_dir = fmnist_data_dir
  run = run_lib.Run(c)
  _, losses, step = run_steps(run, 3)
  assert np.all(np.isfinite(losses)), losses
  assert step._cache_size() == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONFIGS if n.endswith("_cifar")])
def test_cifar_configs_train_in_smoke_form(name, cifar_data_dir):
  """After one preparation command (jaxssl.data.prepare, here of small archives)."""
  c = load(name, "smoke")
  c.data.data_dir = cifar_data_dir
  _, losses, step = run_steps(run_lib.Run(c), 3)
  assert np.all(np.isfinite(losses)), losses
  assert step._cache_size() == 1


@pytest.mark.slow
def test_full_cifar_resnet18_recipe_takes_a_real_step(cifar_data_dir):
  c = load("vicreg_cifar", None)
  c.train.global_batch = 16
  c.data.data_dir = cifar_data_dir
  state, losses, _ = run_steps(run_lib.Run(c), 1)
  assert np.isfinite(losses[0])
  assert count(state.params["projector"]) == 512 * 2048 + 2 * 2048 * 2048 + 4 * 2048


def test_imagenet_configs_crop_jpegs_of_any_size_on_the_host(monkeypatch):
  """By shape: the 224 crops of both views and the eval centre crop (a ResNet-50 step on
  this CPU is for the GPU benchmark)."""
  from tests.data.test_decode import JpegSource  # pylint: disable=g-import-not-at-top
  data = JpegSource(16)
  monkeypatch.setattr(source, "open_split", lambda name, split, **_: (
      data, source.SplitInfo(name, split, len(data), (None, None, 3), 1000)))
  c = load("vicreg_imagenet", None)
  c.train.global_batch = 8
  run = run_lib.Run(c)
  batch = next(run.train_iterator())
  assert batch["view_a"].shape == batch["view_b"].shape == (8, 224, 224, 3)
  first = next(run.eval_batches(run.eval_source, 8))
  assert first["image"].shape == (8, 224, 224, 3)


@pytest.mark.parametrize("name,arg,match", [
    ("vicreg_cifar", "cifar1000", r"cifar1000.*cifar10, cifar100, smoke"),
    ("vicreg_imagenet", "cifar100", r"cifar100"),
    ("info_vicreg_cifar", "logdet,pairdist", "one entropy estimator"),
])
def test_bad_switches_are_named(name, arg, match):
  with pytest.raises(ValueError, match=match):
    load(name, arg)
