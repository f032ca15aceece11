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
from jaxssl.models.conv import check as conv_check
from jaxssl.models.convnet import ConvNet
from jaxssl.models.projector import Projector, parse_widths
from jaxssl.models.resnet import STEMS, ResNet18, ResNet50
from jaxssl.models.vit import POOLS, POSEMBS, ViT

BACKBONES = {"resnet18": ResNet18, "resnet50": ResNet50, "convnet": ConvNet, "vit": ViT}


def build_backbone(name: str, **kwargs) -> nn.Module:
  if name not in BACKBONES:
    raise ConfigError(f"config.model.backbone: must be one of {sorted(BACKBONES)}; got "
                      f"{name!r}.")
  return BACKBONES[name](**kwargs)


class SSLModel(nn.Module):
  backbone: nn.Module
  projector: nn.Module
  num_classes: int  # of the online linear head; 0: no head (unlabeled data)
  probe_gradient: bool = False  # True: the head's loss trains the backbone too

  def setup(self):
    if self.num_classes:
      self.head = nn.Dense(self.num_classes)

  def __call__(self, images, *, train: bool, views: int = 1) -> dict[str, jax.Array]:
    """``views``: how many views of each image ``images`` holds, interleaved (rows ``v, v +
    views, ...`` are view ``v``); in training, BatchNorm's statistics are per view
    (``models.norm``)."""
    features = self.backbone(images, train=train, views=views)
    out = {"features": features,
           "embeddings": self.projector(features, train=train, views=views)}
    if self.num_classes:
      head_in = features if self.probe_gradient else jax.lax.stop_gradient(features)
      out["logits"] = self.head(head_in)
    return out

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
  conv_check(cfg.conv)
  if cfg.backbone == "convnet":
    kwargs.update(widths=tuple(cfg.widths), convs_per_stage=cfg.convs_per_stage, conv=cfg.conv)
  elif cfg.backbone == "vit":
    kwargs.update(vit_settings(cfg.vit))
  else:
    if cfg.stem not in STEMS:
      raise ConfigError(f"config.model.stem: must be one of {STEMS}; got {cfg.stem!r}.")
    kwargs.update(width=cfg.width, stem=cfg.stem, conv=cfg.conv)
  parse_widths(cfg.projector)  # checked now rather than at the first trace
  return SSLModel(backbone=build_backbone(cfg.backbone, **kwargs),
                  projector=Projector(cfg.projector, batch_norm=cfg.projector_bn, conv=cfg.conv,
                                      dtype=dtype),
                  num_classes=num_classes, probe_gradient=probe_gradient)


def vit_settings(vit) -> dict[str, Any]:
  """The ``model.vit`` section as ``ViT``'s fields, each checked."""
  def check(ok, key, message):
    if not ok:
      raise ConfigError(f"config.model.vit.{key}: {message}")
  for key in ("width", "depth", "mlp_dim", "heads", "patch"):
    check(isinstance(vit[key], int) and vit[key] > 0, key, f"must be a positive integer; got "
          f"{vit[key]!r}.")
  check(vit.width % vit.heads == 0, "heads", f"must divide the width ({vit.width}); got "
        f"{vit.heads}.")
  check(vit.pool in POOLS, "pool", f"must be one of {POOLS}; got {vit.pool!r}.")
  check(vit.posemb in POSEMBS, "posemb", f"must be one of {POSEMBS}; got {vit.posemb!r}.")
  check(vit.posemb != "sincos2d" or vit.width % 4 == 0, "width",
        f"must be a multiple of 4 for the sincos2d position embedding; got {vit.width}.")
  check(0 <= vit.drop_path < 1, "drop_path", f"must be in [0, 1); got {vit.drop_path}.")
  return dict(vit)
