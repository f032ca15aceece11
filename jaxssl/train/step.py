"""The train step: two augmented views on the device, the method's loss over the global
batch, the online linear probe, one optimiser update. Compiled once with ``jax.jit`` over a
``Mesh``: the state replicated (or sharded: ``train.state_sharding``), the batch sharded on
the data axis, the state's buffers donated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.data import augment
from jaxssl.models import norm
from jaxssl.train.state import TrainState

Metrics = dict[str, Any]  # nested: see make_update


def images_to_float(images: jax.Array) -> jax.Array:
  """uint8 images -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def head_metrics(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy and accuracy of the linear head over the labeled rows (label -1: none,
  as in STL-10's unlabeled split)."""
  labeled = labels >= 0
  # The means over all rows, rescaled to the labeled ones: the very same numbers when every
  # row has a label (the scale is then exactly 1).
  scale = labels.shape[0] / jnp.maximum(jnp.sum(labeled), 1)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  correct = (jnp.argmax(logits, -1) == labels) & labeled
  return jnp.mean(loss * labeled) * scale, jnp.mean(correct) * scale


def make_update(model, method, method_kwargs: dict[str, Any],
                tx: optax.GradientTransformation, *, seed: int,
                schedule: Callable[[jax.Array], jax.Array], skip_nonfinite: bool = False):
  """``update(state, x_a, x_b, labels) -> (state, metrics)``, not yet jitted: the step on two
  views that are already augmented and normalised (float ``(B, H, W, C)`` each).

  The two views go through the model in one pass, BatchNorm's statistics per view as in the
  official code's two passes (``models.norm``: the same numbers, the convolutions on one
  batch of 2B). The metrics are nested: ``loss``, the loss's own ``terms``, the
  online ``head``'s loss and accuracy, the ``optim``'s gradient norm and learning rate, and
  ``finite``, 1 when all of them are finite. With ``skip_nonfinite`` a step where they are
  not leaves the parameters, optimiser, BatchNorm and method state as they were (the step
  counter still advances, to the next batch) and counts itself in ``state.skipped``.
  """
  base_key = jax.random.key(seed)

  def loss_fn(params, state: TrainState, x_a, x_b, labels, key):
    # Both views in one pass, interleaved (a_0, b_0, a_1, ...: a device's images keep their
    # views); stochastic depth (ViT) draws from the loss key's own stream.
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                               norm.interleave(x_a, x_b), train=True, views=2,
                               mutable=["batch_stats"],
                               rngs={"dropout": jax.random.fold_in(key, 0)})
    loss, aux, method_state = method.loss(*norm.split_views(out["embeddings"], 2),
                                          state.method_state, key, **method_kwargs)
    metrics = {"loss": loss, "terms": aux}
    if "logits" not in out:  # unlabeled data: no online head
      return loss, (metrics, updates.get("batch_stats", {}), method_state)
    head_loss, head_acc = head_metrics(out["logits"], norm.interleave(labels, labels))
    metrics["head"] = {"loss": head_loss, "accuracy": head_acc}
    # Self-supervised methods: the head sees stop_gradient(features), so adding its loss
    # trains the head alone; supervised methods (VCReg) train the backbone through it.
    return loss + head_loss, (metrics, updates.get("batch_stats", {}), method_state)

  def update(state: TrainState, x_a: jax.Array, x_b: jax.Array,
             labels: jax.Array) -> tuple[TrainState, Metrics]:
    key_loss = step_keys(base_key, state.step)[1]
    grads, (metrics, batch_stats, method_state) = jax.grad(loss_fn, has_aux=True)(
        state.params, state, x_a, x_b, labels, key_loss)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["optim"] = {"grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    metrics["finite"] = finite.astype(jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, method_state=method_state)
    if skip_nonfinite:
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      new_state = new_state.replace(
          params=keep(params, state.params), batch_stats=keep(batch_stats, state.batch_stats),
          opt_state=keep(opt_state, state.opt_state),
          method_state=keep(method_state, state.method_state),
          skipped=state.skipped + (~finite).astype(jnp.int32))
    return new_state, metrics

  return update


def step_keys(base_key: jax.Array, step: jax.Array) -> jax.Array:
  """The step's two keys, ``[augmentation, loss]``: a function of the seed and step alone,
  so a resumed run draws what the uninterrupted one would have."""
  return jax.random.split(jax.random.fold_in(base_key, step))


def make_train_step(model, method, method_kwargs: dict[str, Any],
                    tx: optax.GradientTransformation, views: tuple[augment.ViewAugment, ...], *,
                    seed: int, schedule: Callable[[jax.Array], jax.Array],
                    skip_nonfinite: bool = False):
  """``train_step(state, batch) -> (state, metrics)``, not yet jitted: both views drawn on
  the device from ``batch = {"image": uint8 (B, H, W, C), "label": int32 (B,)}`` (or, for
  images the host already cropped, the photometric ops on ``batch["view_a"]`` and
  ``batch["view_b"]``), then :func:`make_update`'s step on them."""
  base_key = jax.random.key(seed)
  view_a, view_b = views
  update = make_update(model, method, method_kwargs, tx, seed=seed, schedule=schedule,
                       skip_nonfinite=skip_nonfinite)

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
    key_aug = step_keys(base_key, state.step)[0]
    host_crops = "view_a" in batch
    images = (batch["view_a"], batch["view_b"]) if host_crops else batch["image"]
    x_a, x_b = augment.two_views(key_aug, jax.tree.map(images_to_float, images), view_a, view_b,
                                 crop=not host_crops)
    return update(state, x_a, x_b, batch["label"])

  return train_step


def jit_train_step(train_step, state: TrainState, mesh: jax.sharding.Mesh, axis: str = "data"):
  """``jax.jit`` with the state where ``state`` (abstract or real) has it, donated, and the
  batch sharded on ``axis``; the metrics replicated."""
  state_shardings = jax.tree.map(lambda s: s.sharding, state)
  return jax.jit(train_step, in_shardings=(state_shardings, NamedSharding(mesh, P(axis))),
                 out_shardings=(state_shardings, NamedSharding(mesh, P())), donate_argnums=0)


def make_eval_step(model):
  """``eval_step(state, batch) -> (correct, count)`` of the head over the masked batch."""
  def eval_step(state: TrainState, batch: dict[str, jax.Array], mean, std):
    x = (images_to_float(batch["image"]) - mean) / std
    out = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                      train=False)
    correct = (jnp.argmax(out["logits"], -1) == batch["label"]) & batch["mask"]
    return jnp.sum(correct), jnp.sum(batch["mask"])
  return eval_step
