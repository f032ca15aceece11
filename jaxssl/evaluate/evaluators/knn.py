"""The weighted k-NN classifier on frozen features."""

from __future__ import annotations

from jaxssl.config import check
from jaxssl.evaluate import probes
from jaxssl.evaluate.evaluators.base import Evaluator, register

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
