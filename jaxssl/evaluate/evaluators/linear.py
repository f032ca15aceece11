"""The papers' linear evaluation: a linear head trained on frozen features of augmented
crops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.data import source as source_lib
from jaxssl.evaluate import probes
from jaxssl.evaluate.evaluators.base import Evaluator, register
from jaxssl.evaluate.evaluators.training import (augmented_views, batches, check_training,
                                                 training_plan)
from jaxssl.evaluate.restore import Encoder

@register
class Linear(Evaluator):
  """The papers' linear evaluation (VICReg's ``evaluate.py``): a linear head on the frozen
  backbone (BatchNorm in inference mode), trained with SGD (momentum, cosine schedule, weight
  decay) for ``epochs`` on random resized crops (``crop_scale``) and flips of the train split,
  batches drawn as training draws them (the same on any process count); top-1 and top-5 on
  the eval split's centre crops. Slower than the probes on cached features: each step runs
  the backbone on fresh crops."""
  kind, accuracies = "linear", ("linear",)  # and linear_top5

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
    check_training(self, settings, "lr")

  def run(self, context):
    head = self.train_head(context.encoder, context.examples[0])
    test_x, test_y = context.test
    logits = np.asarray(test_x, np.float32) @ head["w"] + head["b"]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    yield "linear", probes.accuracy(np.argmax(logits, 1), test_y)
    yield "linear_top5", float(np.mean(np.any(top5 == test_y[:, None], axis=1)))

  def train_head(self, encoder: Encoder, examples: int | None = None) -> dict[str, np.ndarray]:
    """The head ``{"w": (D, classes), "b": (classes,)}`` trained on the train split (its
    strided subset of ``examples``)."""
    run, s = encoder.run, self.settings
    split = run.eval_train_source
    if examples is not None:
      split = source_lib.strided(split, examples)
    batch, view, steps = training_plan(self, run, len(split))
    tx = optax.chain(optax.add_decayed_weights(s.weight_decay),
                     optax.sgd(optax.cosine_decay_schedule(s.lr, steps), momentum=s.momentum))
    step = _linear_step(run.model, view, tx, bool(run.config.eval.projector), run.mesh)
    key = jax.random.key(self.seed)
    dim = jax.eval_shape(lambda: encoder.embed(np.zeros((1, *run.image_shape), np.uint8),
                                               projector=bool(run.config.eval.projector)))
    classes = run.eval_train_info.num_classes
    head = {"w": 0.01 * jax.random.normal(key, (dim.shape[-1], classes)),  # as evaluate.py
            "b": jnp.zeros(classes)}
    carry = (head, tx.init(head))
    for i, batch_ in enumerate(batches(run, split, batch, view, steps, self.seed)):
      carry = step(encoder.variables, carry, batch_, jax.random.fold_in(key, i))
    return jax.tree.map(np.asarray, jax.device_get(carry[0]))


def _linear_step(model, view, tx, projector: bool, mesh):
  """``step(variables, (head, opt_state), batch, key) -> (head, opt_state)``, jitted over
  ``mesh`` (the batch sharded, the rest replicated): crops on the device unless the host
  made them, the frozen backbone, the head's cross-entropy and its update."""

  def step(variables, carry, batch, key):
    head, opt_state = carry
    x = augmented_views(batch, view, key)
    features = jax.lax.stop_gradient(
        model.apply(variables, x, projector=projector, method=model.embed))

    def loss_fn(head):
      logits = features.astype(jnp.float32) @ head["w"] + head["b"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    grads = jax.grad(loss_fn)(head)
    updates, opt_state = tx.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state

  # The encoder's variables stay where they are (replicated, or sharded by training's
  # train.state_sharding during training); the head and its optimiser are replicated.
  replicated = NamedSharding(mesh, P())
  return jax.jit(step, out_shardings=replicated)
