"""The model a method trains: backbone -> projector, plus a linear head on the features.

The head is the online linear probe (on ``stop_gradient`` of the features, so labels train
only the head) or, for supervised methods, a classifier trained with the backbone.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.errors import ConfigError
from jaxssl.models.convnet import ConvNet
from jaxssl.models.projector import Projector, parse_widths
from jaxssl.models.resnet import STEMS, ResNet18, ResNet50

BACKBONES = {"resnet18": ResNet18, "resnet50": ResNet50, "convnet": ConvNet}


def build_backbone(name: str, **kwargs) -> nn.Module:
  if name not in BACKBONES:
    raise ConfigError(f"config.model.backbone: must be one of {sorted(BACKBONES)}; got "
                      f"{name!r}.")
  return BACKBONES[name](**kwargs)


class SSLModel(nn.Module):
  backbone: nn.Module
  projector: nn.Module
  num_classes: int
  probe_gradient: bool = False  # True: the head's loss trains the backbone too

  def setup(self):
    self.head = nn.Dense(self.num_classes)

  def __call__(self, images, *, train: bool) -> dict[str, jax.Array]:
    features = self.backbone(images, train=train)
    head_in = features if self.probe_gradient else jax.lax.stop_gradient(features)
    return {"features": features,
            "embeddings": self.projector(features, train=train),
            "logits": self.head(head_in)}

  def embed(self, images, *, projector: bool = False) -> jax.Array:
    features = self.backbone(images, train=False)
    return self.projector(features, train=False) if projector else features


def model_from_config(cfg, num_classes: int, probe_gradient: bool = False) -> SSLModel:
  """``cfg``: the ``model`` section of a run config; a ``ConfigError`` names a bad field."""
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(cfg.dtype)
  if dtype is None:
    raise ConfigError(f"config.model.dtype: must be 'float32' or 'bfloat16'; got "
                      f"{cfg.dtype!r}.")
  kwargs: dict[str, Any] = {"dtype": dtype}
  if cfg.backbone == "convnet":
    kwargs.update(widths=tuple(cfg.widths), convs_per_stage=cfg.convs_per_stage)
  else:
    if cfg.stem not in STEMS:
      raise ConfigError(f"config.model.stem: must be one of {STEMS}; got {cfg.stem!r}.")
    kwargs.update(width=cfg.width, stem=cfg.stem)
  parse_widths(cfg.projector)  # checked now rather than at the first trace
  return SSLModel(backbone=build_backbone(cfg.backbone, **kwargs),
                  projector=Projector(cfg.projector, batch_norm=cfg.projector_bn, dtype=dtype),
                  num_classes=num_classes, probe_gradient=probe_gradient)
