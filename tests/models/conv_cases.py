"""The convolutions the tests of model.conv run ("fast" and "onednn" against
lax.conv_general_dilated), and their helpers."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import onednn

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
