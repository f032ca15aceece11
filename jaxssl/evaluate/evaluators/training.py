"""What the trained protocols (linear, fine-tuning) share: their settings' checks, their
plan, their batches and views."""

from __future__ import annotations

import dataclasses


from jaxssl.config import check
from jaxssl.data import augment, decode, loader
from jaxssl.evaluate.evaluators.base import Evaluator
from jaxssl.train import step as step_lib

def check_training(evaluator: Evaluator, settings, *numbers: str) -> None:
  """The settings the trained protocols (linear, finetune) share, and their ``numbers``."""
  for setting in ("epochs", "batch", *numbers):
    check(settings[setting] > 0, evaluator.key(setting), f"must be > 0; got {settings[setting]}.")
  check(0 <= settings.momentum < 1, evaluator.key("momentum"),
        f"must be in [0, 1); got {settings.momentum}.")
  lo, hi = settings.crop_scale
  check(0 < lo <= hi <= 1, evaluator.key("crop_scale"),
        f"must satisfy 0 < lo <= hi <= 1; got {settings.crop_scale}.")
  check(0 <= settings.flip_prob <= 1, evaluator.key("flip_prob"),
        f"must be a probability; got {settings.flip_prob}.")


def training_plan(evaluator: Evaluator, run, examples: int):
  """(global batch, the crop-and-flip view, steps) of a trained protocol on ``examples``: the
  batch rounded to the mesh and at most the split."""
  s, size = evaluator.settings, run.mesh.size
  batch = min(-(-s.batch // size) * size, examples // size * size)
  check(batch > 0, evaluator.key("batch"), f"the split ({examples} examples) is smaller than "
        f"the mesh ({size} devices).")
  view = dataclasses.replace(run.views[0], crop_scale=tuple(s.crop_scale),
                             flip_prob=s.flip_prob, jitter_prob=0.0, grayscale_prob=0.0,
                             blur_prob=0.0, solarize_prob=0.0)
  return batch, view, max(int(s.epochs * examples) // batch, 1)


def batches(run, split, batch: int, view, steps: int, seed: int):
  """``steps`` global batches of ``split``, shuffled every epoch as training shuffles (the
  same on any process count); images of varying size cropped by the host."""
  crops = None if run.eval_train_info.fixed_size else decode.TwoCrops(
      (view, view), run.image_shape[-1], draft=run.config.data.jpeg_draft)
  it = loader.train_iterator(split, global_batch=batch, seed=seed, crops=crops,
                             num_threads=run.config.data.num_threads,
                             prefetch=run.config.data.prefetch)
  for _ in range(steps):
    yield loader.to_global(next(it), run.mesh)


def augmented_views(batch, view, key):
  """The batch's crop-and-flip view, on the device unless the host cropped it."""
  host_crops = "view_a" in batch
  images = step_lib.images_to_float(batch["view_a"] if host_crops else batch["image"])
  return augment.augment_batch(key, images, view, crop=not host_crops)
