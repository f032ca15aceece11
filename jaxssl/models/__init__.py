"""Flax modules: backbones (ResNet, ViT, a small CNN), the projector MLP, the SSL model, and
BatchNorm over interleaved views (norm)."""

from jaxssl.models.model import SSLModel, build_backbone, model_from_config
from jaxssl.models.projector import Projector

__all__ = ["SSLModel", "Projector", "build_backbone", "model_from_config"]
