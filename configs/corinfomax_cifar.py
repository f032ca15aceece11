"""CorInfoMax on CIFAR-10 or CIFAR-100 (ResNet-18, 1000 epochs; serdarozsoy/corinfomax-ssl).

    python -m jaxssl.data.prepare cifar10_bin     # once (cifar100_bin for CIFAR-100)
    python -m jaxssl.train --config configs/corinfomax_cifar.py:cifar100 --workdir runs/cim_c100

The reported runs: alpha 250 and projector 2048-2048-64 (CIFAR-10), alpha 1000 and
4096-4096-128 (CIFAR-100), both without BatchNorm in the projector; running covariances from
1.0 x I with la_R = la_mu = 0.01, eps 1e-8, embeddings L2-normalised; SGD (momentum 0.9, wd
1e-4) at lr 0.5 for batch 512 with 10 warm-up epochs and cosine decay. The running
covariances are float32 (TPUs have no fast float64); the loss keeps them finite and close to
the official float64 path.
"""

from jaxssl import config as jc


def get_config(arg=None):
  given = jc.switches(arg, "cifar10", "cifar100")
  cifar100 = "cifar100" in given
  c = jc.cifar_config("cifar100" if cifar100 else "cifar10")
  c.method.name = "corinfomax"
  c.method.kwargs.update(alpha=1000.0 if cifar100 else 250.0, la_R=0.01, la_mu=0.01,
                         eps=1e-8, normalize=True)
  c.model.projector = "4096-4096-128" if cifar100 else "2048-2048-64"
  c.model.projector_bn = False
  c.optim.update(name="sgd", lr=0.5, scale_lr_by_batch=False, momentum=0.9, weight_decay=1e-4,
                 clip_trust_ratio=False, warmup_epochs=10.0)
  c.train.update(global_batch=512, eval_every=980, checkpoint_every=980)
  return jc.finish(c, given)
