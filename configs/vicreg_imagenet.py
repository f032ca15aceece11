"""VICReg on ImageNet: the official recipe (ResNet-50, projector 8192-8192-8192, LARS, batch
2048, 1000 epochs; 73.2% linear top-1 reported).

    python -m jaxssl.train --config configs/vicreg_imagenet.py --workdir /mnt/BUCKET/vicreg_in1k

Needs ``imagenet2012`` prepared in array_record format (see the README); the host decodes each
JPEG with its two crops (``data.num_threads`` reader threads), the device does the rest of the
augmentation. On a pod, launch/tpu_pod.sh mounts the bucket at /mnt/BUCKET. Use
``--config.model.dtype=bfloat16`` on
accelerators (float32 parameters and regularisers stay float32).
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, *jc.VIT_SWITCHES)
  c = jc.imagenet_config()
  c.method.name = "vicreg"
  jc.imagenet_vit(c, given)
  return jc.finish(c, given)
