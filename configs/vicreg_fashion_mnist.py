"""VICReg on Fashion-MNIST with a small CNN: the CPU default (about 10 minutes on 2 cores).

    python -m jaxssl.train --config configs/vicreg_fashion_mnist.py --workdir runs/fmnist
"""

from jaxssl import config as jc


def get_config(arg=None):
  c = jc.base_config()
  c.method.name = "vicreg"
  c.model.widths, c.model.convs_per_stage = (32, 64, 128, 256), 1
  c.model.projector = "512-512-512"
  # A 28x28 crop at the recipe's 8% area is 8x8 pixels; 20% keeps a recognisable garment.
  for view in (c.aug.view_a, c.aug.view_b):
    view.crop_scale = (0.2, 1.0)
  # Measured on 3-epoch runs: lr 0.2 (the VICReg base) gives 85.4% logistic probe, 0.8 gives
  # 87.1%; a 512-wide projector matches 1024 and is faster on CPU.
  c.optim.lr = 0.8
  c.optim.warmup_epochs = 0.5
  c.train.epochs = 3
  c.train.log_every = 50
  c.train.eval_every = c.train.checkpoint_every = 200
  return jc.apply_args(c, arg)
