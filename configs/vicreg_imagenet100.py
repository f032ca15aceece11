"""VICReg on ImageNet-100: solo-learn's published recipe (scripts/pretrain/imagenet-100/
vicreg.yaml: ResNet-18, projector 2048-2048-2048, 25/25/1, LARS lr 0.3, batch 256, 400
epochs; both views with crops of 20-100%, blur p 0.5 and solarisation p 0.1).

    python -m jaxssl.data.prepare imagenet100 --imagenet_dir /data/imagenet    # once
    python -m jaxssl.train --config configs/vicreg_imagenet100.py --workdir runs/vicreg_in100

``jaxssl.config.imagenet100_config`` is the shared recipe.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.imagenet100_config()
  c.method.name = "vicreg"
  for view in (c.aug.view_a, c.aug.view_b):  # solo-learn's symmetric vicreg.yaml views
    view.update(crop_scale=(0.2, 1.0), blur_prob=0.5, solarize_prob=0.1)
  return jc.finish(c, given)
