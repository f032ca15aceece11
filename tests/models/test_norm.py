"""BatchNorm over interleaved views (jaxssl.models.norm) against flax's BatchNorm called once
per view: the same outputs, running averages and gradients, for the layer and for the whole
model, under jit, and sharded over 8 devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.models import Projector, SSLModel, build_backbone
from jaxssl.models.norm import BatchNorm, interleave, split_views

TOL = dict(rtol=2e-5, atol=2e-6)


def assert_trees_close(a, b, rtol=2e-5):
  """Close up to float32 summation order: within ``rtol`` of each array's largest entry."""
  def close(x, y):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(np.max(np.abs(y))))
  jax.tree.map(close, a, b)


def test_interleave_alternates_the_views_and_split_views_undoes_it():
  a, b = jnp.array([[0.0], [2.0]]), jnp.array([[1.0], [3.0]])
  both = interleave(a, b)
  np.testing.assert_array_equal(both, [[0.0], [1.0], [2.0], [3.0]])  # a_0, b_0, a_1, b_1
  for got, want in zip(split_views(both, 2), (a, b)):
    np.testing.assert_array_equal(got, want)


class Norm(nn.Module):
  """One BatchNorm, called on ``x`` at once (``views`` > 1) or once per view (``views`` a
  list of arrays)."""
  views: int = 1

  @nn.compact
  def __call__(self, x):
    norm = BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, views=self.views)
    return [norm(v) for v in x] if isinstance(x, list) else norm(x)


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 3, 2)])
def test_per_view_statistics_equal_one_call_per_view(views, shape):
  keys = jax.random.split(jax.random.key(0), views)
  xs = [jax.random.normal(k, shape) * (1 + v) + v for v, k in enumerate(keys)]
  variables = Norm().init(jax.random.key(1), xs[0])
  variables = jax.tree.map(lambda v: v + 0.5, variables)  # scale, bias and averages not trivial
  dy = jax.random.normal(jax.random.key(2), (views * shape[0], *shape[1:]))

  def run(module, x, dy):
    def f(params, x):
      return module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
    (y, stats), back = jax.vjp(f, variables["params"], x)
    cotangent = (dy, jax.tree.map(jnp.zeros_like, stats))
    return y, stats, back(cotangent)

  joint = jax.jit(lambda x, dy: run(Norm(views), x, dy))(interleave(*xs), dy)
  separate = jax.jit(lambda xs, dy: run(Norm(), xs, dy))(xs, split_views(dy, views))
  y, stats, (d_params, dx) = joint
  y_sep, stats_sep, (d_params_sep, dx_sep) = separate
  np.testing.assert_allclose(y, interleave(*y_sep), **TOL)
  np.testing.assert_allclose(dx, interleave(*dx_sep), **TOL)
  assert_trees_close(stats, stats_sep)  # view 0's statistics, then view 1's, ...
  assert_trees_close(d_params, d_params_sep)


def test_in_inference_the_views_change_nothing():
  x = jax.random.normal(jax.random.key(0), (8, 4))
  plain = nn.BatchNorm(use_running_average=True)
  variables = plain.init(jax.random.key(1), x)
  variables = jax.tree.map(lambda v: v + 0.5, variables)
  np.testing.assert_array_equal(BatchNorm(use_running_average=True, views=2).apply(variables, x),
                                plain.apply(variables, x))


def test_a_batch_without_every_view_is_refused():
  x = jnp.ones((5, 4))
  norm = BatchNorm(use_running_average=False, views=2)
  with pytest.raises(ValueError, match=r"5 rows.*multiple of 2"):
    norm.init(jax.random.key(0), x)


@pytest.mark.parametrize("backbone", ["resnet18", "convnet"])
def test_the_model_on_interleaved_views_equals_one_pass_per_view(backbone):
  # ResNet-18's blocks, one a stage over two stages: with and without a projected shortcut.
  kwargs = ({"width": 4, "stem": "cifar", "stage_sizes": (1, 1)} if backbone == "resnet18"
            else {"widths": (4, 8), "convs_per_stage": 1})
  model = SSLModel(backbone=build_backbone(backbone, conv="xla", **kwargs),
                   projector=Projector("16-16-8", conv="xla"), num_classes=3)
  keys = jax.random.split(jax.random.key(0))
  x_a = jax.random.normal(keys[0], (8, 8, 8, 3))
  x_b = 2 * jax.random.normal(keys[1], (8, 8, 8, 3)) + 1  # statistics unlike view a's
  variables = model.init(jax.random.key(1), x_a, train=True)

  def separate(params, x_a, x_b):
    out_a, updates = model.apply({**variables, "params": params}, x_a, train=True,
                                 mutable=["batch_stats"])
    out_b, updates = model.apply({"params": params, **updates}, x_b, train=True,
                                 mutable=["batch_stats"])
    return jax.tree.map(interleave, out_a, out_b), updates

  def joint(params, x_a, x_b):
    return model.apply({**variables, "params": params}, interleave(x_a, x_b), train=True,
                       views=2, mutable=["batch_stats"])

  def with_grads(forward):
    def loss(params, x_a, x_b):
      out, updates = forward(params, x_a, x_b)
      return jnp.sum(jnp.sin(out["embeddings"])) + jnp.sum(out["logits"] ** 2), (out, updates)
    return jax.jit(jax.grad(loss, has_aux=True))

  expected = with_grads(separate)(variables["params"], x_a, x_b)
  # The backbone's gradients sum over more terms in another order: 1e-4 of their scale.
  assert_trees_close(with_grads(joint)(variables["params"], x_a, x_b), expected, rtol=1e-4)
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  shard = lambda x: jax.device_put(x, NamedSharding(mesh, P("data")))
  sharded = with_grads(joint)(variables["params"], shard(x_a), shard(x_b))
  assert_trees_close(sharded, expected, rtol=1e-4)
