"""Barlow Twins on ImageNet: the official recipe (ResNet-50, projector 8192-8192-8192, LARS
with lr 0.2 for weights and 0.0048 for biases and norms x batch/256, wd 1e-6 as the official
code (1.5e-6 in the paper), batch 2048, 1000 epochs; 73.5% linear top-1 reported).

    python -m jaxssl.train --config configs/barlow_twins_imagenet.py --workdir /mnt/BUCKET/bt

The pipeline caveat of ``vicreg_imagenet.py`` applies.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, *jc.VIT_SWITCHES)
  c = jc.imagenet_config()
  c.method.name = "barlow_twins"
  c.method.kwargs.lambd = 0.0051
  c.optim.bias_lr = 0.0048
  jc.imagenet_vit(c, given)
  return jc.finish(c, given)
