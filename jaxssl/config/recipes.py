"""The published recipes the files under ``configs/`` start from: the CPU recipe of
Fashion-MNIST, CIFAR (solo-learn's), ImageNet (the official VICReg and Barlow Twins runs, and
their ViT forms), ImageNet-100 (solo-learn's), and a folder of one's own images."""

from __future__ import annotations

import ml_collections

from jaxssl.config.schema import (CIFAR10_STATS, CIFAR100_STATS, IMAGENET_STATS, base_config,
                                  vicreg_views, vit_config)
from jaxssl.errors import ConfigError


def fashion_mnist_config() -> ml_collections.ConfigDict:
  """The CPU recipe every ``configs/*_fashion_mnist.py`` starts from (about 10 minutes on 2
  cores): the small CNN, a 1024-1024-1024 projector, crops of 20-100% area (a 28x28 crop at
  the ImageNet recipe's 8% is 8x8 pixels), batch 256, 3 epochs, LARS with half an epoch of
  warm-up. The method files set the method, its coefficients and the learning rate, chosen by
  the sweep recorded in ``bench/results/methods.json``."""
  c = base_config()
  c.model.widths, c.model.convs_per_stage = (32, 64, 128, 256), 1
  c.model.projector = "1024-1024-1024"
  for view in (c.aug.view_a, c.aug.view_b):
    view.crop_scale = (0.2, 1.0)
  c.optim.warmup_epochs = 0.5
  c.train.epochs = 3
  c.train.log_every = 50
  c.train.eval_every = c.train.checkpoint_every = 200
  # Measured on the 3-epoch VICReg checkpoint (bench/README.md): at 28x28 every crop costs
  # the linear head accuracy (86.8% with flips only, 84.7% at crops of 60-100%, 83.0% at
  # 20-100%), and 10 epochs at lr 0.3 do what 100 would. Fine-tuning keeps the training crops.
  c.evals.linear.update(epochs=10, lr=0.3, crop_scale=(1.0, 1.0))
  for entry in (c.evals.finetune_1, c.evals.finetune_10):
    entry.crop_scale = (0.2, 1.0)
  return c


def solo_learn_resnet18(c: ml_collections.ConfigDict, *, stem: str) -> None:
  """ResNet-18 (``stem``: "cifar" or "imagenet") with a 2048-2048-2048 projector and solo-learn's
  LARS: the clipped trust ratio (eta 0.02), lr 0.3 x batch/256, wd 1e-4 (no decay or
  adaptation of biases and norms), 10 warm-up epochs then cosine to 0."""
  c.model.backbone, c.model.stem, c.model.width = "resnet18", stem, 64
  c.model.projector = "2048-2048-2048"
  c.optim.update(name="lars", lr=0.3, eta=0.02, clip_trust_ratio=True, weight_decay=1e-4,
                 warmup_epochs=10.0, end_lr_factor=0.0)


def cifar_config(dataset: str) -> ml_collections.ConfigDict:
  """The CIFAR recipe of the published runs (solo-learn's, which the CorInfoMax and
  information-theoretic VICReg papers build on): ResNet-18 with the CIFAR stem, crops of
  20-100% area and no blur at 32x32, projector 2048-2048-2048, LARS with the clipped trust
  ratio (eta 0.02, lr 0.3 x batch/256, wd 1e-4, no decay or adaptation of biases and norms),
  10 warm-up epochs then cosine, batch 256, 1000 epochs."""
  stats = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS}[dataset]
  c = base_config()
  # Prepared from the original archive, no TensorFlow: python -m jaxssl.data.prepare NAME.
  c.data.name, c.data.train_split, c.data.eval_split = f"{dataset}_bin", "train", "test"
  c.aug = vicreg_views(32, stats)
  for view in (c.aug.view_a, c.aug.view_b):
    view.crop_scale, view.blur_prob = (0.2, 1.0), 0.0
  solo_learn_resnet18(c, stem="cifar")
  c.train.update(global_batch=256, epochs=1000, log_every=50, eval_every=1950,
                 checkpoint_every=1950)
  return c


