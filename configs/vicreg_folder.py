"""VICReg on a folder of your own images (class subfolders or none; local or gs://).

    python -m jaxssl.train --config configs/vicreg_folder.py --workdir runs/mine \
        --config.data.path=~/my_images [--config.data.eval_path=~/my_labeled_images]
    python -m jaxssl.train --config configs/vicreg_folder.py:cpu ...   # a first try on a CPU

``jaxssl.config.folder_config`` is the recipe (ResNet-18 on 96x96 crops, 200 epochs; ``cpu``:
the small CNN on 64x64 crops, 20 epochs); docs/data.md says how the folder is read.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cpu")
  c = jc.folder_config(given)
  c.method.name = "vicreg"
  return jc.finish(c, given)
