"""VICReg on Fashion-MNIST with a small CNN: the CPU default (about 10 minutes on 2 cores).

    python -m jaxssl.train --config configs/vicreg_fashion_mnist.py --workdir runs/fmnist

The recipe shared by every ``*_fashion_mnist.py`` is ``jaxssl.config.fashion_mnist_config``;
the official coefficients (25/25/1). Learning rate from 3-epoch runs (logistic probe; a random
encoder gets 83.9%): 0.2, the VICReg base, 85.4%; 0.8 86.6%; 3.2 87.2% (with LARS the trust
ratio bounds each layer's step, so the peak lr can go far above the ImageNet value).
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.fashion_mnist_config()
  c.method.name = "vicreg"
  c.optim.lr = 3.2
  return jc.finish(c, given)