def folder_config(given: set[str]) -> ml_collections.ConfigDict:
  """Pretraining on a folder of one's own images (``data.name="folder"``, ``data.path``):
  ResNet-18 with the ImageNet stem on 96x96 crops (STL-10's scale), the official asymmetric
  augmentation at that size with ImageNet's mean and std, projector 2048-2048-2048, solo-learn's
  LARS (eta 0.02, clipped trust ratio, lr 0.3 x batch/256, wd 1e-4), 10 warm-up epochs then
  cosine, batch 256, 200 epochs. The host decodes each image with its two crops. Switch
  ``cpu``: the Fashion-MNIST recipe's small CNN on 64x64 crops for 20 epochs (a first try on
  a CPU: minutes per thousand images)."""
  c = base_config()
  c.data.update(name="folder", eval_split="val", in_memory=False, num_threads=4)
  size = 64 if "cpu" in given else 96
  c.aug = vicreg_views(size, IMAGENET_STATS)
  if "cpu" in given:
    c.model.backbone, c.model.widths, c.model.convs_per_stage = "convnet", (32, 64, 128, 256), 1
    c.model.projector = "1024-1024-1024"
    c.optim.update(lr=1.6, warmup_epochs=1.0)
    c.train.update(epochs=20, global_batch=128, eval_every=500, checkpoint_every=500)
  else:
    solo_learn_resnet18(c, stem="imagenet")
    c.train.update(epochs=200, eval_every=2000, checkpoint_every=1000)
  c.eval.batch = 512
  return c


def imagenet_config() -> ml_collections.ConfigDict:
  """The official ImageNet recipe of VICReg (and Barlow Twins): ResNet-50, the full
  asymmetric augmentation at 224, projector 8192-8192-8192, LARS (eta 0.001, lr 0.2 x
  batch/256, wd 1e-6), 10 warm-up epochs then cosine to 0.001 x the peak, batch 2048,
  1000 epochs."""
  c = base_config()
  c.data.update(name="imagenet2012", train_split="train", eval_split="validation",
                in_memory=False, num_threads=16)
  c.aug = vicreg_views(224, IMAGENET_STATS)
  c.model.backbone, c.model.stem, c.model.width = "resnet50", "imagenet", 64
  c.model.projector = "8192-8192-8192"
  c.optim.update(name="lars", lr=0.2, eta=0.001, weight_decay=1e-6, warmup_epochs=10.0,
                 end_lr_factor=0.001)
  c.train.update(global_batch=2048, epochs=1000, log_every=100, eval_every=6250,
                 checkpoint_every=2500)
  c.eval.batch = 1024
  return c


def imagenet100_config() -> ml_collections.ConfigDict:
  """solo-learn's ImageNet-100 recipe (``scripts/pretrain/imagenet-100/``): ResNet-18 with the
  ImageNet stem at 224, crops of 20-100%, projector 2048-2048-2048, LARS with the clipped trust
  ratio (eta 0.02, lr 0.3 x batch/256, wd 1e-4, no decay or adaptation of biases and norms),
  10 warm-up epochs then cosine, batch 256 (2 GPUs x 128), 400 epochs. The data:
  ``python -m jaxssl.data.prepare imagenet100 --imagenet_dir DIR`` (a folder dataset)."""
  c = base_config()
  c.data.update(name="imagenet100", train_split="train", eval_split="val", in_memory=False,
                num_threads=16)
  c.aug = vicreg_views(224, IMAGENET_STATS)
  solo_learn_resnet18(c, stem="imagenet")
  c.train.update(global_batch=256, epochs=400, log_every=100, eval_every=2000,
                 checkpoint_every=1000)
  c.eval.batch = 512
  return c


VIT_SWITCHES = {"vit_s16": "S", "vit_b16": "B"}


def imagenet_vit(c: ml_collections.ConfigDict, given: set[str]) -> None:
  """The ViT form of an ImageNet recipe when ``given`` has a switch of ``VIT_SWITCHES``. No
  VICReg or Barlow Twins ViT recipe is published; the optimisation is the one DINO trains
  ViT-S/16 and ViT-B/16 with (AdamW, lr 5e-4 x batch/256, 10 warm-up epochs then cosine,
  gradient norm clipped at 3, stochastic depth 0.1, batch 1024) with a fixed weight decay of
  0.05 on every weight but biases, norms, the position embedding and the class token, 300
  epochs (MoCo v3's ViT budget), bfloat16 compute with float32 parameters and loss statistics.
  The method's projector and coefficients stay the ResNet recipe's."""
  chosen = sorted(given & set(VIT_SWITCHES))
  if len(chosen) > 1:
    raise ConfigError(f"Pick one ViT switch, not {' and '.join(chosen)}.")
  if not chosen:
    return
  c.model.backbone = "vit"
  c.model.vit = vit_config(VIT_SWITCHES[chosen[0]], 16, drop_path=0.1)
  c.model.dtype = "bfloat16"
  c.optim.update(name="adamw", lr=5e-4, scale_lr_by_batch=True, weight_decay=0.05,
                 warmup_epochs=10.0, end_lr_factor=0.0, clip_norm=3.0, bias_lr=None)
  c.train.update(global_batch=1024, epochs=300)
