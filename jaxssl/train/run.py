"""The one builder: everything a run is, built from its config and checked as it is built.

``Run(config)`` either succeeds or raises one ``ConfigError`` naming the key that is wrong,
before any data is read or any program compiled. The loop, evaluation, the tests and the
benchmarks all build here, so they train and restore the same thing, and none of them spells
out the step's arguments: they ask the run for its ``train_step()``. The splits' data is
opened only when asked for (restoring an encoder reads none of it).
"""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import config as config_lib
from jaxssl.config import check
from jaxssl import distributed
from jaxssl import methods
from jaxssl.data import decode, loader, roles, source
from jaxssl.models import model_from_config
from jaxssl.train import optim, state as state_lib, step as step_lib


class Run:
  """A run's views, model, method, schedule, optimiser, mesh and data, from ``config``.

  ``devices``: the mesh (default: all devices of all processes). ``training=False`` builds
  for restoring on any device count (no batch-divides-the-mesh check). ``info``: the training
  split's ``SplitInfo`` when the data is not at hand (tracing a full-size config); by default
  it is read from the dataset's metadata.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, devices=None, training: bool = True,
               info: source.SplitInfo | None = None):
    c = self.config = config
    self.mesh = distributed.data_mesh(devices)
    check_settings(c)
    self.method = methods.get_method(c.method.name)
    self.method_kwargs = self.method.kwargs(c.method.kwargs)
    config_lib.validate(c, num_devices=self.mesh.size if training else 1)
    self.train_info = info or roles.open_data(c.data, "train", read=False)[1]
    self.eval_info = info or roles.open_data(c.data, "eval", read=False)[1]
    # What the evaluators fit on: the training split, or data.eval_path's own (a folder).
    self.eval_train_info = info or (roles.open_data(c.data, "eval_train", read=False)[1]
                                    if self._separate_eval_train() else self.train_info)
    check(self.train_info.num_classes or not self.method.supervised, "method.name",
          f"{c.method.name!r} trains on labels, and {self.train_info.name!r} has none: pick "
          "a self-supervised method, or give the folder class subfolders.")
    check(not training or c.train.global_batch <= self.train_info.num_examples,
          "train.global_batch", f"{c.train.global_batch} is larger than the training split "
          f"{c.data.train_split!r} of {c.data.name!r} ({self.train_info.num_examples} "
          "examples).")
    self.views = config_lib.views(c)
    self.image_shape = (self.views[0].out_size, self.views[0].out_size,
                        self.train_info.image_shape[-1])
    if c.model.backbone == "vit":
      check(self.image_shape[0] % c.model.vit.patch == 0, "model.vit.patch",
            f"must divide the image side ({self.image_shape[0]}, aug.view_a.out_size); got "
            f"{c.model.vit.patch}.")
    self.steps_per_epoch = max(self.train_info.num_examples // c.train.global_batch, 1)
    self.total_steps = c.train.steps or int(c.train.epochs * self.steps_per_epoch)
    self.model = model_from_config(c.model, self.train_info.num_classes,
                                   probe_gradient=self.method.supervised)
    lengths = dict(global_batch=c.train.global_batch, total_steps=self.total_steps,
                   steps_per_epoch=self.steps_per_epoch)
    self.schedule = optim.learning_rate(c.optim, **lengths)
    self.tx = optim.with_probe(optim.make_optimizer(c.optim, **lengths), c.probe,
                               self.method.supervised)
    # Images of one size are cropped on the device; images of varying size by the host
    # (decoded with their crops), and centre-cropped for evaluation.
    channels = self.image_shape[-1]
    self.host_crops = None if self.train_info.fixed_size else decode.TwoCrops(
        self.views, channels, draft=c.data.jpeg_draft)
    self.eval_transform = None if self.eval_info.fixed_size else decode.CentreCrop(
        self.views[0].out_size, channels, c.eval.crop_fraction)

  # ---- data, opened on first use -------------------------------------------------------

  @functools.cached_property
  def train_source(self):
    return self._open("train")

  @functools.cached_property
  def eval_train_source(self):
    """What the evaluators fit on (the training split unless data.eval_path is set)."""
    if self._separate_eval_train():
      return self._open("eval_train")
    return self.train_source

  def _separate_eval_train(self) -> bool:
    d = self.config.data
    return roles.is_folder(d) or (d.eval_train_split not in (None, d.train_split))

  @functools.cached_property
  def eval_source(self):
    return self._open("eval")

  @property
  def bad_images(self) -> list[str]:
    """The image files of this run's folders left out (``data.on_bad_image="skip"``)."""
    if not roles.is_folder(self.config.data):
      return []
    return sorted({path for role in roles.ROLES
                   for path in roles.open_data(self.config.data, role, read=False)[2]})

  @property
  def has_head(self) -> bool:
    """Whether the online linear head is trained (and read on the eval split): the training
    split has labels, which are the eval split's (no separate data.eval_path)."""
    return bool(self.train_info.num_classes) and not (
        roles.is_folder(self.config.data) and self.config.data.eval_path)

  def evaluable(self) -> dict[str, bool]:
    """What the evaluators may use: ``has_labels`` (the evaluation's splits have labels) and
    ``has_head`` (see ``has_head``): ``evaluators.build``'s keywords."""
    return {"has_labels": bool(self.eval_train_info.num_classes and
                               self.eval_info.num_classes),
            "has_head": self.has_head}

  def _open(self, role: str):
    return roles.open_data(self.config.data, role)[0]

  def train_iterator(self):
    c = self.config
    return loader.train_iterator(self.train_source, global_batch=c.train.global_batch,
                                 seed=c.seed, crops=self.host_crops,
                                 num_threads=c.data.num_threads, prefetch=c.data.prefetch)

  def eval_batches(self, split_source, batch: int):
    """Every example of an eval split once (see ``loader.eval_batches``), centre-cropped
    on the host when the images vary in size."""
    return loader.eval_batches(split_source, global_batch=batch,
                               transform=self.eval_transform,
                               num_threads=self.config.data.num_threads)

  # ---- state and programs --------------------------------------------------------------

  def abstract_state(self) -> state_lib.TrainState:
    """The state's shapes and shardings (``train.state_sharding`` over this run's mesh)."""
    return state_lib.abstract_state(self.model, self.tx, self.method, **self._state_args())

  def init_state(self) -> state_lib.TrainState:
    return state_lib.create_state(self.model, self.tx, self.method, **self._state_args())

  def _state_args(self) -> dict:
    t = self.config.train
    return dict(seed=self.config.seed, image_shape=self.image_shape, mesh=self.mesh,
                sharding=t.state_sharding, fsdp_min_mb=t.fsdp_min_mb)

  def update(self):
    """The step on two views already augmented (``step.make_update``), not jitted."""
    c = self.config
    return step_lib.make_update(self.model, self.method, self.method_kwargs, self.tx,
                                seed=c.seed, schedule=self.schedule,
                                skip_nonfinite=c.train.max_skipped > 0)

  def train_step(self):
    """The jitted ``train_step(state, global_batch) -> (state, metrics)`` of this run
    (compiled on its first call, once per run)."""
    return self._train_step

  @functools.cached_property
  def _train_step(self):
    c = self.config
    step = step_lib.make_train_step(self.model, self.method, self.method_kwargs, self.tx,
                                    self.views, seed=c.seed, schedule=self.schedule,
                                    skip_nonfinite=c.train.max_skipped > 0)
    return step_lib.jit_train_step(step, self.abstract_state(), self.mesh)

  @functools.cached_property
  def _eval_step(self):
    return jax.jit(step_lib.make_eval_step(self.model))

  def head_accuracy(self, state) -> float:
    """Accuracy of the online linear head on the eval split (every example once)."""
    view = self.views[0]
    mean, std = jnp.asarray(view.mean), jnp.asarray(view.std)
    counts = [self._eval_step(state, loader.to_global(batch, self.mesh), mean, std)
              for batch in self.eval_batches(self.eval_source, self.config.eval.batch)]
    correct, total = np.sum(jax.device_get(counts), axis=0)
    return float(correct) / float(total)


