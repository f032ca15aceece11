"""VICReg on ImageNet: the official recipe (ResNet-50, projector 8192-8192-8192, LARS, batch
2048, 1000 epochs; 73.2% linear top-1 reported).

    python -m jaxssl.train --config configs/vicreg_imagenet.py --workdir gs://BUCKET/vicreg_in1k

Needs ``imagenet2012`` prepared in array_record format (see the README) and the host-side
JPEG decode + crop of variable-size images, which the input pipeline does not have yet: until
it does, the trainer stops with an error saying so. Use ``--config.model.dtype=bfloat16`` on
accelerators (float32 parameters and regularisers stay float32).
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg)
  c = jc.imagenet_config()
  c.method.name = "vicreg"
  return jc.finish(c, given)
