"""Settings that moved between versions, for configs saved by earlier ones."""

from __future__ import annotations

# Settings that moved, for configs saved by earlier versions: old key -> new key.
MOVED = {"eval.knn_k": "evals.knn.k", "eval.knn_temperature": "evals.knn.temperature",
         "eval.logistic_epochs": "evals.logistic.epochs", "eval.logistic_lr": "evals.logistic.lr",
         "eval.logistic_batch": "evals.logistic.batch",
         "eval.logistic_weight_decay": "evals.logistic.weight_decay",
         "eval.ridge_lambdas": "evals.ridge.lambdas",
         "eval.val_fraction": "evals.ridge.val_fraction"}


def upgrade(saved: dict) -> dict:
  """A saved config (as JSON) with the settings of ``MOVED`` under their new keys."""
  for old, new in MOVED.items():
    (section, name), (*parents, leaf) = old.split("."), new.split(".")
    if name in saved.get(section, {}):
      value = saved[section].pop(name)
      target = saved
      for parent in parents:
        target = target.setdefault(parent, {})
      target[leaf] = value
  return saved
