"""The run-config schema: the defaults every recipe starts from, the ``smoke`` shrink, loading
a config file with its switches, and the checks across fields that fail before training with
the key that is wrong."""

from __future__ import annotations

import dataclasses
import inspect

import ml_collections
from ml_collections import config_dict

from jaxssl import methods
from jaxssl.errors import ConfigError
from jaxssl.data import augment
from jaxssl.models import projector as projector_lib
from jaxssl.models import vit as vit_lib

FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = (augment.ViewAugment.mean, augment.ViewAugment.std)


def view_config(view: augment.ViewAugment) -> ml_collections.ConfigDict:
  fields = dataclasses.asdict(view)
  fields["blur_kernel_size"] = config_dict.placeholder(int)
  if view.blur_kernel_size is not None:
    fields["blur_kernel_size"] = view.blur_kernel_size
  return ml_collections.ConfigDict(fields)


def vicreg_views(out_size: int, stats) -> ml_collections.ConfigDict:
  """The official asymmetric VICReg pair at ``out_size`` with the dataset's mean and std."""
  view_a, view_b = augment.vicreg_views(out_size, *stats)
  return ml_collections.ConfigDict({"view_a": view_config(view_a),
                                    "view_b": view_config(view_b)})


def base_config() -> ml_collections.ConfigDict:
  """Every setting of a run, at the defaults the recipes start from."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Where a new workdir starts from: another run's workdir or <workdir>/checkpoints/<step>.
  c.init_from = config_dict.placeholder(str)
  # name: a TFDS dataset (read from data_dir, splits train_split and eval_split; the probes fit
  # on eval_train_split if set, else train_split) or "folder":
  # the images under path (local or gs://; jaxssl.data.folder), labeled by class subfolders
  # (labels "auto", "folders" or "none"; eval_path's always "auto"), val_fraction held out
  # unless it has train/ and val/ folders or eval_path names a labeled folder to evaluate on
  # (its own train/ and val/, or its held-out fraction); converted to channels; files
  # that do not decode fail the run or are left out (on_bad_image "fail" or "skip"); the
  # folder's index is cached in index_dir (default ~/.cache/jaxssl).
  c.data = dict(name="fashion_mnist_idx", data_dir=config_dict.placeholder(str),
                train_split="train", eval_split="test",
                eval_train_split=config_dict.placeholder(str), in_memory=True, num_threads=2,
                prefetch=4, jpeg_draft=True, path=config_dict.placeholder(str),
                eval_path=config_dict.placeholder(str), val_fraction=0.1, labels="auto",
                channels=3, on_bad_image="fail", index_dir=config_dict.placeholder(str))
  c.aug = vicreg_views(28, FASHION_MNIST_STATS)
  # backbone: convnet (widths, convs_per_stage), resnet18 / resnet50 (width, stem) or vit
  # (section vit: ViT-S/16 unless set; vit_config gives the standard sizes). conv: the CNNs'
  # convolution, "xla", "fast", "onednn" (CPU, jaxssl[onednn]) or "auto" (by platform;
  # jaxssl.models.conv).
  c.model = dict(backbone="convnet", widths=(32, 64, 128), convs_per_stage=2, width=64,
                 stem="cifar", conv="auto", vit=vit_config("S", 16),
                 projector="2048-2048-2048", projector_bn=True, dtype="float32")
  c.method = dict(name="vicreg", kwargs=method_kwargs())
  c.optim = dict(name="lars", lr=0.2, scale_lr_by_batch=True, weight_decay=1e-6, momentum=0.9,
                 eta=0.001, clip_trust_ratio=False, bias_lr=config_dict.placeholder(float),
                 warmup_epochs=10.0, end_lr_factor=0.0,
                 clip_norm=config_dict.placeholder(float))  # the gradients' global norm
  c.probe = dict(lr=1e-3)
  c.train = dict(global_batch=256, epochs=100, steps=config_dict.placeholder(int),
                 log_every=50, eval_every=1000, checkpoint_every=1000, keep_checkpoints=3,
                 keep_period=config_dict.placeholder(int), max_skipped=0,
                 # The train state on the devices: "replicated", or "fsdp" (each parameter and
                 # its optimiser state sharded over all devices on its largest axis the device
                 # count divides, if larger than fsdp_min_mb MiB; big_vision's fsdp rule, whose
                 # 4 MiB would leave ViT-B's and ViT-L's attention kernels replicated).
                 state_sharding="replicated", fsdp_min_mb=1.0)
  # A step that does not complete within timeout_s (None: factor x the slowest step so far,
  # at least floor_s) stops the run with the stacks of every thread (jaxssl.watchdog).
  c.watchdog = dict(timeout_s=config_dict.placeholder(float), floor_s=300.0, factor=20.0)
  c.eval, c.evals = eval_config(), evals_config()
  return c


def eval_config() -> ml_collections.ConfigDict:
  """The ``eval`` section."""
  # Evaluation of frozen features: the batch of the feature passes, which output (backbone or
  # projector), the random-encoder baseline offline, and the fixed subset (strided over each
  # split) that the evaluators running during training read; the report's t-SNE map of the
  # embedding draws map_examples test features (0: no map).
  return ml_collections.ConfigDict(dict(
      batch=1000, projector=False, random_baseline=True, crop_fraction=0.875,
      train_examples=10000, test_examples=2000, map_examples=2000))


def evals_config() -> ml_collections.ConfigDict:
  """The ``evals`` section: one entry per evaluator."""
  # The protocols (jaxssl.evaluate.evaluators), each with its settings: ``offline`` puts it in
  # the default set of `python -m jaxssl.evaluate`; ``every`` > 0 also runs it during
  # training every that many steps and at the last step (0: never; None: every
  # train.eval_every steps, with the online probe).
  return ml_collections.ConfigDict(dict(
      logistic=dict(offline=True, every=0, epochs=100, lr=1e-3, batch=1024, weight_decay=1e-4),
      ridge=dict(offline=True, every=0, lambdas=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
                 val_fraction=0.1),
      knn=dict(offline=True, every=config_dict.placeholder(int), k=200, temperature=0.07),
      rankme=dict(offline=True, every=config_dict.placeholder(int), collapse_fraction=0.1),
      # VICReg's evaluate.py and README (ImageNet): 100 epochs, batch 256, SGD momentum 0.9,
      # cosine, head lr 0.02, weight decay 1e-6, crops of 8-100% and flips.
      linear=dict(offline=False, every=0, epochs=100, batch=256, lr=0.02, momentum=0.9,
                  weight_decay=1e-6, crop_scale=(0.08, 1.0), flip_prob=0.5),
      # Semi-supervised fine-tuning on 1% and 10% of the labels, VICReg's published settings:
      # 20 epochs, no weight decay, backbone / head lr 0.03 / 0.08 (1%) and 0.01 / 0.1 (10%).
      finetune_1=dict(kind="finetune", offline=False, every=0, fraction=0.01, epochs=20,
                      batch=256, backbone_lr=0.03, head_lr=0.08, momentum=0.9,
                      weight_decay=0.0, crop_scale=(0.08, 1.0), flip_prob=0.5),
      finetune_10=dict(kind="finetune", offline=False, every=0, fraction=0.1, epochs=20,
                       batch=256, backbone_lr=0.01, head_lr=0.1, momentum=0.9,
                       weight_decay=0.0, crop_scale=(0.08, 1.0), flip_prob=0.5),
  ))


def vit_config(size: str, patch: int, *, pool: str = "tok", posemb: str = "learn",
               drop_path: float = 0.0) -> ml_collections.ConfigDict:
  """The ``model.vit`` section of the standard ViT size ``size`` (Ti, S, B, L: width, depth,
  MLP width, heads from ``jaxssl.models.vit.SIZES``) with ``patch`` x ``patch`` patches."""
  width, depth, mlp_dim, heads = vit_lib.SIZES[size]
  return ml_collections.ConfigDict(dict(width=width, depth=depth, mlp_dim=mlp_dim, heads=heads,
                                        patch=patch, pool=pool, posemb=posemb,
                                        drop_path=drop_path))


def method_kwargs() -> ml_collections.ConfigDict:
  """Every keyword of every method, unset: a config file or ``--config.method.kwargs.<name>``
  sets the ones it wants, the rest keep the loss function's (official) defaults."""
  return ml_collections.ConfigDict(
      {name: config_dict.placeholder(kind) for name, kind in methods.all_keywords().items()})


