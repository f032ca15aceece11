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
  rows). ``examples``: (train, test) counts of a fixed subset (``source.strided``); None
  for a whole split."""

  def __init__(self, encoder: Encoder, *, examples: tuple[int | None, int | None] = (None, None),
               watchdog=None):
    self.encoder, self.examples, self.watchdog = encoder, examples, watchdog

  @property
  def num_classes(self) -> int:
    return self.encoder.run.eval_train_info.num_classes

  def _features(self, split_source, count: int | None):
    c = self.encoder.config
    if count is not None:
      split_source = source_lib.strided(split_source, count)
    return self.encoder.features(split_source, batch=c.eval.batch,
                                 projector=bool(c.eval.projector), watchdog=self.watchdog)

  @functools.cached_property
  def train(self) -> tuple[np.ndarray, np.ndarray]:
    return self._features(self.encoder.run.eval_train_source, self.examples[0])

  @functools.cached_property
  def test(self) -> tuple[np.ndarray, np.ndarray]:
    return self._features(self.encoder.run.eval_source, self.examples[1])


class Evaluator:
  """A protocol, registered under its ``kind``; a config entry of that name (or with
  ``kind=...``: several entries of one protocol with different settings, whose names then
  replace the kind in what they yield) builds one. ``accuracies``: the names it yields that
  are accuracies, shown as % (with what follows an underscore: ``linear`` covers
  ``linear_top5``); ``details``: names kept in ``eval.json`` and the log but left out of the
  printed table."""
  kind: ClassVar[str]
  needs_labels: ClassVar[bool] = True
  # Needs the model's online head to fit the evaluation's classes (fine-tuning replaces it).
  needs_head: ClassVar[bool] = False
  accuracies: ClassVar[tuple[str, ...]] = ()
  details: ClassVar[tuple[str, ...]] = ()

  def __init__(self, settings: ml_collections.ConfigDict, seed: int = 0, every: int = 0,
               name: str | None = None):
    self.settings, self.seed, self.every = settings, seed, every
    self.name = name or self.kind
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
  EVALUATORS[cls.kind] = cls
  return cls


@register
class Logistic(Evaluator):
  """Linear probe: multinomial logistic regression (AdamW, cosine schedule) on standardised
  frozen features (``probes.logistic_probe``)."""
  kind, accuracies = "logistic", ("logistic",)

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
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
  kind, accuracies, details = "ridge", ("ridge",), ("ridge_lambda",)

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
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
  kind, accuracies = "knn", ("knn",)

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
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
  kind, needs_labels, details = "rankme", False, ("dim", "std_mean", "std_min")

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
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
  kind, accuracies = "linear", ("linear",)  # and linear_top5

  def __init__(self, settings, seed=0, every=0, name=None):
    super().__init__(settings, seed, every, name)
    _check_training(self, settings, "lr")

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
    batch, view, steps = _training_plan(self, run, len(split))
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
    for i, batch_ in enumerate(_batches(run, split, batch, view, steps, self.seed)):
      carry = step(encoder.variables, carry, batch_, jax.random.fold_in(key, i))
    return jax.tree.map(np.asarray, jax.device_get(carry[0]))


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
    _check_training(self, settings, "backbone_lr", "head_lr")
    check(0 < settings.fraction <= 1, self.key("fraction"),
          f"must be in (0, 1]; got {settings.fraction}.")

  def run(self, context):
    encoder = context.encoder
    run = encoder.run
    ids = source_lib.balanced_subset(source_lib.labels_of(run.train_source),
                                     self.settings.fraction, self.seed)
    split = source_lib.Subset(run.train_source, ids)
    for suffix, start in (("", encoder.variables), ("_scratch", variables(run.init_state()))):
      tuned = self.tune(run, start, split)
      test_x, test_y = Encoder(run, tuned, encoder.step).features(
          run.eval_source, batch=run.config.eval.batch, watchdog=context.watchdog)
      head = jax.device_get(tuned["params"]["head"])
      logits = np.asarray(test_x, np.float32) @ head["kernel"] + head["bias"]
      yield "finetune" + suffix, probes.accuracy(np.argmax(logits, 1), test_y)
    yield "finetune_examples", len(ids)

  def tune(self, run, start: dict, split) -> dict:
    """``start``'s variables with a new head, the network fine-tuned on ``split``."""
    s = self.settings
    batch, view, steps = _training_plan(self, run, len(split))
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
    for i, batch_ in enumerate(_batches(run, split, batch, view, steps, self.seed)):
      carry = step(carry, batch_, jax.random.fold_in(key, i))
    return {"params": carry[0], "batch_stats": carry[1]}


