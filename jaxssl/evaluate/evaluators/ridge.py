"""The closed-form ridge probe on frozen features."""

from __future__ import annotations

from jaxssl.config import check
from jaxssl.evaluate import probes
from jaxssl.evaluate.evaluators.base import Evaluator, register

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
