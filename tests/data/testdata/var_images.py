"""The builder of ``tfds/var_images``: a tiny TFDS dataset with ``Image`` features of varying
size, in array_record format, checked in because writing ``Image`` features needs TensorFlow.
Regenerate (in an environment with tensorflow and tensorflow-datasets) with

    cd tests/data/testdata && python -c "import var_images; var_images.VarImages(
        data_dir='tfds', file_format='array_record').download_and_prepare()"
"""

import numpy as np
import tensorflow_datasets as tfds


class VarImages(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(0, 12), "test": self._generate_examples(1, 5)}

  def _generate_examples(self, seed, n):
    rng = np.random.default_rng(seed)
    for i in range(n):
      h, w = rng.integers(16, 48, 2)
      y, x = np.mgrid[0:h, 0:w]
      image = np.stack([(x * 5 + i * 20) % 256, (y * 5) % 256, np.full((h, w), 25 * (i % 10))],
                       -1).astype(np.uint8)
      yield i, {"image": image, "label": i % 10}
