"""RankMe and the embedding statistics (label-free), with the collapse warning."""

from __future__ import annotations

import numpy as np

from jaxssl.config import check
from jaxssl.evaluate import diagnostics
from jaxssl.evaluate.evaluators.base import Evaluator, register

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
