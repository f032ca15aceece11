"""bench/conv.py's lists of convolutions are the networks' (their multiply-adds equal the
models' own, counted as the models run), its totals weigh each shape by how often it occurs,
and its timer runs short calls back to back."""

import io
import json
import statistics
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
  repeats; a longer one runs once a turn. Each call's turns are its own durations."""
  counts = {"short": 0, "long": 0}

  def sleeper(name, seconds):
    def call():
      counts[name] += 1
      time.sleep(seconds)
    return conv.local(call)
  turns = conv.in_turns({"short": sleeper("short", 0.002), "long": sleeper("long", 0.03)},
                        reps=3, min_seconds=0.02)
  assert counts["long"] == 3 + 2  # two warm-up turns, three timed
  assert counts["short"] >= 1 + 3 * 5  # once in the first warm-up, then as often as fits
  assert len(turns["short"]) == len(turns["long"]) == 3
  assert all(0.002 <= t < 0.006 for t in turns["short"])
  assert all(0.03 <= t < 0.05 for t in turns["long"])


def test_a_worker_serves_its_calls_over_stdin_and_stdout(monkeypatch, capsys):
  """``serve``: the greeting, then a shape's calls listed, then each ``run`` timed over its
  repeats, one marked line per request."""
  called = []

  def fake(params):
    prepare = lambda s: {("fake", "forward"): lambda: called.append(s["n"])}
    return {"matmul_flops": 1.0}, prepare
  monkeypatch.setitem(conv.WORKERS, "fake", fake)
  requests = [{"op": "shape", "shape": {"n": 7}},
              {"op": "run", "label": "fake", "pass": "forward", "repeats": 3}]
  monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(r) + "\n" for r in requests)))
  conv.serve("fake", {})
  replies = [json.loads(line[len(conv.REPLY):]) for line in capsys.readouterr().out.splitlines()
             if line.startswith(conv.REPLY)]
  assert replies[0] == {"matmul_flops": 1.0}
  assert replies[1] == {"calls": [["fake", "forward"]]}
  assert replies[2]["seconds"] >= 0 and called == [7, 7, 7]


def test_the_table_gives_the_middle_half_of_the_ratio_turn_by_turn():
  """Where every turn is in the file, a column gives the quartiles of PyTorch's time over the
  best implementation's, turn by turn; files without turns render as before."""
  s = conv.NETS["convnet"]()[1]
  ours = [0.010, 0.012, 0.011, 0.020, 0.010]
  theirs = [0.011, 0.012, 0.0121, 0.030, 0.012]  # ratios 1.1, 1.0, 1.1, 1.5, 1.2
  passes = ("forward", "input grad", "weight grad", "forward + backward")
  row = lambda turns: {"shape": s, "seconds": dict.fromkeys(passes, statistics.median(turns)),
                       "turns": dict.fromkeys(passes, turns)}
  results = [{"label": "onednn", "matmul_flops": 1e11, "rows": [row(ours)]},
             {"label": "pytorch", "matmul_flops": 1e11, "rows": [row(theirs)]}]
  table = conv.table(results)  # the ratios' quartiles; the medians' ratio is 1.09x
  assert "by turn, middle half" in table and "| 1.05-1.35x |" in table
  for r in results:
    del r["rows"][0]["turns"]
  assert "by turn" not in conv.table(results)