def _check_training(evaluator: Evaluator, settings, *numbers: str) -> None:
  """The settings the trained protocols (linear, finetune) share, and their ``numbers``."""
  for setting in ("epochs", "batch", *numbers):
    check(settings[setting] > 0, evaluator.key(setting), f"must be > 0; got {settings[setting]}.")
  check(0 <= settings.momentum < 1, evaluator.key("momentum"),
        f"must be in [0, 1); got {settings.momentum}.")
  lo, hi = settings.crop_scale
  check(0 < lo <= hi <= 1, evaluator.key("crop_scale"),
        f"must satisfy 0 < lo <= hi <= 1; got {settings.crop_scale}.")
  check(0 <= settings.flip_prob <= 1, evaluator.key("flip_prob"),
        f"must be a probability; got {settings.flip_prob}.")


def _training_plan(evaluator: Evaluator, run, examples: int):
  """(global batch, the crop-and-flip view, steps) of a trained protocol on ``examples``: the
  batch rounded to the mesh and at most the split."""
  s, size = evaluator.settings, run.mesh.size
  batch = min(-(-s.batch // size) * size, examples // size * size)
  check(batch > 0, evaluator.key("batch"), f"the split ({examples} examples) is smaller than "
        f"the mesh ({size} devices).")
  view = dataclasses.replace(run.views[0], crop_scale=tuple(s.crop_scale),
                             flip_prob=s.flip_prob, jitter_prob=0.0, grayscale_prob=0.0,
                             blur_prob=0.0, solarize_prob=0.0)
  return batch, view, max(int(s.epochs * examples) // batch, 1)


def _batches(run, split, batch: int, view, steps: int, seed: int):
  """``steps`` global batches of ``split``, shuffled every epoch as training shuffles (the
  same on any process count); images of varying size cropped by the host."""
  crops = None if run.eval_train_info.fixed_size else decode.TwoCrops(
      (view, view), run.image_shape[-1], draft=run.config.data.jpeg_draft)
  it = loader.train_iterator(split, global_batch=batch, seed=seed, crops=crops,
                             num_threads=run.config.data.num_threads,
                             prefetch=run.config.data.prefetch)
  for _ in range(steps):
    yield loader.to_global(next(it), run.mesh)


def _views(batch, view, key):
  """The batch's crop-and-flip view, on the device unless the host cropped it."""
  host_crops = "view_a" in batch
  images = step_lib.images_to_float(batch["view_a"] if host_crops else batch["image"])
  return augment.augment_batch(key, images, view, crop=not host_crops)


def _linear_step(model, view, tx, projector: bool, mesh):
  """``step(variables, (head, opt_state), batch, key) -> (head, opt_state)``, jitted over
  ``mesh`` (the batch sharded, the rest replicated): crops on the device unless the host
  made them, the frozen backbone, the head's cross-entropy and its update."""

  def step(variables, carry, batch, key):
    head, opt_state = carry
    x = _views(batch, view, key)
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


def _finetune_step(model, view, tx, mesh):
  """``step((params, batch_stats, opt_state), batch, key) -> same``, jitted over ``mesh``:
  backbone and head trained on the crops' cross-entropy, BatchNorm statistics of the batch."""

  def logits_of(module, x):
    return module.head(module.backbone(x, train=True))

  def step(carry, batch, key):
    params, batch_stats, opt_state = carry
    x = _views(batch, view, key)

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


def is_accuracy(name: str) -> bool:
  return any(name == a or name.startswith(a + "_")
             for cls in EVALUATORS.values() for a in cls.accuracies)


def is_detail(name: str) -> bool:
  """One of some evaluator's ``details``, under its own name or an entry's
  (``finetune_examples`` of the entry ``finetune_10`` is ``finetune_10_examples``)."""
  return any(name == d or (d.startswith(cls.kind) and name.startswith(cls.kind)
                           and name.endswith(d[len(cls.kind):]))
             for cls in EVALUATORS.values() for d in cls.details)


def every(config: ml_collections.ConfigDict, name: str) -> int:
  """Steps between the runs of ``name`` during training (0: never)."""
  value = config.evals[name].every
  return config.train.eval_every if value is None else value


def names(config: ml_collections.ConfigDict, *, during_training: bool = False) -> list[str]:
  """The default set: the entries with ``offline`` (or, ``during_training``, ``every > 0``)."""
  return [name for name, entry in config.evals.items()
          if (every(config, name) > 0 if during_training else entry.offline)]


def build(config: ml_collections.ConfigDict, chosen: Sequence[str] | None = None, *,
          has_labels: bool = True, has_head: bool = True,
          during_training: bool = False) -> dict[str, Evaluator]:
  """The evaluators ``chosen`` (default: ``names(config, during_training=...)``), built from
  their config entries, less those that need labels the data lacks (``has_labels``) or the
  online head (``has_head``): ``skipped_notice`` says which. A ``ConfigError`` names the key
  of an unknown name or a bad setting."""
  kinds = {name: entry.get("kind", name) for name, entry in config.evals.items()}
  unknown = sorted(f"{name} (kind {kind!r})" if kind != name else name
                   for name, kind in kinds.items() if kind not in EVALUATORS)
  if unknown:
    raise ConfigError(f"config.evals: unknown evaluator(s) {', '.join(unknown)}; the kinds "
                      f"are {', '.join(sorted(EVALUATORS))} (an entry's kind is its name "
                      "unless it sets kind=...).")
  chosen = names(config, during_training=during_training) if chosen is None else list(chosen)
  unknown = [name for name in chosen if name not in config.evals]
  if unknown:
    raise ConfigError(f"Unknown evaluator(s) {unknown}; choose from "
                      f"{', '.join(config.evals)} (config.evals), comma-separated.")
  built = {name: EVALUATORS[kinds[name]](config.evals[name], config.seed, every(config, name),
                                         name) for name in chosen}
  return {name: e for name, e in built.items()
          if not (e.needs_labels and not has_labels or e.needs_head and not has_head)}


def skipped_notice(config: ml_collections.ConfigDict, chosen: Sequence[str] | None = None, *,
                   has_labels: bool = True, has_head: bool = True,
                   during_training: bool = False) -> str | None:
  """What ``build`` leaves out for want of labels (or of a head of the evaluation's classes),
  as one message saying how to get them; ``None`` when it leaves out nothing."""
  everything = build(config, chosen, during_training=during_training)
  kept = build(config, chosen, has_labels=has_labels, has_head=has_head,
               during_training=during_training)
  left_out = [name for name in everything if name not in kept]
  if not left_out:
    return None
  if not has_labels:
    return (f"Skipped {', '.join(left_out)}: they need labels, and the evaluation data "
            f"({config.data.name}) has none. Give a labeled evaluation folder (one subfolder "
            "per class) with --config.data.eval_path=DIR; RankMe and the embedding "
            "statistics run without labels.")
  return (f"Skipped {', '.join(left_out)}: fine-tuning trains the model's online head, which "
          "the training data's labels define, and these are not the evaluation's "
          "(data.eval_path, or unlabeled training images). The frozen-feature probes ran.")


def run_all(evaluators: dict[str, Evaluator], context: Context
            ) -> tuple[dict[str, float], list[str]]:
  """Every evaluator's values, in order, and the warnings they raise about them."""
  results, warnings = {}, []
  for evaluator in evaluators.values():
    values = dict(evaluator.run(context))
    message = evaluator.warning(values)
    if message:
      warnings.append(message)
    kind, name = evaluator.kind, evaluator.name
    if name != kind:  # an entry of another name: its names replace the kind's
      values = {(name + key[len(kind):] if key.startswith(kind) else f"{name}_{key}"): value
                for key, value in values.items()}
    results.update(values)
  return results, warnings


class DuringTraining:
  """The evaluators with ``every > 0``, run on the training state at their steps on the fixed
  subset (``eval.train_examples`` / ``eval.test_examples``). The encoder's programs are
  compiled once and reused with each new state."""

  def __init__(self, run):
    c = run.config
    self.evaluators = build(c, during_training=True, **run.evaluable())
    self.notice = skipped_notice(c, during_training=True, **run.evaluable())
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
