"""What a config builds before any data or device is touched: the views, the model, the
method, the learning-rate schedule and the optimiser. The loop, the tests and the benchmarks
all build a run's pieces here, so they train the same thing."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import ml_collections

from jaxssl import config as config_lib
from jaxssl import methods
from jaxssl.models import model_from_config
from jaxssl.train import optim

if TYPE_CHECKING:  # the data layer imports TFDS, which building a recipe does not need
  from jaxssl.data.source import SplitInfo


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What a config builds once the training split is known: no data, no devices."""
  views: tuple
  image_shape: tuple[int, int, int]
  steps_per_epoch: int
  total_steps: int
  method: methods.Method
  model: Any
  schedule: Any
  tx: Any


def recipe(c: ml_collections.ConfigDict, info: SplitInfo) -> Recipe:
  """The model, method, schedule and optimiser of config ``c`` for training on ``info``."""
  views = config_lib.views(c)
  image_shape = (views[0].out_size, views[0].out_size, info.image_shape[-1])
  steps_per_epoch = max(info.num_examples // c.train.global_batch, 1)
  total_steps = c.train.steps or int(c.train.epochs * steps_per_epoch)
  method = methods.get_method(c.method.name)
  model = model_from_config(c.model, info.num_classes, probe_gradient=method.supervised)
  kwargs = dict(global_batch=c.train.global_batch, total_steps=total_steps,
                steps_per_epoch=steps_per_epoch)
  tx = optim.with_probe(optim.make_optimizer(c.optim, **kwargs), c.probe, method.supervised)
  return Recipe(views, image_shape, steps_per_epoch, total_steps, method, model,
                optim.learning_rate(c.optim, **kwargs), tx)
