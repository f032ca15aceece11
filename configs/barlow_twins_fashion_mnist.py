"""Barlow Twins on Fashion-MNIST (the CPU recipe of ``jaxssl.config.fashion_mnist_config``).

    python -m jaxssl.train --config configs/barlow_twins_fashion_mnist.py --workdir runs/bt

lambda 0.0051 (official); the learning rate from the sweep in ``bench/results/methods.json``.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.fashion_mnist_config()
  c.method.name = "barlow_twins"
  c.method.kwargs.lambd = 0.0051
  c.optim.lr = 3.2
  return jc.finish(c, given)