def load(path_with_switches: str) -> ml_collections.ConfigDict:
  """The config of ``configs/x.py`` or ``configs/x.py:switch,switch``: the one way to read a
  config file outside the command line (tests, benchmarks, notebooks)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  path, _, arg = str(path_with_switches).partition(":")
  if not pathlib.Path(path).is_file():
    raise ConfigError(f"Config file {path} not found (configs/ lists them).")
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def switches(arg: str | None, *choices: str) -> set[str]:
  """The comma-separated ``get_config`` switches in ``arg``; ``smoke`` is always allowed,
  ``choices`` are the config file's own (e.g. ``cifar100``)."""
  given = {a for a in (arg or "").split(",") if a}
  allowed = {"smoke", *choices}
  unknown = given - allowed
  if unknown:
    raise ConfigError(f"Unknown config switch(es) {sorted(unknown)}; this config takes: "
                     f"{', '.join(sorted(allowed))} (comma-separated, after the file name and "
                     "a colon, e.g. configs/x.py:smoke).")
  return given


def finish(c: ml_collections.ConfigDict, given: set[str]) -> ml_collections.ConfigDict:
  """Apply ``smoke`` (a few steps of a tiny model: for tests and a first try of any config)
  and lock the config against new keys."""
  if "smoke" in given:
    if c.model.backbone == "vit":  # the recipe's ViT, two blocks of 32 wide
      c.model.vit.update(width=32, depth=2, mlp_dim=64, heads=2)
    else:
      c.model.backbone, c.model.widths, c.model.convs_per_stage = "convnet", (8, 16), 1
    c.model.projector = "64-64"
    c.train.global_batch, c.train.steps, c.train.log_every = 64, 6, 2
    c.train.eval_every = c.train.checkpoint_every = 3
    c.optim.warmup_epochs = 0.0
    c.eval.batch, c.evals.logistic.epochs, c.evals.linear.epochs = 256, 5, 1
    c.evals.finetune_1.epochs = c.evals.finetune_10.epochs = 1
    c.eval.train_examples, c.eval.test_examples, c.eval.map_examples = 512, 256, 100
    if c.method.name == "wmse":  # whitening needs more rows per sub-batch than dimensions
      c.model.projector, c.method.kwargs.w_size = "64-16", 32
  c.lock()
  return c


