"""model.conv="fast" and "onednn" against lax.conv_general_dilated: values and both gradients
within 1e-5 relative in float32 (oneDNN's bfloat16 to its rounding), for every form the models
use and the odd ones (odd sizes, batch 1, stride 3, asymmetric padding), under jit, grad, vmap
and sharded over 8 devices; the models built every way."""

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

NHWC = ("NHWC", "HWIO", "NHWC")
# (batch, height, width, in, out, kernel, stride, padding)
CASES = [
    (4, 8, 8, 16, 32, 3, 2, "SAME"),  # a ResNet block's first convolution
    (4, 8, 8, 16, 32, 1, 2, "SAME"),  # its shortcut
    (2, 8, 8, 16, 8, 1, 1, "SAME"),  # a bottleneck's 1x1
    (2, 16, 16, 3, 8, 7, 2, ((3, 3), (3, 3))),  # the ImageNet stem
    (3, 9, 7, 5, 6, 3, 2, "SAME"),  # odd sizes
    (1, 7, 7, 4, 4, 3, 2, "SAME"),  # batch 1
    (1, 1, 1, 4, 4, 3, 2, "SAME"),  # one pixel
    (2, 10, 9, 3, 4, 3, 3, "VALID"),  # stride 3, no padding
    (2, 6, 5, 2, 3, 2, 2, ((0, 3), (2, 0))),  # an even kernel, lopsided padding
    (2, 9, 9, 3, 5, 1, 3, "VALID"),  # a 1x1 at stride 3 with a remainder
    (2, 8, 8, 4, 4, 3, 1, "SAME"),  # stride 1: lax's own
]


# "onednn" needs jaxssl[onednn] (a test dependency) and a C++ compiler.
IMPLS = ["fast", pytest.param("onednn", marks=pytest.mark.skipif(
    onednn.unavailable() is not None, reason=f"model.conv='onednn': {onednn.unavailable()}"))]


def relative(a, b) -> float:
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def operands(case, seed=0):
  n, h, w, c, f, k, s, padding = case
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, h, w, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, c, f)), jnp.float32)
  return x, kernel, (s, s), padding


def loss(conv_fn, x, kernel, strides, padding):
  """A scalar whose gradient reaches every output with a different weight."""
  y = conv_fn(x, kernel, strides, padding, dimension_numbers=NHWC)
  return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)


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