def check_settings(c: ml_collections.ConfigDict) -> None:
  """The run's own numbers (lengths, intervals, limits) in their ranges; the pieces (method,
  model, optimiser, views) check theirs as they are built."""
  for key in ("lr", "weight_decay", "warmup_epochs"):
    check(c.optim[key] >= 0, f"optim.{key}", f"must be >= 0; got {c.optim[key]}.")
  check(c.optim.bias_lr is None or c.optim.bias_lr >= 0, "optim.bias_lr",
        f"must be >= 0 (or unset); got {c.optim.bias_lr}.")
  check(c.train.steps is not None or c.train.epochs > 0, "train.epochs",
        f"must be > 0 (or set train.steps); got {c.train.epochs}.")
  check(c.train.max_skipped >= 0, "train.max_skipped",
        f"must be >= 0 (0: stop at the first non-finite step); got {c.train.max_skipped}.")
  for key in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    check(c.train[key] > 0, f"train.{key}", f"must be > 0; got {c.train[key]}.")
  check(c.watchdog.timeout_s is None or c.watchdog.timeout_s > 0, "watchdog.timeout_s",
        f"must be > 0 seconds (or unset: derived from the step time); got "
        f"{c.watchdog.timeout_s}.")
  check(c.watchdog.floor_s > 0, "watchdog.floor_s", f"must be > 0; got {c.watchdog.floor_s}.")
  check(c.watchdog.factor >= 1, "watchdog.factor",
        f"must be >= 1 (times the slowest step); got {c.watchdog.factor}.")
  check(0 < c.eval.crop_fraction <= 1, "eval.crop_fraction",
        f"must be in (0, 1] (the centre crop's share of the shorter side); got "
        f"{c.eval.crop_fraction}.")
  check(c.train.state_sharding in state_lib.SHARDINGS, "train.state_sharding",
        f"must be one of {state_lib.SHARDINGS}; got {c.train.state_sharding!r}.")
  check(c.train.fsdp_min_mb >= 0, "train.fsdp_min_mb",
        f"must be >= 0 (MiB); got {c.train.fsdp_min_mb}.")
  check(c.optim.clip_norm is None or c.optim.clip_norm > 0, "optim.clip_norm",
        f"must be > 0 (or unset: no clipping); got {c.optim.clip_norm}.")
  check(c.data.num_threads > 0, "data.num_threads",
        f"must be > 0 (host reader and decoder threads); got {c.data.num_threads}.")

