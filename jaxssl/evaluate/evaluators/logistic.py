"""The logistic-regression probe on frozen features."""

from __future__ import annotations

from jaxssl.config import check
from jaxssl.evaluate import probes
from jaxssl.evaluate.evaluators.base import Evaluator, register

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
