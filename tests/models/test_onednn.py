"""model.conv="onednn" beyond what every implementation shares (test_conv.py): bfloat16 to its
rounding, calls side by side, what it says where it cannot run, the kernels it passes over and
its weight gradients in slices."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxssl.errors import ConfigError
from jaxssl.models import conv as conv_lib
from jaxssl.models import onednn
from tests.models.conv_cases import CASES, IMPLS, NHWC, loss, operands, relative
from tests.test_distributed import ROOT


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


# (gradient, input channels, the oneDNN 3.2 implementation passed over, its log's direction)
PASSED_OVER = [
    # A ResNet shortcut's input gradient: "brgconv_strided" ran at about half the rate of the
    # 1x1 kernel.
    ("x", 64, "brgconv_strided", "backward_data"),
    # The weight gradient with 3 input channels: AVX2's "jit_1x1" wrote past its scratchpad
    # on one thread (this file's cases crashed the tests on a Zen 3 CPU).
    ("w", 3, "jit_1x1", "backward_weights"),
]


@pytest.mark.parametrize("impl", IMPLS[1:])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("wrt,channels,passed_over,direction", PASSED_OVER)
def test_onednn_strided_1x1_passes_over_what_onednn_conv_cc_names(impl, dtype, wrt, channels,
                                                                  passed_over, direction):
  """A strided 1x1 convolution's gradient (onednn_conv.cc's PassOver), on one thread per call
  (two devices on two cores): the call runs another implementation, as oneDNN's own log of
  the call shows, and still equals lax."""
  if dtype == "bfloat16" and not onednn.native_bfloat16():
    pytest.skip("bfloat16 goes to 'fast' on this CPU")
  code = f"""if True:
    import jax, jax.numpy as jnp, numpy as np
    from jax import lax
    from jaxssl.models import conv
    from tests.models.conv_cases import relative
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, {channels})), "{dtype}")
    k = jnp.asarray(np.random.default_rng(1).normal(size=(1, 1, {channels}, 128)), "{dtype}")
    loss = lambda fn: lambda x, k: jnp.sum(
        fn(x, k, (2, 2), "SAME", dimension_numbers={NHWC}).astype(jnp.float32) ** 2)
    grad = lambda fn: jax.grad(loss(fn), argnums={0 if wrt == "x" else 1})
    got, want = jax.jit(grad(conv.pick("{impl}")))(x, k), grad(lax.conv_general_dilated)(x, k)
    print("relative error", relative(got.astype(float), want.astype(float)))"""
  env = {**os.environ, "ONEDNN_VERBOSE": "1", "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={os.cpu_count()}"}
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True).stdout
  calls = [line for line in out.splitlines() if ",exec," in line and f",{direction}," in line]
  assert calls and not any(f",{passed_over}:" in line for line in calls), calls
  error = float(out.rsplit("relative error", 1)[1])
  assert error < (1e-5 if dtype == "float32" else 2e-2)


@pytest.mark.parametrize("impl", IMPLS[1:])
@pytest.mark.parametrize("devices", [1, 8])
def test_onednn_weight_gradient_in_slices_of_its_output_channels(impl, devices, monkeypatch):
  """Without AVX-512 a weight gradient of over ``onednn.SLICED_WEIGHT_GRADIENT`` weights is
  one call per slice of its output channels. Forced here at a small size: the slices cover
  each channel once, the program makes one call each, and the gradient equals lax's, on one
  device and with the batch split over eight."""
  monkeypatch.setattr(onednn, "no_avx512", lambda: True)
  monkeypatch.setattr(onednn, "SLICED_WEIGHT_GRADIENT", 3 * 3 * 5 * 16)
  x, kernel, strides, padding = operands((8, 6, 6, 5, 72, 3, 1, "SAME"))
  assert onednn._output_slices(kernel.shape) == [(0, 18), (18, 36), (36, 54), (54, 72)]
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))
  x = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  grad = lambda fn: jax.grad(lambda x, k: loss(fn, x, k, strides, padding), argnums=1)
  compiled = jax.jit(grad(conv_lib.pick(impl))).lower(x, kernel).compile()
  assert compiled.as_text().count('custom_call_target="jaxssl_onednn_backward_weights"') == 4
  assert relative(compiled(x, kernel), grad(lax.conv_general_dilated)(x, kernel)) < 1e-5
