"""CorInfoMax on Fashion-MNIST (the CPU recipe of ``jaxssl.config.fashion_mnist_config``).

    python -m jaxssl.train --config configs/corinfomax_fashion_mnist.py --workdir runs/cim

The official CIFAR-10 shape: alpha 250, a 64-wide embedding without BatchNorm in the
projector, running covariances with la_R = la_mu = 0.01; the optimiser and learning rate from
the sweep in ``bench/results/methods.json``.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.fashion_mnist_config()
  c.method.name = "corinfomax"
  c.method.kwargs.update(alpha=250.0, la_R=0.01, la_mu=0.01, eps=1e-8, normalize=True)
  c.model.projector, c.model.projector_bn = "1024-1024-64", False
  c.optim.lr = 3.2
  return jc.finish(c, given)
