"""Evaluation of pretrained runs: restore (``load_encoder``), the evaluators (probes, k-NN,
RankMe) offline and during training, diagnostics, the report."""

from jaxssl.evaluate.restore import Encoder, load_encoder, random_encoder
from jaxssl.evaluate.run import evaluate, evaluate_encoder

__all__ = ["Encoder", "evaluate", "evaluate_encoder", "load_encoder", "random_encoder"]
