"""Evaluation of pretrained runs: restore (``load_encoder``), probes, k-NN, diagnostics."""

from jaxssl.evaluate.restore import Encoder, load_encoder, random_encoder
from jaxssl.evaluate.run import evaluate

__all__ = ["Encoder", "evaluate", "load_encoder", "random_encoder"]
