"""ResNet-18/50 (He et al., 2016) with the ImageNet stem or the CIFAR stem (3x3 conv, no
max-pool), as used by the VICReg, Barlow Twins, W-MSE and CorInfoMax code. The output is the
globally average-pooled feature vector (512 for ResNet-18, 2048 for ResNet-50 at width 64)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models import conv as conv_lib
from jaxssl.models.norm import BatchNorm

STEMS = ("imagenet", "cifar")


class BasicBlock(nn.Module):
  filters: int
  strides: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides))(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), (self.strides, self.strides))(residual)
      residual = self.norm()(residual)
    return nn.relu(residual + y)


class Bottleneck(nn.Module):
  filters: int
  strides: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x):
    residual = x
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides))(y)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), (self.strides, self.strides))(residual)
      residual = self.norm()(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """A ResNet trunk; ``stage_sizes`` and ``block`` pick the depth."""
  stage_sizes: Sequence[int]
  block: Any
  width: int = 64
  stem: str = "imagenet"
  conv: str = "auto"  # the convolution's implementation (jaxssl.models.conv)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, views: int = 1):
    if self.stem not in STEMS:
      raise ValueError(f"model.stem must be one of {STEMS}; got {self.stem!r}.")
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, padding="SAME",
                             conv_general_dilated=conv_lib.pick(self.conv))
    norm = functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, views=views)
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(x)
      x = nn.relu(norm(name="stem_norm")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    else:
      x = conv(self.width, (3, 3), name="stem_conv")(x)
      x = nn.relu(norm(name="stem_norm")(x))
    for stage, blocks in enumerate(self.stage_sizes):
      for index in range(blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        x = self.block(self.width * 2**stage, strides, conv, norm)(x)
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
