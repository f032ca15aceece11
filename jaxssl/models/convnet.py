"""A small VGG-style CNN for CPU runs on 28x28 or 32x32 images: ``len(widths)`` stages of
(3x3 conv, BatchNorm, ReLU) x ``convs_per_stage``, 2x2 max-pool between stages, global average
pool at the end. The output has ``widths[-1]`` features."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models import conv as conv_lib
from jaxssl.models.norm import BatchNorm


@jax.custom_vjp
def max_pool_2x2(x):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` on channels-last ``x`` (an odd last row or
  column dropped, as there), values and gradient: the maximum over each window as a reshape
  and a reduction, and the gradient to the window's first maximum in row-major order, where
  ``nn.max_pool``'s goes (ties are common: a flat background gives equal activations). XLA:CPU
  runs ``nn.max_pool``'s reduce-window and its gradient on a generic loop: about 130 ms
  forward + backward for the quickstart CNN's three pools at 256 images on one device, against
  7 ms this way (bench/README.md, "The quickstart's trainer"). The gradient is written out
  (``jax.custom_vjp``), so forward-mode differentiation (``jax.jvp``) is not defined for it,
  as for ``model.conv``'s ``"fast"`` and ``"onednn"``."""
  return _windows(x).max(axis=(2, 4))


def _windows(x):
  """``x``'s 2x2 windows, as ``(n, h // 2, 2, w // 2, 2, c)``: its row in a window on axis 2,
  its column on axis 4."""
  n, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _max_pool_2x2_fwd(x):
  return max_pool_2x2(x), x


def _max_pool_2x2_bwd(x, dy):
  # Which input of each window is its first maximum, from comparisons between the inputs
  # alone: compared with the forward's output instead, an input that XLA recomputes in
  # another fusion (rounded another way) can miss its own maximum and lose the gradient.
  n, h, w, c = x.shape
  windows = _windows(x)
  taps = [windows[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]
  best, first = taps[0], jnp.zeros(dy.shape, jnp.int8)
  for k, tap in enumerate(taps[1:], 1):
    larger = tap > best
    best, first = jnp.where(larger, tap, best), jnp.where(larger, jnp.int8(k), first)
  zero = jnp.zeros((), dy.dtype)
  parts = [jnp.where(first == k, dy, zero) for k in range(4)]
  dx = jnp.stack([jnp.stack(parts[:2], axis=3), jnp.stack(parts[2:], axis=3)], axis=2)
  dx = dx.reshape(n, h // 2 * 2, w // 2 * 2, c)
  return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


class ConvNet(nn.Module):
  widths: Sequence[int] = (32, 64, 128)
  convs_per_stage: int = 2
  conv: str = "auto"  # the convolution's implementation (jaxssl.models.conv)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, views: int = 1):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), use_bias=False, dtype=self.dtype,
                             conv_general_dilated=conv_lib.pick(self.conv))
    norm = functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, views=views)
    x = x.astype(self.dtype)
    for stage, width in enumerate(self.widths):
      if stage:
        x = max_pool_2x2(x)
      for _ in range(self.convs_per_stage):
        x = nn.relu(norm()(conv(width)(x)))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