@pytest.mark.parametrize("impl", IMPLS[1:])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_onednn_in_bfloat16_is_float32s_rounded(case, impl):
  """bfloat16 operands: by oneDNN where the CPU has bfloat16 in hardware (else by "fast"),
  values and both gradients in bfloat16 equal float32's on the same operands to bfloat16's
  rounding (8 bits: 2^-8 of the largest value, and the sums' own rounding)."""
  x, kernel, strides, padding = (t.astype(jnp.bfloat16) if hasattr(t, "astype") else t
                                 for t in operands(case))
  conv = lambda fn, dtype: lambda x, k: fn(x.astype(dtype), k.astype(dtype), strides, padding,
                                           dimension_numbers=NHWC)
  got = conv(conv_lib.pick(impl), jnp.bfloat16)
  want = conv(lax.conv_general_dilated, jnp.float32)
  lowered = jax.jit(got).lower(x, kernel).as_text()
  assert ("jaxssl_onednn_forward" in lowered) == onednn.native_bfloat16()
  y, pull = jax.vjp(jax.jit(got), x, kernel)
  y_want, pull_want = jax.vjp(want, x, kernel)
  dy = jnp.asarray(np.random.default_rng(2).normal(size=y.shape), jnp.bfloat16)
  for got_t, want_t in zip((y, *pull(dy)), (y_want, *pull_want(dy.astype(jnp.float32)))):
    assert got_t.dtype == jnp.bfloat16
    assert relative(got_t.astype(jnp.float32), want_t) < 1e-2


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_onednn_bfloat16_weight_gradient_where_taps_see_only_padding(impl):
  """A 3x3 kernel over one pixel: eight taps see only padding, so their gradient is zero.
  oneDNN 3.2 left them to whatever its scratchpad held about one call in four; called
  again and again, the gradient stays exactly zero there."""
  x, kernel, strides, padding = operands((1, 1, 1, 4, 4, 3, 2, "SAME"))
  x, kernel = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  grad = jax.jit(jax.grad(lambda k: jnp.sum(conv_lib.pick(impl)(
      x, k, strides, padding, dimension_numbers=NHWC).astype(jnp.float32))))
  for _ in range(20):
    dw = np.asarray(grad(kernel).astype(jnp.float32))
    assert not dw[[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]].any()
    np.testing.assert_allclose(dw[1, 1], np.broadcast_to(np.asarray(
        x[0, 0, 0].astype(jnp.float32))[:, None], (4, 4)), rtol=1e-2)


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_onednn_calls_side_by_side_share_the_cores(impl, monkeypatch):
  """Independent calls that XLA runs at once, each asking for more threads than there are
  cores: they take turns for the cores (none waits forever) and equal lax."""
  monkeypatch.setattr(onednn, "_threads", lambda: 64)
  x, kernel, strides, padding = operands(CASES[0])
  grad = lambda fn: jax.grad(functools.partial(loss, fn), argnums=(0, 1))
  views = lambda fn: lambda x, k: [grad(fn)(x * i, k, strides, padding) for i in (1, -2, 3)]
  got = jax.jit(views(conv_lib.pick(impl)))(x, kernel)
  for pair, want_pair in zip(got, views(lax.conv_general_dilated)(x, kernel)):
    for g, want in zip(pair, want_pair):
      assert relative(g, want) < 1e-5


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
def test_auto_leaves_the_largest_kernels_to_fast(impl, monkeypatch):
  """On a CPU with oneDNN: oneDNN's calls for kernels up to the limit, none above it."""
  x, kernel, strides, padding = operands(CASES[0])  # a 3x3 kernel of 16 x 32
  for limit, calls in ((kernel.size, 1), (kernel.size - 1, 0)):
    monkeypatch.setattr(conv_lib, "auto_cpu", functools.partial(
        conv_lib.onednn_conv_general_dilated, max_weights=limit))
    auto = conv_lib.pick("auto", "cpu")
    text = jax.jit(lambda x, k: auto(x, k, strides, padding, dimension_numbers=NHWC)).lower(
        x, kernel).as_text()
    assert text.count("jaxssl_onednn_forward") == calls
    got = jax.jit(lambda x, k: auto(x, k, strides, padding, dimension_numbers=NHWC))(x, kernel)
    assert relative(got, lax.conv_general_dilated(x, kernel, strides, padding,
                                                  dimension_numbers=NHWC)) < 1e-5


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_resnets_equal_either_way(backbone, impl):
  """The same parameters (names, shapes, values at init), features and gradients."""
  net = {"resnet18": functools.partial(ResNet18, stem="cifar", width=8),
         "resnet50": functools.partial(ResNet50, stem="imagenet", width=4)}[backbone]
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
    # first layers' gradients gather their summation-order differences (1.2e-5 seen).
    assert relative(a, b) < 1e-4


def test_convnet_is_unchanged():
  """The Fashion-MNIST CNN has only stride-1 3x3 convolutions: bit for bit lax's."""
  images = jnp.asarray(np.random.default_rng(3).normal(size=(4, 12, 12, 1)), jnp.float32)
  fast, xla = ConvNet(widths=(4, 8), conv="fast"), ConvNet(widths=(4, 8), conv="xla")
  variables = fast.init(jax.random.key(0), images, train=False)
  grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply({**variables, "params": p}, images,
                                                    train=False) ** 2))(variables["params"])
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


def test_onednn_off_cpu_names_the_key():
  with pytest.raises(ConfigError, match="config.model.conv: 'onednn' runs on CPU only"):
    conv_lib.check("onednn", "gpu")


def test_onednn_without_its_library_or_compiler_says_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setattr(onednn, "prefix", lambda: tmp_path)
  assert "oneDNN's headers are not in" in onednn.unavailable()
  (tmp_path / "include" / "oneapi" / "dnnl").mkdir(parents=True)
  (tmp_path / "include" / "oneapi" / "dnnl" / "dnnl.hpp").touch()
  (tmp_path / "lib").mkdir()
  (tmp_path / "lib" / "libdnnl.so").touch()
  monkeypatch.setenv("CXX", "no-such-compiler")
  assert onednn.unavailable() == "no C++ compiler (g++, or $CXX) on PATH"
  monkeypatch.setattr(onednn, "load", onednn.load.__wrapped__)  # past the cached success
  with pytest.raises(ConfigError, match=r"pip install 'jaxssl\[onednn\]'"):
    onednn.load()


def test_onednn_build_failure_quotes_the_compiler(monkeypatch, tmp_path):
  if onednn.unavailable():
    pytest.skip(onednn.unavailable())
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached library: a fresh build
  monkeypatch.setenv("CXX", "false")  # a "compiler" that fails
  with pytest.raises(ConfigError, match="building oneDNN's convolutions failed") as error:
    onednn.build_library()
  assert "set model.conv to 'fast' or 'xla'" in str(error.value)
