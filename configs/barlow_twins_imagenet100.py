"""Barlow Twins on ImageNet-100: solo-learn's published recipe (scripts/pretrain/imagenet-100/
barlow.yaml: ResNet-18, projector 2048-2048-2048, lambda 0.0051, LARS lr 0.3, batch 256, 400
epochs, the asymmetric views with crops of 8-100%).

    python -m jaxssl.data.prepare imagenet100 --imagenet_dir /data/imagenet    # once
    python -m jaxssl.train --config configs/barlow_twins_imagenet100.py --workdir runs/bt_in100

One difference: solo-learn multiplies this loss by 0.1 (``scale_loss``), which
``jaxssl.losses.barlow_twins`` does not take. Under unclipped LARS that would equal a 10x
weight decay on the adapted weights and a 10x smaller learning rate on biases and norms, but
not where solo-learn's trust-ratio clip is active, so no setting here imitates it: this
recipe trains the unscaled loss.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.imagenet100_config()
  c.method.name = "barlow_twins"
  c.method.kwargs.lambd = 0.0051
  for view in (c.aug.view_a, c.aug.view_b):  # the asymmetric views, crops of 8-100%
    view.crop_scale = (0.08, 1.0)
  return jc.finish(c, given)
