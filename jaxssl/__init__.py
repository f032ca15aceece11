"""jaxssl: joint-embedding self-supervised learning with variance-covariance regularisation."""

__version__ = "0.1.0"
