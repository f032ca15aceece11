"""Evaluate a run: features of the train and test splits, probes, k-NN, RankMe, report."""

from __future__ import annotations

import contextlib
import pathlib
import time

import numpy as np

from jaxssl import distributed
from jaxssl.evaluate import diagnostics, probes, report
from jaxssl.evaluate.restore import Encoder, load_encoder, random_encoder
from jaxssl.watchdog import Watchdog


def evaluate_encoder(encoder: Encoder, watchdog: Watchdog | None = None
                     ) -> tuple[dict[str, float], np.ndarray]:
  """Every protocol on one encoder's frozen features; also its test covariance spectrum.
  ``watchdog`` watches the feature passes (the probes are one program each, not timed)."""
  c = encoder.config
  run = encoder.run
  projector = bool(c.eval.projector)
  train_x, train_y = encoder.features(run.train_source, batch=c.eval.batch, projector=projector,
                                      watchdog=watchdog)
  test_x, test_y = encoder.features(run.eval_source, batch=c.eval.batch, projector=projector,
                                    watchdog=watchdog)
  with watchdog.paused() if watchdog else contextlib.nullcontext():
    return _protocols(c, run.train_info.num_classes, train_x, train_y, test_x, test_y)


def _protocols(c, classes: int, train_x, train_y, test_x, test_y
               ) -> tuple[dict[str, float], np.ndarray]:
  logistic = probes.logistic_probe(
      train_x, train_y, test_x, num_classes=classes, epochs=c.eval.logistic_epochs,
      lr=c.eval.logistic_lr, batch=c.eval.logistic_batch,
      weight_decay=c.eval.logistic_weight_decay, seed=c.seed)
  ridge, lam = probes.ridge_probe(train_x, train_y, test_x, num_classes=classes,
                                  lambdas=tuple(c.eval.ridge_lambdas),
                                  val_fraction=c.eval.val_fraction, seed=c.seed)
  k = min(c.eval.knn_k, len(train_x))
  knn = probes.knn_predict(train_x, train_y, test_x, num_classes=classes, k=k,
                           temperature=c.eval.knn_temperature)
  result = {"logistic": probes.accuracy(logistic, test_y),
            "ridge": probes.accuracy(ridge, test_y), "ridge_lambda": lam,
            "knn": probes.accuracy(knn, test_y), "rankme": diagnostics.rankme(test_x),
            "dim": int(test_x.shape[1])}
  return result, diagnostics.covariance_spectrum(test_x)


def evaluate(workdir: str | pathlib.Path, *, step: int | None = None,
             out_dir: str | pathlib.Path | None = None, random_baseline: bool | None = None
             ) -> dict:
  """Evaluate the checkpoint at ``step`` (default: latest) of the run in ``workdir``; with
  the random-encoder baseline unless ``random_baseline=False`` (default: the config's
  ``eval.random_baseline``). Writes ``eval.json``, ``report.md`` and plots to ``out_dir``
  (default ``workdir/eval``, from process 0) and returns the summary."""
  workdir = pathlib.Path(workdir)
  start = time.perf_counter()
  encoder = load_encoder(workdir, step)
  c = encoder.config
  results, spectra = {}, {}
  with Watchdog("evaluation batch", timeout_s=c.watchdog.timeout_s, floor_s=c.watchdog.floor_s,
                factor=c.watchdog.factor,
                advice="Run the same command again; if it stalls again, the stacks show "
                       "where (the data loader, or a collective waiting for another "
                       "process).") as watchdog:
    results["pretrained"], spectra["pretrained"] = evaluate_encoder(encoder, watchdog)
    if c.eval.random_baseline if random_baseline is None else random_baseline:
      with watchdog.paused():  # building and compiling a second model
        baseline = random_encoder(c)
      results["random init"], spectra["random init"] = evaluate_encoder(baseline, watchdog)
  summary = {"workdir": str(workdir), "step": encoder.step, "dataset": c.data.name,
             "train_examples": encoder.run.train_info.num_examples,
             "test_examples": encoder.run.eval_info.num_examples,
             "projector": bool(c.eval.projector), "results": results,
             "seconds": time.perf_counter() - start}
  if distributed.is_main_process():
    report.write(pathlib.Path(out_dir) if out_dir else workdir / "eval", workdir, summary,
                 spectra)
  return summary
