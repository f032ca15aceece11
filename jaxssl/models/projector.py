"""The projector MLP of VICReg / Barlow Twins / CorInfoMax, given as a string of widths."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.errors import ConfigError
from jaxssl.models import dense
from jaxssl.models.norm import BatchNorm


def parse_widths(spec: str) -> tuple[int, ...]:
  """``"8192-8192-8192"`` -> ``(8192, 8192, 8192)``, with a clear error on anything else."""
  try:
    widths = tuple(int(w) for w in spec.split("-"))
  except (AttributeError, ValueError):
    widths = ()
  if not widths or min(widths) <= 0:
    raise ConfigError(f"config.model.projector: must be positive widths joined by '-', like "
                      f"'8192-8192-8192'; got {spec!r}.")
  return widths


class Projector(nn.Module):
  """(Linear, BatchNorm, ReLU) for every width but the last, then a Linear without bias.

  ``batch_norm=False`` gives CorInfoMax's CIFAR projector (Linear-ReLU blocks).
  """
  spec: str
  batch_norm: bool = True
  conv: str = "auto"  # model.conv: "xla" leaves the matmuls' gradients to JAX (models.dense)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, views: int = 1):
    widths = parse_widths(self.spec)
    linear = functools.partial(nn.Dense, dtype=self.dtype, dot_general=dense.pick(self.conv))
    x = x.astype(self.dtype)
    for width in widths[:-1]:
      x = linear(width, use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=self.dtype, views=views)(x)
      x = nn.relu(x)
    return linear(widths[-1], use_bias=False)(x).astype(jnp.float32)
