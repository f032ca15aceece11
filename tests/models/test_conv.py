"""model.conv="fast" and "onednn" against lax.conv_general_dilated: values and both gradients
within 1e-5 relative in float32, for every form the models use and the odd ones (odd sizes,
batch 1, stride 3, asymmetric padding), under jit, grad, vmap and sharded over 8 devices; the
models built every way. What only oneDNN's does is in test_onednn.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxssl import config as config_lib
from jaxssl.errors import ConfigError
from jaxssl.models import conv as conv_lib
from jaxssl.models import model_from_config, onednn
from jaxssl.models.convnet import ConvNet
from jaxssl.models.resnet import ResNet18, ResNet50
from tests.models.conv_cases import CASES, IMPLS, NHWC, loss, operands, relative


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_values_and_gradients_equal_lax(case, impl):
  x, kernel, strides, padding = operands(case)
  fast, xla = conv_lib.pick(impl), lax.conv_general_dilated
  y = jax.jit(lambda x, k: fast(x, k, strides, padding, dimension_numbers=NHWC))(x, kernel)
  assert relative(y, xla(x, kernel, strides, padding, dimension_numbers=NHWC)) < 1e-5
  grad = jax.jit(jax.grad(functools.partial(loss, fast), argnums=(0, 1)),
                 static_argnums=(2, 3))(x, kernel, strides, padding)
  want = jax.grad(functools.partial(loss, xla), argnums=(0, 1))(x, kernel, strides, padding)
  for got, expected in zip(grad, want):
    assert got.shape == expected.shape
    assert relative(got, expected) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_second_derivative_equals_lax(impl):
  x, kernel, strides, padding = operands(CASES[0])

  def curvature(conv_fn, kernel):  # d/dk of |d loss / dx|^2
    g = jax.grad(loss, argnums=1)(conv_fn, x, kernel, strides, padding)
    return jnp.sum(g**2)
  got = jax.grad(functools.partial(curvature, conv_lib.pick(impl)))(kernel)
  want = jax.grad(functools.partial(curvature, lax.conv_general_dilated))(kernel)
  assert relative(got, want) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_equals_a_loop(impl):
  """Over a stack of batches and of kernels, and of batches alone: the same as each alone."""
  x, kernel, strides, padding = operands(CASES[4])
  xs, kernels = jnp.stack([x, -x, 2 * x]), jnp.stack([kernel, kernel[::-1], 0.5 * kernel])
  grad = jax.grad(functools.partial(loss, conv_lib.pick(impl)), argnums=(0, 1))
  both = jax.jit(jax.vmap(lambda x, k: grad(x, k, strides, padding)))(xs, kernels)
  inputs = jax.jit(jax.vmap(lambda x: grad(x, kernel, strides, padding)))(xs)
  for i in range(3):
    for batched, k in ((both, kernels[i]), (inputs, kernel)):
      one = jax.grad(functools.partial(loss, lax.conv_general_dilated), argnums=(0, 1))(
          xs[i], k, strides, padding)
      for got, want in zip(batched, one):
        assert relative(got[i], want) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_sharded_over_8_devices_equals_one(impl):
  assert jax.device_count() == 8
  x, kernel, strides, padding = operands((8, 8, 8, 16, 32, 3, 2, "SAME"))
  mesh = Mesh(np.array(jax.devices()), ("data",))
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  ks = jax.device_put(kernel, NamedSharding(mesh, P()))
  grad = jax.jit(jax.grad(functools.partial(loss, conv_lib.pick(impl)), argnums=(0, 1)),
                 static_argnums=(2, 3))
  sharded = grad(xs, ks, strides, padding)
  assert sharded[0].sharding.spec == P("data")
  # Each device convolves its share of the batch: the input is never gathered.
  assert "all-gather" not in grad.lower(xs, ks, strides, padding).compile().as_text()
  single = jax.grad(functools.partial(loss, lax.conv_general_dilated), argnums=(0, 1))(
      x, kernel, strides, padding)
  for got, want in zip(sharded, single):
    assert relative(got, want) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_what_it_does_not_cover_is_lax(impl):
  """Dilations, feature groups and channels-first layouts go to lax unchanged."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 4, 9, 9)), jnp.float32)  # NCHW
  kernel = jnp.asarray(rng.normal(size=(6, 2, 3, 3)), jnp.float32)  # OIHW, 2 groups
  fast = conv_lib.pick(impl)
  for kwargs in ({"feature_group_count": 2}, {"rhs_dilation": (2, 2), "feature_group_count": 2}):
    got = fast(x, kernel, (2, 2), "SAME", **kwargs)
    want = lax.conv_general_dilated(x, kernel, (2, 2), "SAME", **kwargs)
    np.testing.assert_array_equal(got, want)


