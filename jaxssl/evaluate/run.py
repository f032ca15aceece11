"""Evaluate a run: its evaluators (``evaluators/``) on the frozen features, then the report."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from jaxssl import distributed
from jaxssl import storage
from jaxssl.evaluate import diagnostics, report
from jaxssl.evaluate import evaluators as evaluators_lib
from jaxssl.errors import ConfigError
from jaxssl.evaluate.restore import Encoder, load_encoder, random_encoder
from jaxssl.train import checkpoint
from jaxssl.watchdog import Watchdog


@dataclasses.dataclass
class Evaluation:
  """One encoder's evaluation: the evaluators' ``results`` by name, the test features'
  covariance ``spectrum``, the evaluators' ``warnings``, and the test ``features`` and
  ``labels`` they read (for the report's map of the embedding)."""
  results: dict[str, float]
  spectrum: np.ndarray
  warnings: list[str]
  features: np.ndarray
  labels: np.ndarray


def evaluate_encoder(encoder: Encoder, chosen: Sequence[str] | None = None, *,
                     examples: tuple[int | None, int | None] = (None, None),
                     watchdog: Watchdog | None = None) -> Evaluation:
  """The evaluators ``chosen`` (default: the config's offline set) on one encoder's frozen
  features (of the ``examples`` subset, or the whole splits). ``watchdog`` watches the
  feature passes (each protocol is one program, not timed)."""
  evaluators = evaluators_lib.build(encoder.config, chosen, **encoder.run.evaluable())
  context = evaluators_lib.Context(encoder, examples=examples, watchdog=watchdog)
  # The feature passes first, under the watchdog; the protocols are not timed.
  _ = context.train if any(e.needs_labels for e in evaluators.values()) else None
  features, labels = context.test
  with watchdog.paused() if watchdog else contextlib.nullcontext():
    results, warnings = evaluators_lib.run_all(evaluators, context)
  return Evaluation(results, diagnostics.covariance_spectrum(features), warnings, features,
                    labels)


def evaluation_config(workdir: str | os.PathLike, settings: dict[str, Any] | None = None
                      ) -> ml_collections.ConfigDict:
  """The config saved with the run in ``workdir``, with evaluation ``settings`` changed:
  ``{"evals.linear.epochs": 10}`` (keys under ``eval.`` or ``evals.``; a string value is read
  as a Python literal where it is one). A ``ConfigError`` names a key that is not an
  evaluation setting or a value of the wrong type."""
  c = checkpoint.read_config(workdir)
  for key, value in (settings or {}).items():
    *parents, name = key.split(".")
    if not parents or parents[0] not in ("eval", "evals"):
      raise ConfigError(f"{key}: only evaluation settings (eval.* and evals.*) can change "
                        "here; the rest is the run's own (its config.json).")
    if isinstance(value, str):
      with contextlib.suppress(ValueError, SyntaxError):
        value = ast.literal_eval(value)
    section = c
    try:
      for parent in parents:
        section = section[parent]
      if name not in section:
        raise KeyError(name)
      section[name] = tuple(value) if isinstance(section[name], tuple) else value
    except (KeyError, AttributeError) as err:
      raise ConfigError(f"{key}: no such evaluation setting (see the eval and evals "
                        "sections of jaxssl/config/schema.py).") from err
    except TypeError as err:
      raise ConfigError(f"{key}: {err}") from err
  return c


def evaluate(workdir: str | os.PathLike, *, step: int | None = None,
             out_dir: str | os.PathLike | None = None, random_baseline: bool | None = None,
             chosen: Sequence[str] | None = None,
             examples: tuple[int | None, int | None] = (None, None),
             settings: dict[str, Any] | None = None) -> dict:
  """Evaluate the checkpoint at ``step`` (default: latest) of the run in ``workdir`` with the
  evaluators ``chosen`` (default: the config's offline set) on the ``examples`` subset
  (default: the whole splits); with the random-encoder baseline unless
  ``random_baseline=False`` (default: the config's ``eval.random_baseline``). Writes
  ``eval.json``, ``report.md`` and plots to ``out_dir`` (default ``workdir/eval``, from
  process 0) and returns the summary. ``settings``: evaluation settings to change (see
  ``evaluation_config``)."""
  workdir = checkpoint.workdir_path(workdir)
  out_dir = storage.resolve(out_dir, what="--out") if out_dir else workdir / "eval"
  start = time.perf_counter()
  c = evaluation_config(workdir, settings)
  evaluators_lib.build(c, chosen)  # bad names and settings fail before anything is restored
  encoder = load_encoder(workdir, step, config=c)
  evaluations = {}
  with Watchdog("evaluation batch", timeout_s=c.watchdog.timeout_s, floor_s=c.watchdog.floor_s,
                factor=c.watchdog.factor,
                advice="Run the same command again; if it stalls again, the stacks show "
                       "where (the data loader, or a collective waiting for another "
                       "process).") as watchdog:
    evaluations["pretrained"] = evaluate_encoder(encoder, chosen, examples=examples,
                                                 watchdog=watchdog)
    if c.eval.random_baseline if random_baseline is None else random_baseline:
      with watchdog.paused():  # initialising and compiling a second model (same data)
        baseline = random_encoder(encoder.run)
      evaluations["random init"] = evaluate_encoder(baseline, chosen, examples=examples,
                                                    watchdog=watchdog)
  summary = {"workdir": str(workdir), "step": encoder.step, "dataset": c.data.name,
             "train_examples": encoder.run.eval_train_info.num_examples,
             "test_examples": encoder.run.eval_info.num_examples,
             "projector": bool(c.eval.projector), "examples": list(examples),
             "results": {name: e.results for name, e in evaluations.items()},
             "warnings": [w for w in (evaluators_lib.skipped_notice(
                 c, chosen, **encoder.run.evaluable()),) if w] + evaluations["pretrained"].warnings,
             "seconds": time.perf_counter() - start}
  if distributed.is_main_process():
    pretrained = evaluations["pretrained"]
    report.write(out_dir, workdir, summary,
                 {name: e.spectrum for name, e in evaluations.items()},
                 embedding=(pretrained.features, pretrained.labels),
                 map_examples=c.eval.map_examples, seed=c.seed)
  return summary
