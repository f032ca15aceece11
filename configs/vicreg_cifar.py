"""VICReg on CIFAR-10 or CIFAR-100 (the published CIFAR recipe, ResNet-18, 1000 epochs).

    python -m jaxssl.data.prepare cifar10_bin     # once (cifar100_bin for CIFAR-100)
    python -m jaxssl.train --config configs/vicreg_cifar.py --workdir runs/vicreg_cifar10
    python -m jaxssl.train --config configs/vicreg_cifar.py:cifar100 --workdir runs/vicreg_c100

Coefficients are the official ones (sim 25, std 25, cov 1); the rest is
``jaxssl.config.cifar_config`` (solo-learn's recipe).
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cifar10", "cifar100")
  c = jc.cifar_config("cifar100" if "cifar100" in given else "cifar10")
  c.method.name = "vicreg"
  return jc.finish(c, given)
