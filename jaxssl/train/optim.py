"""Optimisers of the reference recipes: LARS (as in the official VICReg / Barlow Twins code),
SGD with momentum and AdamW; linear warm-up + cosine decay; learning rate scaled by
batch / 256. Biases and normalisation parameters (every parameter with ``ndim <= 1``) are
excluded from weight decay and from LARS's trust ratio, as the official ``exclude_bias_and_norm``
does."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("lars", "sgd", "adamw")


def decay_mask(params):
  """True for the weights that get weight decay and the trust ratio (not biases or norms)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


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


def make_optimizer(cfg, *, global_batch: int, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  schedule = learning_rate(cfg, global_batch=global_batch, total_steps=total_steps,
                           steps_per_epoch=steps_per_epoch)
  if cfg.name == "lars":
    return lars(schedule, weight_decay=cfg.weight_decay, momentum=cfg.momentum, eta=cfg.eta)
  if cfg.name == "sgd":
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
                       optax.sgd(schedule, momentum=cfg.momentum))
  if cfg.name == "adamw":
    return optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)
  raise ValueError(f"optim.name must be one of {OPTIMIZERS}; got {cfg.name!r}.")


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
