"""The evaluators a config asks for (by name, offline or during training), run in order."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from jaxssl.errors import ConfigError
from jaxssl.evaluate.evaluators.base import EVALUATORS, Context, Evaluator
from jaxssl.evaluate.restore import Encoder, variables

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
