"""Supervised training with VCReg on Fashion-MNIST (``jaxssl.config.fashion_mnist_config``).

    python -m jaxssl.train --config configs/vcreg_fashion_mnist.py --workdir runs/vcreg
    python -m jaxssl.train --config configs/vcreg_fashion_mnist.py:plain --workdir runs/sup

The labels train the backbone through the linear head; VCReg (variance 25, covariance 1, the
VICReg coefficients) regularises the projector's output of each view. ``plain``: the same
supervised run without VCReg (method ``supervised``), its baseline.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "plain")
  c = jc.fashion_mnist_config()
  if "plain" in given:
    c.method.name = "supervised"
  else:
    c.method.name = "vcreg"
    c.method.kwargs.update(std_coeff=25.0, cov_coeff=1.0)
  c.optim.lr = 3.2
  return jc.finish(c, given)
