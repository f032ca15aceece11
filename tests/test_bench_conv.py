"""bench/conv.py's lists of convolutions are the networks' (their multiply-adds equal the
models' own, counted as the models run), its totals weigh each shape by how often it occurs,
and its timer runs short calls back to back."""

import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import config as config_lib
from jaxssl.models.convnet import ConvNet
from jaxssl.models.resnet import ResNet18, ResNet50
from tests.test_distributed import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import conv  # noqa: E402  pylint: disable=g-import-not-at-top

# The quickstart's CNN as its config file sets it (one convolution per stage).
QUICKSTART = config_lib.load(str(ROOT / "configs" / "vicreg_fashion_mnist.py")).model


def conv_flops(model: nn.Module, shape) -> float:
  """2 x the multiply-adds of every convolution ``model`` applies to a batch of ``shape``,
  from each ``nn.Conv`` call's input, kernel and output as the model runs."""
  total = 0.0

  def count(next_fun, args, kwargs, context):
    nonlocal total
    y = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
      kernel = context.module.variables["params"]["kernel"]
      total += 2.0 * np.prod(y.shape[:-1]) * np.prod(kernel.shape)
    return y
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                                train=False))
  with nn.intercept_methods(count):
    jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
  return total


@pytest.mark.parametrize("net,model,shape", [
    ("resnet18", ResNet18(stem="cifar", conv="xla"), (64, 32, 32, 3)),
    ("resnet50", ResNet50(stem="imagenet", conv="xla"), (8, 224, 224, 3)),
    ("convnet", ConvNet(widths=QUICKSTART.widths, convs_per_stage=QUICKSTART.convs_per_stage,
                        conv="xla"), (128, 28, 28, 1)),
])
def test_the_shapes_are_the_networks_convolutions(net, model, shape):
  shapes = conv.NETS[net]()
  assert sum(conv.flops(s) for s in shapes) == pytest.approx(conv_flops(model, shape),
                                                             rel=1e-3)


def test_totals_count_each_shape_as_often_as_it_occurs():
  shapes = conv.NETS["resnet18"]()
  assert len(shapes) == 20 and len(conv.distinct(shapes)) == 11
  rows = [{"shape": s, "seconds": {"forward + backward": 1.0}} for s in conv.distinct(shapes)]
  results = [{"label": "fast", "rows": rows}, {"label": "pytorch", "rows": rows}]
  table = conv.totals(results, shapes)
  assert "| fast | 20,000 |" in table  # 20 convolutions at 1 s each


def test_short_calls_run_back_to_back_within_their_turn():
  """A call under ``min_seconds`` repeats within each turn and counts as the turn over its
  repeats; a longer one runs once a turn. Each call's median is its own duration."""
  counts = {"short": 0, "long": 0}

  def sleeper(name, seconds):
    def call():
      counts[name] += 1
      time.sleep(seconds)
    return call
  medians = conv.in_turns({"short": sleeper("short", 0.002), "long": sleeper("long", 0.03)},
                          reps=3, min_seconds=0.02)
  assert counts["long"] == 3 + 2  # two warm-up turns, three timed
  assert counts["short"] >= 1 + 3 * 5  # once in the first warm-up, then as often as fits
  assert 0.002 <= medians["short"] < 0.006 and 0.03 <= medians["long"] < 0.05
