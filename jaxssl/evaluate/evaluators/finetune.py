"""Semi-supervised fine-tuning on a fraction of the labels, against the same from scratch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.config import check
from jaxssl.data import source as source_lib
from jaxssl.evaluate import probes
from jaxssl.evaluate.evaluators.base import Evaluator, register
from jaxssl.evaluate.evaluators.training import (augmented_views, batches, check_training,
                                                 training_plan)
from jaxssl.evaluate.restore import Encoder, variables

@register
class Finetune(Evaluator):
  """Semi-supervised fine-tuning (VICReg's ``evaluate.py --weights finetune``): the whole
  network, backbone and a new linear head, trained with SGD (momentum, cosine schedule,
  separate backbone and head learning rates, BatchNorm in training mode) for ``epochs`` on
  random resized crops and flips of a class-balanced ``fraction`` of the train labels (drawn
  with the seed: the same on any process count); top-1 on the eval split. Beside it, as
  ``<name>_scratch``, the same network freshly initialised and trained the same way on the
  same subset."""
  kind, accuracies, details = "finetune", ("finetune",), ("finetune_examples",)
  needs_head = True

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
    check_training(self, settings, "backbone_lr", "head_lr")
    check(0 < settings.fraction <= 1, self.key("fraction"),
          f"must be in (0, 1]; got {settings.fraction}.")

  def run(self, context):
    encoder = context.encoder
    run = encoder.run
    # The labeled fraction of the train split, or of its strided subset of
    # ``context.examples[0]`` examples (``--examples``); the test split likewise.
    train, test = run.eval_train_source, run.eval_source
    labels = source_lib.labels_of(train)
    if context.examples[0] is not None:
      train = source_lib.strided(train, context.examples[0])
      labels = labels[train.ids]
    if context.examples[1] is not None:
      test = source_lib.strided(test, context.examples[1])
    ids = source_lib.balanced_subset(labels, self.settings.fraction, self.seed)
    split = source_lib.Subset(train, ids)
    for suffix, start in (("", encoder.variables), ("_scratch", variables(run.init_state()))):
      tuned = self.tune(run, start, split)
      test_x, test_y = Encoder(run, tuned, encoder.step).features(
          test, batch=run.config.eval.batch, watchdog=context.watchdog)
      head = jax.device_get(tuned["params"]["head"])
      logits = np.asarray(test_x, np.float32) @ head["kernel"] + head["bias"]
      yield "finetune" + suffix, probes.accuracy(np.argmax(logits, 1), test_y)
    yield "finetune_examples", len(ids)

  def tune(self, run, start: dict, split) -> dict:
    """``start``'s variables with a new head, the network fine-tuned on ``split``."""
    s = self.settings
    batch, view, steps = training_plan(self, run, len(split))
    key = jax.random.key(self.seed)
    # Replicated, whatever the training sharded (train.state_sharding): the step updates
    # every parameter on every device.
    start = jax.jit(lambda tree: tree, out_shardings=NamedSharding(run.mesh, P()))(start)
    params = dict(start["params"])
    kernel = params["head"]["kernel"]
    params["head"] = {"kernel": 0.01 * jax.random.normal(key, kernel.shape, kernel.dtype),
                      "bias": jnp.zeros(kernel.shape[-1], kernel.dtype)}

    def sgd(lr):
      return optax.chain(optax.add_decayed_weights(s.weight_decay),
                         optax.sgd(optax.cosine_decay_schedule(lr, steps), momentum=s.momentum))
    part = lambda name: name if name in ("backbone", "head") else "frozen"  # the projector
    tx = optax.multi_transform(
        {"backbone": sgd(s.backbone_lr), "head": sgd(s.head_lr), "frozen": optax.set_to_zero()},
        lambda tree: {name: jax.tree.map(lambda _, n=name: part(n), sub)
                      for name, sub in tree.items()})
    step = _finetune_step(run.model, view, tx, run.mesh)
    carry = (params, start["batch_stats"], tx.init(params))
    for i, batch_ in enumerate(batches(run, split, batch, view, steps, self.seed)):
      carry = step(carry, batch_, jax.random.fold_in(key, i))
    return {"params": carry[0], "batch_stats": carry[1]}


def _finetune_step(model, view, tx, mesh):
  """``step((params, batch_stats, opt_state), batch, key) -> same``, jitted over ``mesh``:
  backbone and head trained on the crops' cross-entropy, BatchNorm statistics of the batch."""

  def logits_of(module, x):
    return module.head(module.backbone(x, train=True))

  def step(carry, batch, key):
    params, batch_stats, opt_state = carry
    x = augmented_views(batch, view, key)

    def loss_fn(params):
      logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                    method=logits_of, mutable=["batch_stats"],
                                    rngs={"dropout": jax.random.fold_in(key, 1)})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
      return loss, {**batch_stats, **updates.get("batch_stats", {})}
    grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state

  replicated = NamedSharding(mesh, P())
  return jax.jit(step, in_shardings=(replicated, NamedSharding(mesh, P("data")), replicated),
                 out_shardings=replicated)
