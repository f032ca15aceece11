"""bench/conv.py's lists of convolutions are the networks' (their multiply-adds equal the
models' own, counted as the models run), and its totals weigh each shape by how often it occurs."""

import sys

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
