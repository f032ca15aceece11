"""Run configs. A config file defines ``get_config(arg=None)``; ``arg`` is a comma-separated list
of switches (``smoke`` shrinks any run to a few steps of a tiny model, for tests and a first
try; files may take their own, like ``cifar100``). ``schema`` holds the defaults, loading and
the checks across fields; ``recipes`` the published recipes the files under ``configs/``
start from; ``upgrade`` the settings that moved, for configs saved by earlier versions.
"""

from jaxssl.config.recipes import (VIT_SWITCHES, cifar_config, fashion_mnist_config,
                                   folder_config, imagenet100_config, imagenet_config,
                                   imagenet_vit)
from jaxssl.config.schema import (CIFAR10_STATS, CIFAR100_STATS, FASHION_MNIST_STATS,
                                  IMAGENET_STATS, base_config, check, eval_config, evals_config,
                                  finish, load, method_kwargs, switches, validate, vicreg_views,
                                  view_config, views, vit_config)
from jaxssl.config.upgrade import MOVED, upgrade
from jaxssl.errors import ConfigError  # what the config files raise

__all__ = ["CIFAR100_STATS", "CIFAR10_STATS", "ConfigError", "FASHION_MNIST_STATS",
           "IMAGENET_STATS", "MOVED",
           "VIT_SWITCHES", "base_config", "check", "cifar_config", "eval_config", "evals_config",
           "fashion_mnist_config", "finish", "folder_config", "imagenet100_config",
           "imagenet_config", "imagenet_vit", "load", "method_kwargs", "switches", "upgrade",
           "validate", "vicreg_views", "view_config", "views", "vit_config"]
