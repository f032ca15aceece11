"""Optimisers of the reference recipes: LARS (as in the official VICReg / Barlow Twins code),
SGD with momentum and AdamW; linear warm-up + cosine decay; learning rate scaled by
batch / 256. Biases and normalisation parameters (every parameter with ``ndim <= 1``) are
excluded from weight decay and from LARS's trust ratio, as the official ``exclude_bias_and_norm``
does; optionally, the gradients' global norm clipped first (``clip_norm``, the ViT recipes)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxssl.errors import ConfigError

OPTIMIZERS = ("lars", "sgd", "adamw")


# Parameters kept out of weight decay (and LARS's trust ratio) whatever their shape: the ViT's
# position embedding and class token, as in DeiT, DINO and timm's ``no_weight_decay``.
NO_DECAY = ("pos_embedding", "cls")


def decay_mask(params):
  """True for the weights that get weight decay and the trust ratio (not biases, norms, or
  the parameters named in ``NO_DECAY``)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim > 1 and getattr(path[-1], "key", None) not in NO_DECAY, params)


def learning_rate(cfg, *, global_batch: int, total_steps: int,
                  steps_per_epoch: int) -> optax.Schedule:
  """``cfg``: the ``optim`` section. Peak ``lr * global_batch / 256`` after
  ``warmup_epochs``, cosine decay to ``end_lr_factor`` x the peak at ``total_steps``."""
  peak = cfg.lr * global_batch / 256 if cfg.scale_lr_by_batch else cfg.lr
  warmup = min(int(cfg.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=peak * cfg.end_lr_factor)


def lars(schedule: optax.Schedule, *, weight_decay: float, momentum: float,
         eta: float) -> optax.GradientTransformation:
  """The official LARS: ``g + wd * p``, times ``eta * |p| / |g + wd * p|`` (1 where a norm is
  0), momentum on the result, then the learning rate (applied after momentum, as torch's
  ``p.add_(mu, alpha=-lr)`` does)."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=decay_mask),
      optax.masked(optax.scale_by_trust_ratio(trust_coefficient=eta), decay_mask),
      optax.trace(decay=momentum),
      optax.scale_by_learning_rate(schedule))


class _CountState(NamedTuple):
  count: jax.Array


def clipped_trust_ratio(schedule: optax.Schedule, *, weight_decay: float, eta: float,
                        eps: float = 1e-8) -> optax.GradientTransformation:
  """The LARS adaptation of solo-learn (from NVIDIA apex) with ``clip_lr``, used by the
  published CIFAR recipes: ``(g + wd * p) * min(eta * |p| / (|g| + wd * |p| + eps) / lr, 1)``,
  so no parameter's effective learning rate exceeds the schedule's (unscaled where a norm is
  0). Follow it with momentum and the learning rate, as :func:`lars` does."""

  def init(params):
    del params
    return _CountState(count=jnp.zeros((), jnp.int32))

  def update(updates, state, params):
    lr = schedule(state.count)

    def adapt(g, p):
      p_norm, g_norm = jnp.linalg.norm(p), jnp.linalg.norm(g)
      ratio = eta * p_norm / (g_norm + weight_decay * p_norm + eps)
      ratio = jnp.where(lr > 0, jnp.minimum(ratio / jnp.maximum(lr, 1e-30), 1.0), 1.0)
      return jnp.where((p_norm > 0) & (g_norm > 0), (g + weight_decay * p) * ratio, g)

    return jax.tree.map(adapt, updates, params), _CountState(count=state.count + 1)

  return optax.GradientTransformation(init, update)


def make_optimizer(cfg, *, global_batch: int, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """``cfg``: the ``optim`` section. ``clip_trust_ratio`` switches LARS to solo-learn's clipped
  form; ``bias_lr`` (unset: ``lr``) gives biases and norm parameters their own peak learning
  rate, as Barlow Twins does (0.0048 against 0.2 for the weights)."""
  schedule = learning_rate(cfg, global_batch=global_batch, total_steps=total_steps,
                           steps_per_epoch=steps_per_epoch)
  if cfg.name == "lars" and cfg.clip_trust_ratio:
    tx = optax.chain(
        optax.masked(clipped_trust_ratio(schedule, weight_decay=cfg.weight_decay, eta=cfg.eta),
                     decay_mask),
        optax.trace(decay=cfg.momentum),
        optax.scale_by_learning_rate(schedule))
  elif cfg.name == "lars":
    tx = lars(schedule, weight_decay=cfg.weight_decay, momentum=cfg.momentum, eta=cfg.eta)
  elif cfg.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=cfg.momentum))
  elif cfg.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)
  else:
    raise ConfigError(f"config.optim.name: must be one of {OPTIMIZERS}; got {cfg.name!r}.")
  if cfg.clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
  if cfg.bias_lr is not None and cfg.bias_lr != cfg.lr:
    # The schedules differ only by their peak, so the bias schedule is the main one scaled.
    ratio = cfg.bias_lr / cfg.lr if cfg.lr > 0 else 0.0
    tx = optax.chain(tx, optax.masked(optax.scale(ratio),
                                      lambda params: jax.tree.map(lambda m: not m,
                                                                  decay_mask(params))))
  return tx


def with_probe(main: optax.GradientTransformation, cfg,
               supervised: bool) -> optax.GradientTransformation:
  """The model's ``head`` gets its own optimiser (``cfg``: the ``probe`` section: Adam, no
  weight decay, as an online probe should not perturb the rest); supervised methods train the
  head with the main optimiser like any other layer."""
  if supervised:
    return main
  probe = optax.adam(cfg.lr)
  return optax.multi_transform(
      {"main": main, "probe": probe},
      lambda params: {k: jax.tree.map(lambda _: "probe" if k == "head" else "main", v)
                      for k, v in params.items()})
