"""The evaluators' base: ``Context`` (the frozen features every protocol reads, computed
once) and ``Evaluator`` (a protocol, registered by its ``kind``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import ClassVar

import ml_collections
import numpy as np

from jaxssl.config import check
from jaxssl.data import source as source_lib
from jaxssl.evaluate.restore import Encoder

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


def is_accuracy(name: str) -> bool:
  return any(name == a or name.startswith(a + "_")
             for cls in EVALUATORS.values() for a in cls.accuracies)


def is_detail(name: str) -> bool:
  """One of some evaluator's ``details``, under its own name or an entry's
  (``finetune_examples`` of the entry ``finetune_10`` is ``finetune_10_examples``)."""
  return any(name == d or (d.startswith(cls.kind) and name.startswith(cls.kind)
                           and name.endswith(d[len(cls.kind):]))
             for cls in EVALUATORS.values() for d in cls.details)
