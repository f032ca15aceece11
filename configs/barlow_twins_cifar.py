"""Barlow Twins on CIFAR-10 or CIFAR-100 (ResNet-18, 1000 epochs).

    python -m jaxssl.data.prepare cifar10_bin     # once (cifar100_bin for CIFAR-100)
    python -m jaxssl.train --config configs/barlow_twins_cifar.py:cifar100 --workdir runs/bt_c100

lambda 0.0051 (official), projector 2048-2048-2048 and the LARS recipe of
``jaxssl.config.cifar_config`` (solo-learn's; it also multiplies the loss by 0.1, which the
clipped trust ratio makes nearly irrelevant and jaxssl does not do).
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cifar10", "cifar100")
  c = jc.cifar_config("cifar100" if "cifar100" in given else "cifar10")
  c.method.name = "barlow_twins"
  c.method.kwargs.lambd = 0.0051
  return jc.finish(c, given)