def test_auto_picks_by_platform():
  on_cpu = conv_lib.conv_general_dilated if onednn.unavailable() else conv_lib.auto_cpu
  assert conv_lib.pick("auto", "cpu") is on_cpu
  assert conv_lib.pick("auto", "gpu") is lax.conv_general_dilated
  assert conv_lib.pick("auto", "tpu") is lax.conv_general_dilated
  assert conv_lib.pick("xla", "cpu") is lax.conv_general_dilated


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_auto_leaves_the_largest_float32_kernels_to_fast(impl, monkeypatch):
  """On a CPU with oneDNN: oneDNN's calls for float32 kernels up to the limit, none above it;
  in bfloat16 (where the CPU computes it) for every kernel."""
  x, kernel, strides, padding = operands(CASES[0])  # a 3x3 kernel of 16 x 32
  for limit, calls in ((kernel.size, 1), (kernel.size - 1, 0)):
    monkeypatch.setattr(conv_lib, "auto_cpu", functools.partial(
        conv_lib.onednn_conv_general_dilated,
        max_weights={**conv_lib.AUTO_ONEDNN_MAX_WEIGHTS, "float32": limit}))
    auto = conv_lib.pick("auto", "cpu")
    lower = lambda *operands: jax.jit(  # pylint: disable=cell-var-from-loop
        lambda x, k: auto(x, k, strides, padding, dimension_numbers=NHWC)).lower(*operands)
    assert lower(x, kernel).as_text().count("jaxssl_onednn_forward") == calls
    halves = lower(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)).as_text()
    assert halves.count("jaxssl_onednn_forward") == int(onednn.native_bfloat16())
    got = jax.jit(lambda x, k: auto(x, k, strides, padding, dimension_numbers=NHWC))(x, kernel)
    assert relative(got, lax.conv_general_dilated(x, kernel, strides, padding,
                                                  dimension_numbers=NHWC)) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_resnets_equal_either_way(backbone, impl):
  """The same parameters (names, shapes, values at init), features and gradients. One block a
  stage: each kind of convolution the nets have (stems, strides, shortcuts) at their widths'
  ratios; the depth adds only more of the same."""
  net = {"resnet18": functools.partial(ResNet18, stem="cifar", width=8),
         "resnet50": functools.partial(ResNet50, stem="imagenet", width=4)}[backbone]
  net = functools.partial(net, stage_sizes=(1, 1, 1, 1))
  size = 16 if backbone == "resnet18" else 32
  images = jnp.asarray(np.random.default_rng(2).normal(size=(3, size, size, 3)), jnp.float32)
  fast, xla = net(conv=impl), net(conv="xla")
  variables = jax.jit(lambda: fast.init(jax.random.key(0), images, train=False))()
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, jax.eval_shape(lambda: xla.init(jax.random.key(0), images, train=False)))
  # Away from the init, where the blocks' last BatchNorm scale (zero) stops their gradients.
  leaves, tree = jax.tree.flatten(variables["params"])
  noise = np.random.default_rng(4)
  params = tree.unflatten([p + 0.3 * noise.normal(size=p.shape).astype(np.float32)
                           for p in leaves])

  def features(model, params):  # BatchNorm by its stored statistics: over a batch of 3, the
    # batch's statistics would amplify summation-order differences layer after layer
    return model.apply({**variables, "params": params}, images, train=False)
  got, want = (jax.jit(lambda p, m=m: (features(m, p), jax.grad(
      lambda p: jnp.sum(features(m, p) ** 2))(p)))(params) for m in (fast, xla))
  assert relative(got[0], want[0]) < 1e-5
  for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
    # Each convolution within 1e-5 (the tests above); through ResNet-50's 53 of them, the
    # first layers' gradients gathered their summation-order differences (1.2e-5 seen).
    assert relative(a, b) < 1e-4


def test_convnet_is_unchanged():
  """The Fashion-MNIST CNN has only stride-1 3x3 convolutions: bit for bit lax's."""
  images = jnp.asarray(np.random.default_rng(3).normal(size=(4, 12, 12, 1)), jnp.float32)
  fast, xla = ConvNet(widths=(4, 8), conv="fast"), ConvNet(widths=(4, 8), conv="xla")
  variables = fast.init(jax.random.key(0), images, train=False)
  grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply(
      {**variables, "params": p}, images, train=False) ** 2)))(variables["params"])
      for m in (fast, xla)]
  for got, want in zip(*map(jax.tree.leaves, grads)):
    np.testing.assert_array_equal(got, want)


def test_config_names_a_bad_conv():
  c = config_lib.load("configs/vicreg_cifar.py:cifar10")
  c.model.conv = "oneDNN"
  with pytest.raises(ConfigError, match="config.model.conv: must be one of"):
    model_from_config(c.model, num_classes=10)


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_convnet_by_onednn_equals_lax(impl):
  images = jnp.asarray(np.random.default_rng(3).normal(size=(4, 12, 12, 1)), jnp.float32)
  fast, xla = ConvNet(widths=(4, 8), conv=impl), ConvNet(widths=(4, 8), conv="xla")
  variables = fast.init(jax.random.key(0), images, train=False)
  grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply(
      {**variables, "params": p}, images, train=False) ** 2)))(variables["params"])
      for m in (fast, xla)]
  for got, want in zip(*map(jax.tree.leaves, grads)):
    assert relative(got, want) < 1e-5
