"""The datasets ``python -m jaxssl.data.prepare`` makes, where from, and where they go.

Archives come from their publishers' addresses with the checksums published for them (TFDS's
sha256 where TFDS lists the file; the md5s of Imagewoof's two published versions otherwise).
TFDS-style datasets (``archives.BUILDERS``) are built into the TFDS data dir; folder datasets
(Imagenette, Imagewoof, ImageNet-100) are unpacked or linked under ``<data dir>/folders/`` and
read by name as folders (``jaxssl.data.folder``).
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class Archive:
  url: str
  algorithm: str  # "sha256" or "md5"
  digests: tuple[str, ...]  # any of these: the published versions of the file

  @property
  def filename(self) -> str:
    return self.url.rsplit("/", 1)[-1]


_FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"
ARCHIVES = {
    "cifar10_bin": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "sha256",
        ("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",)),
    "cifar100_bin": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "sha256",
        ("58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",)),
    "stl10_bin": Archive(
        "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "sha256",
        ("f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866",)),
    "imagenette_160": Archive(
        _FASTAI + "imagenette2-160.tgz", "sha256",
        ("64d0c4859f35a461889e0147755a999a48b49bf38a7e0f9bd27003f10db02fe5",)),
    "imagenette_320": Archive(
        _FASTAI + "imagenette2-320.tgz", "sha256",
        ("569b4497c98db6dd29f335d1f109cf315fe127053cedf69010d047f0188e158c",)),
    "imagewoof_160": Archive(_FASTAI + "imagewoof2-160.tgz", "md5",
                             ("fcd23cc7dfce8837c95a8f9d63a128b7",
                              "3d200a7be99704a0d7509be2a9fbfe15")),
    "imagewoof_320": Archive(_FASTAI + "imagewoof2-320.tgz", "md5",
                             ("af65be7963816efa949fa3c3b4947740",
                              "0f46d997ec2264e97609196c95897a44")),
}
# Folder datasets: name -> the folder under <data dir>/folders (train/ and val/ inside).
FOLDERS = {"imagenette_160": "imagenette2-160", "imagenette_320": "imagenette2-320",
           "imagewoof_160": "imagewoof2-160", "imagewoof_320": "imagewoof2-320",
           "imagenet100": "imagenet100"}

# ImageNet-100: the 100 classes of CMC (Tian et al., 2019) that solo-learn uses
# (solo/data/dataset_subset/imagenet100_classes.txt), in that file's order.
IMAGENET100 = tuple("""
n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890 n03062245
n01773797 n01735189 n07831146 n07753275 n03085013 n04485082 n02105505 n01983481 n02788148
n03530642 n04435653 n02086910 n02859443 n13040303 n03594734 n02085620 n02099849 n01558993
n04493381 n02109047 n04111531 n02877765 n04429376 n02009229 n01978455 n02106550 n01820546
n01692333 n07714571 n02974003 n02114855 n03785016 n03764736 n03775546 n02087046 n07836838
n04099969 n04592741 n03891251 n02701002 n03379051 n02259212 n07715103 n03947888 n04026417
n02326432 n03637318 n01980166 n02113799 n02086240 n03903868 n02483362 n04127249 n02089973
n03017168 n02093428 n02804414 n02396427 n04418357 n02172182 n01729322 n02113978 n03787032
n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029 n03837869
n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630 n03584829 n02123045
n04229816 n02100583 n03642806 n04336792 n03259280 n02116738 n02108089 n03424325 n01855672
n02090622""".split())


def data_dir(given: str | None = None) -> str:
  """The data dir: ``given``, else ``$TFDS_DATA_DIR``, else TFDS's default."""
  return os.path.expanduser(given or os.environ.get("TFDS_DATA_DIR")
                            or tfds.core.constants.DATA_DIR)


def folder_path(name: str, given_data_dir: str | None = None) -> str:
  """Where the folder dataset ``name`` is prepared."""
  return os.path.join(data_dir(given_data_dir), "folders", FOLDERS[name])
