"""CorInfoMax on ImageNet: ResNet-50 with the CIFAR-100 CorInfoMax settings scaled up
(alpha 1000, projector 4096-4096-128 without BatchNorm, SGD lr 0.5 for batch 512 scaled
linearly to batch 2048, 10 warm-up epochs, cosine), the official asymmetric augmentation at
224, 1000 epochs. The paper reports no ImageNet-1k run, so unlike the CIFAR configs this one
is an extrapolation to tune, not a reproduction.

    python -m jaxssl.train --config configs/corinfomax_imagenet.py --workdir /mnt/BUCKET/cim

The pipeline caveat of ``vicreg_imagenet.py`` applies.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.imagenet_config()
  c.method.name = "corinfomax"
  c.method.kwargs.update(alpha=1000.0, la_R=0.01, la_mu=0.01, eps=1e-8, normalize=True)
  c.model.projector, c.model.projector_bn = "4096-4096-128", False
  c.optim.update(name="sgd", lr=0.5 * 2048 / 512, scale_lr_by_batch=False, momentum=0.9,
                 weight_decay=1e-4, warmup_epochs=10.0, end_lr_factor=0.0)
  return jc.finish(c, given)
