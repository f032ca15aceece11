"""W-MSE on CIFAR-10 or CIFAR-100 (ResNet-18, 1000 epochs; htdt/self-supervised's CIFAR run).

    python -m jaxssl.data.prepare cifar10_bin     # once (cifar100_bin for CIFAR-100)
    python -m jaxssl.train --config configs/wmse_cifar.py:cifar100 --workdir runs/wmse_c100

Embedding 64 through a 1024-wide projector, whitening sub-batches of 128 rows (eps 0, one
iteration), Adam at lr 3e-3 with weight decay 1e-6. Differences from the official code, which
change the schedule's shape only: decoupled weight decay (AdamW, not Adam's L2) and a cosine
decay after 2 warm-up epochs in place of its warm-up of 500 steps and two x0.2 drops 50 and 25
epochs before the end.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cifar10", "cifar100")
  c = jc.cifar_config("cifar100" if "cifar100" in given else "cifar10")
  c.method.name = "wmse"
  c.method.kwargs.update(w_size=128, eps=0.0)
  c.model.projector = "1024-64"
  c.optim.update(name="adamw", lr=3e-3, scale_lr_by_batch=False, weight_decay=1e-6,
                 clip_trust_ratio=False, warmup_epochs=2.0)
  return jc.finish(c, given)
