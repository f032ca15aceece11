"""Evaluation protocols as evaluators, chosen by name from the config's ``evals`` section.

One small class per protocol (as big_vision's evaluators): built from its entry
``config.evals.<name>``, its ``run(context)`` yields ``(name, value)`` pairs. The report, the
printed table and the training log are built from whatever names come back. Every entry has
``offline`` (in the default set of ``python -m jaxssl.evaluate``) and ``every`` (run during
training every that many steps and at the last step, on the fixed subset
``eval.train_examples`` / ``eval.test_examples``; 0: never; None: every ``train.eval_every``
steps). Adding a protocol is one class here (``@register``) and one entry in
``jaxssl.config.base_config``'s ``evals``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.config import check
from jaxssl.data import augment, decode, loader
from jaxssl.data import source as source_lib
from jaxssl.errors import ConfigError
from jaxssl.evaluate import diagnostics, probes
from jaxssl.evaluate.restore import Encoder, variables
from jaxssl.train import step as step_lib


class Context:
  """What evaluators read: the encoder, and its frozen features and labels of the train and
  eval splits, computed on first use and shared by every protocol (each process gets all
  rows). ``examples``: (train, test) counts of a fixed subset (``source.Strided``); None
  for a whole split."""

  def __init__(self, encoder: Encoder, *, examples: tuple[int | None, int | None] = (None, None),
               watchdog=None):
    self.encoder, self.examples, self.watchdog = encoder, examples, watchdog

  @property
  def num_classes(self) -> int:
    return self.encoder.run.train_info.num_classes

  def _features(self, split_source, count: int | None):
    c = self.encoder.config
    if count is not None:
      split_source = source_lib.Strided(split_source, count)
    return self.encoder.features(split_source, batch=c.eval.batch,
                                 projector=bool(c.eval.projector), watchdog=self.watchdog)

  @functools.cached_property
  def train(self) -> tuple[np.ndarray, np.ndarray]:
    return self._features(self.encoder.run.train_source, self.examples[0])

  @functools.cached_property
  def test(self) -> tuple[np.ndarray, np.ndarray]:
    return self._features(self.encoder.run.eval_source, self.examples[1])


class Evaluator:
  """A protocol. ``accuracies``: the names it yields that are accuracies (shown as %);
  ``details``: names kept in ``eval.json`` and the log but left out of the printed table."""
  name: ClassVar[str]
  needs_labels: ClassVar[bool] = True
  accuracies: ClassVar[tuple[str, ...]] = ()
  details: ClassVar[tuple[str, ...]] = ()

  def __init__(self, settings: ml_collections.ConfigDict, seed: int = 0, every: int = 0):
    self.settings, self.seed, self.every = settings, seed, every
    check(every >= 0, self.key("every"),
          f"must be a number of steps (0: not during training); got {every}.")

  def key(self, setting: str) -> str:
    return f"evals.{self.name}.{setting}"

  def run(self, context: Context) -> Iterator[tuple[str, float]]:
    raise NotImplementedError

  def warning(self, values: dict[str, float]) -> str | None:
    """A message for the user about ``values`` (this evaluator's), or None."""
    del values
    return None


EVALUATORS: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
  EVALUATORS[cls.name] = cls
  return cls


@register
class Logistic(Evaluator):
  """Linear probe: multinomial logistic regression (AdamW, cosine schedule) on standardised
  frozen features (``probes.logistic_probe``)."""
  name, accuracies = "logistic", ("logistic",)

  def __init__(self, settings, seed=0, every=0):
    super().__init__(settings, seed, every)
    for setting in ("epochs", "lr", "batch"):
      check(settings[setting] > 0, self.key(setting), f"must be > 0; got {settings[setting]}.")

  def run(self, context):
    (train_x, train_y), (test_x, test_y) = context.train, context.test
    s = self.settings
    predicted = probes.logistic_probe(
        train_x, train_y, test_x, num_classes=context.num_classes, epochs=s.epochs, lr=s.lr,
        batch=s.batch, weight_decay=s.weight_decay, seed=self.seed)
    yield "logistic", probes.accuracy(predicted, test_y)


@register
class Ridge(Evaluator):
  """Linear probe in closed form: ridge regression onto one-hot labels, its strength picked on
  a held-out part of the train features (``probes.ridge_probe``)."""
  name, accuracies, details = "ridge", ("ridge",), ("ridge_lambda",)

  def __init__(self, settings, seed=0, every=0):
    super().__init__(settings, seed, every)
    check(0 < settings.val_fraction < 1, self.key("val_fraction"),
          f"must be in (0, 1); got {settings.val_fraction}.")
    check(len(settings.lambdas) > 0 and min(settings.lambdas) > 0, self.key("lambdas"),
          f"must be positive numbers; got {settings.lambdas}.")

  def run(self, context):
    (train_x, train_y), (test_x, test_y) = context.train, context.test
    predicted, lam = probes.ridge_probe(
        train_x, train_y, test_x, num_classes=context.num_classes,
        lambdas=tuple(self.settings.lambdas), val_fraction=self.settings.val_fraction,
        seed=self.seed)
    yield "ridge", probes.accuracy(predicted, test_y)
    yield "ridge_lambda", lam


@register
class Knn(Evaluator):
  """Weighted k-NN on cosine similarity (Wu et al., 2018), the train features as the bank
  (``probes.knn_predict``)."""
  name, accuracies = "knn", ("knn",)

  def __init__(self, settings, seed=0, every=0):
    super().__init__(settings, seed, every)
    check(settings.k > 0, self.key("k"), f"must be > 0; got {settings.k}.")
    check(settings.temperature > 0, self.key("temperature"),
          f"must be > 0; got {settings.temperature}.")

  def run(self, context):
    (train_x, train_y), (test_x, test_y) = context.train, context.test
    predicted = probes.knn_predict(train_x, train_y, test_x, num_classes=context.num_classes,
                                   k=min(self.settings.k, len(train_x)),
                                   temperature=self.settings.temperature)
    yield "knn", probes.accuracy(predicted, test_y)


@register
class RankMe(Evaluator):
  """Label-free: RankMe (the effective rank) of the test features, their width and the
  per-dimension standard deviation (mean and least); a warning when the effective rank falls
  below ``collapse_fraction`` of the width (dimensional collapse)."""
  name, needs_labels, details = "rankme", False, ("dim", "std_mean", "std_min")

  def __init__(self, settings, seed=0, every=0):
    super().__init__(settings, seed, every)
    check(0 <= settings.collapse_fraction <= 1, self.key("collapse_fraction"),
          f"must be in [0, 1] (0: no warning); got {settings.collapse_fraction}.")

  def run(self, context):
    test_x = context.test[0]
    std = np.std(np.asarray(test_x, np.float64), axis=0)
    yield "rankme", diagnostics.rankme(test_x)
    yield "dim", int(test_x.shape[1])
    yield "std_mean", float(std.mean())
    yield "std_min", float(std.min())

  def warning(self, values):
    limit = self.settings.collapse_fraction * values["dim"]
    if values["rankme"] < limit:
      return (f"The embedding may be collapsing: its effective rank (RankMe) is "
              f"{values['rankme']:.1f} of {values['dim']} dimensions, below "
              f"evals.rankme.collapse_fraction={self.settings.collapse_fraction} of the width "
              f"(least per-dimension std {values['std_min']:.2g}). Check the method's variance "
              "and covariance coefficients and the learning rate.")
    return None


@register
class Linear(Evaluator):
  """The papers' linear evaluation (VICReg's ``evaluate.py``): a linear head on the frozen
  backbone (BatchNorm in inference mode), trained with SGD (momentum, cosine schedule, weight
  decay) for ``epochs`` on random resized crops (``crop_scale``) and flips of the train split,
  batches drawn as training draws them (the same on any process count); top-1 and top-5 on
  the eval split's centre crops. Slower than the probes on cached features: each step runs
  the backbone on fresh crops."""
  name, accuracies = "linear", ("linear", "linear_top5")

  def __init__(self, settings, seed=0, every=0):
    super().__init__(settings, seed, every)
    for setting in ("epochs", "batch", "lr"):
      check(settings[setting] > 0, self.key(setting), f"must be > 0; got {settings[setting]}.")
    check(0 <= settings.momentum < 1, self.key("momentum"),
          f"must be in [0, 1); got {settings.momentum}.")
    lo, hi = settings.crop_scale
    check(0 < lo <= hi <= 1, self.key("crop_scale"),
          f"must satisfy 0 < lo <= hi <= 1; got {settings.crop_scale}.")
    check(0 <= settings.flip_prob <= 1, self.key("flip_prob"),
          f"must be a probability; got {settings.flip_prob}.")

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
    split = run.train_source
    if examples is not None:
      split = source_lib.Strided(split, examples)
    batch = min(-(-s.batch // run.mesh.size) * run.mesh.size, len(split) // run.mesh.size
                * run.mesh.size)
    check(batch > 0, self.key("batch"), f"the split ({len(split)} examples) is smaller than "
          f"the mesh ({run.mesh.size} devices).")
    view = dataclasses.replace(run.views[0], crop_scale=tuple(s.crop_scale),
                               flip_prob=s.flip_prob, jitter_prob=0.0, grayscale_prob=0.0,
                               blur_prob=0.0, solarize_prob=0.0)
    crops = None if run.train_info.fixed_size else decode.TwoCrops(
        (view, view), run.image_shape[-1], draft=run.config.data.jpeg_draft)
    steps = max(int(s.epochs * len(split)) // batch, 1)
    tx = optax.chain(optax.add_decayed_weights(s.weight_decay),
                     optax.sgd(optax.cosine_decay_schedule(s.lr, steps), momentum=s.momentum))
    step = _linear_step(run.model, view, tx, bool(run.config.eval.projector), run.mesh)
    key = jax.random.key(self.seed)
    dim = jax.eval_shape(lambda: encoder.embed(np.zeros((1, *run.image_shape), np.uint8),
                                               projector=bool(run.config.eval.projector)))
    classes = run.train_info.num_classes
    head = {"w": 0.01 * jax.random.normal(key, (dim.shape[-1], classes)),  # as evaluate.py
            "b": jnp.zeros(classes)}
    carry = (head, tx.init(head))
    batches = loader.train_iterator(split, global_batch=batch, seed=self.seed, crops=crops,
                                    num_threads=run.config.data.num_threads,
                                    prefetch=run.config.data.prefetch)
    for i in range(steps):
      carry = step(encoder.variables, carry, loader.to_global(next(batches), run.mesh),
                   jax.random.fold_in(key, i))
    return jax.tree.map(np.asarray, jax.device_get(carry[0]))


def _linear_step(model, view, tx, projector: bool, mesh):
  """``step(variables, (head, opt_state), batch, key) -> (head, opt_state)``, jitted over
  ``mesh`` (the batch sharded, the rest replicated): crops on the device unless the host
  made them, the frozen backbone, the head's cross-entropy and its update."""

  def step(variables, carry, batch, key):
    head, opt_state = carry
    host_crops = "view_a" in batch
    images = step_lib.images_to_float(batch["view_a"] if host_crops else batch["image"])
    x = augment.augment_batch(key, images, view, crop=not host_crops)
    features = jax.lax.stop_gradient(
        model.apply(variables, x, projector=projector, method=model.embed))

    def loss_fn(head):
      logits = features.astype(jnp.float32) @ head["w"] + head["b"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    grads = jax.grad(loss_fn)(head)
    updates, opt_state = tx.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state

  replicated = NamedSharding(mesh, P())
  return jax.jit(step, in_shardings=(replicated, replicated, NamedSharding(mesh, P("data")),
                                     replicated), out_shardings=replicated)


def is_accuracy(name: str) -> bool:
  return any(name in cls.accuracies for cls in EVALUATORS.values())


def is_detail(name: str) -> bool:
  return any(name in cls.details for cls in EVALUATORS.values())


def every(config: ml_collections.ConfigDict, name: str) -> int:
  """Steps between the runs of ``name`` during training (0: never)."""
  value = config.evals[name].every
  return config.train.eval_every if value is None else value


def names(config: ml_collections.ConfigDict, *, during_training: bool = False) -> list[str]:
  """The default set: the entries with ``offline`` (or, ``during_training``, ``every > 0``)."""
  return [name for name, entry in config.evals.items()
          if (every(config, name) > 0 if during_training else entry.offline)]


def build(config: ml_collections.ConfigDict, chosen: Sequence[str] | None = None, *,
          has_labels: bool = True, during_training: bool = False) -> dict[str, Evaluator]:
  """The evaluators ``chosen`` (default: ``names(config, during_training=...)``), built from
  their config entries; a ``ConfigError`` naming the key for an unknown name, a bad setting,
  or a labelled protocol on a dataset without labels."""
  unknown = sorted(set(config.evals) - set(EVALUATORS))
  if unknown:
    raise ConfigError(f"Unknown evaluator(s) {unknown} in config.evals; known: "
                      f"{', '.join(sorted(EVALUATORS))}.")
  chosen = names(config, during_training=during_training) if chosen is None else list(chosen)
  unknown = [name for name in chosen if name not in config.evals]
  if unknown:
    raise ConfigError(f"Unknown evaluator(s) {unknown}; choose from "
                      f"{', '.join(config.evals)} (config.evals), comma-separated.")
  built = {name: EVALUATORS[name](config.evals[name], config.seed, every(config, name))
           for name in chosen}
  unlabelled = [name for name, e in built.items() if e.needs_labels and not has_labels]
  if unlabelled:
    raise ConfigError(f"The evaluator(s) {unlabelled} need labels, and dataset "
                      f"{config.data.name!r} has none; choose label-free ones (e.g. rankme).")
  return built


def run_all(evaluators: dict[str, Evaluator], context: Context
            ) -> tuple[dict[str, float], list[str]]:
  """Every evaluator's values, in order, and the warnings they raise about them."""
  results, warnings = {}, []
  for evaluator in evaluators.values():
    values = dict(evaluator.run(context))
    results.update(values)
    message = evaluator.warning(values)
    if message:
      warnings.append(message)
  return results, warnings


class DuringTraining:
  """The evaluators with ``every > 0``, run on the training state at their steps on the fixed
  subset (``eval.train_examples`` / ``eval.test_examples``). The encoder's programs are
  compiled once and reused with each new state."""

  def __init__(self, run):
    c = run.config
    self.evaluators = build(c, has_labels=bool(run.train_info.num_classes),
                            during_training=True)
    self.examples = (c.eval.train_examples, c.eval.test_examples)
    self._run, self._encoder = run, None

  def due(self, step: int, last: bool) -> dict[str, Evaluator]:
    return {name: e for name, e in self.evaluators.items() if last or step % e.every == 0}

  def __call__(self, state, step: int, last: bool) -> tuple[dict[str, float], list[str]]:
    due = self.due(step, last)
    if not due:
      return {}, []
    if self._encoder is None:
      self._encoder = Encoder(self._run, variables(state), step)
    else:
      self._encoder.variables, self._encoder.step = variables(state), step
    return run_all(due, Context(self._encoder, examples=self.examples))