def check(condition: bool, key: str, message: str) -> None:
  """A ``ConfigError`` naming ``config.<key>`` unless ``condition`` holds."""
  if not condition:
    raise ConfigError(f"config.{key}: {message}")


def validate(c: ml_collections.ConfigDict, *, num_devices: int) -> None:
  """The checks across fields (each field's own range is checked where it is built: see
  ``jaxssl.train.run.Run``); fails before training, naming the key."""
  batch = c.train.global_batch
  check(batch > 0 and batch % num_devices == 0, "train.global_batch",
         f"must be a positive multiple of the device count ({num_devices}); got {batch}.")
  check(c.eval.batch > 0 and c.eval.batch % num_devices == 0, "eval.batch",
         f"must be a positive multiple of the device count ({num_devices}); got "
         f"{c.eval.batch}.")
  if c.method.name == "wmse":
    _check_whitening(c.method.kwargs, c.model.projector, batch)


def _check_whitening(kwargs, projector: str, batch: int) -> None:
  """W-MSE's whitening blocks must be taller than the embedding is wide (``losses.wmse``)."""
  dim = projector_lib.parse_widths(projector)[-1]
  w_size = kwargs.w_size or batch
  check(batch % w_size == 0, "method.kwargs.w_size",
         f"must divide train.global_batch ({batch}); got {w_size}.")
  check(w_size > dim or (kwargs.eps or 0.0) > 0, "method.kwargs.w_size",
         f"W-MSE whitens blocks of w_size={w_size} rows, which cannot whiten the {dim}-wide "
         f"embedding (model.projector={projector!r}): set method.kwargs.w_size above {dim} "
         f"(the official recipe uses 2x the embedding), narrow the projector's last layer "
         "(the official 1024-64), or set method.kwargs.eps > 0.")


def views(c: ml_collections.ConfigDict) -> tuple[augment.ViewAugment, augment.ViewAugment]:
  """The two views of section ``aug``; a ``ConfigError`` names a field that cannot work."""
  def build(name):
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in c.aug[name].items()}
    unknown = set(fields) - set(inspect.signature(augment.ViewAugment).parameters)
    check(not unknown, f"aug.{name}", f"unknown fields {sorted(unknown)}.")
    try:
      return augment.ViewAugment(**fields)
    except (TypeError, ValueError) as err:
      raise ConfigError(f"config.aug.{name}: {err}") from None
  return build("view_a"), build("view_b")
