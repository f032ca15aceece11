"""A small VGG-style CNN for CPU runs on 28x28 or 32x32 images: ``len(widths)`` stages of
(3x3 conv, BatchNorm, ReLU) x ``convs_per_stage``, 2x2 max-pool between stages, global average
pool at the end. The output has ``widths[-1]`` features."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models import conv as conv_lib


class ConvNet(nn.Module):
  widths: Sequence[int] = (32, 64, 128)
  convs_per_stage: int = 2
  conv: str = "auto"  # the convolution's implementation (jaxssl.models.conv)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), use_bias=False, dtype=self.dtype,
                             conv_general_dilated=conv_lib.pick(self.conv))
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    x = x.astype(self.dtype)
    for stage, width in enumerate(self.widths):
      if stage:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for _ in range(self.convs_per_stage):
        x = nn.relu(norm()(conv(width)(x)))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
