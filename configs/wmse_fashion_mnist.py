"""W-MSE on Fashion-MNIST (the CPU recipe of ``jaxssl.config.fashion_mnist_config``).

    python -m jaxssl.train --config configs/wmse_fashion_mnist.py --workdir runs/wmse

The official shape: a 64-wide embedding behind a 1024-wide hidden layer, whitened in blocks
of 128 rows (2x the embedding, eps 0); the optimiser and learning rate from the sweep in
``bench/results/methods.json``.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.fashion_mnist_config()
  c.method.name = "wmse"
  c.method.kwargs.update(w_size=128, eps=0.0)
  c.model.projector = "1024-64"
  c.optim.lr = 3.2
  return jc.finish(c, given)
