"""Information-theoretic VICReg on CIFAR-10 or CIFAR-100 (ResNet-18, 1000 epochs).

    python -m jaxssl.data.prepare cifar10_bin     # once (cifar100_bin for CIFAR-100)
    python -m jaxssl.train --config configs/info_vicreg_cifar.py --workdir runs/iv_cifar10
    python -m jaxssl.train --config configs/info_vicreg_cifar.py:cifar100,pairdist \\
        --workdir runs/iv_pair_c100

The switch ``logdet`` (default) or ``pairdist`` picks the entropy estimator (Shwartz-Ziv et
al., NeurIPS 2023): the invariance term plus the LogDet or pairwise-distance entropy of each
branch in place of VICReg's variance and covariance terms, with the VICReg CIFAR recipe of
``jaxssl.config.cifar_config`` (the paper builds on solo-learn). The coefficients are
``jaxssl.losses.info_vicreg``'s defaults; tune ``--config.method.kwargs.ent_coeff``.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cifar10", "cifar100", "logdet", "pairdist")
  if {"logdet", "pairdist"} <= given:
    raise jc.ConfigError("Pick one entropy estimator: logdet or pairdist, not both.")
  c = jc.cifar_config("cifar100" if "cifar100" in given else "cifar10")
  c.method.name = "info_vicreg_pairdist" if "pairdist" in given else "info_vicreg_logdet"
  return jc.finish(c, given)
