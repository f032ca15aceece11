"""Linear ICA by variance-covariance regularisation (Mialon, Balestriero & LeCun, 2022,
arXiv 2209.14905).

VCReg on the output of a wide MLP projector enforces pairwise independence of the
projector's *input*. Here the input is ``y = W x``, one candidate unmixing of mixtures
``x = A s``, and :func:`fit` finds ``W`` by minimising VCReg's covariance term of ``h(y)``:

1. ``x`` is centred and whitened (``V``, the inverse square root of its covariance), so the
   remaining unmixing is a rotation ``Q`` (``W = Q V``): every candidate has unit-variance,
   uncorrelated components and VCReg's variance term is met by construction.
2. ``h`` is one MLP ``R -> R^width`` applied to each component ``y_i`` (shared weights).
   ``VCReg(h(y))``'s covariance term contains ``sum_{i != j} |Cov(h(y_i), h(y_j))|_F^2``
   (:func:`pair_dependence`), zero for every ``h`` when the components are independent and,
   for a wide ``h``, an HSIC-like measure of their pairwise dependence otherwise.

Two ways to find ``Q``, each a module with its settings object: :class:`Jacobi` (the
default: sweeps of plane rotations under a frozen threshold projector, ``jacobi.py``) and
:class:`Gradient` (the paper's joint descent on ``Q`` and a random projector,
``gradient.py``). ``bench/README.md`` has what each reaches against FastICA and how long it
takes (``bench/ica.py``).

Non-Gaussian sources are identifiable only up to permutation and scale, Gaussian ones not at
all: :func:`fit` reports how many recovered components look Gaussian (Jarque-Bera test) and
``ICAResult.identifiable`` is False when two or more do.
"""

from jaxssl.ica.gradient import Gradient, default_width, vcreg_ica_loss
from jaxssl.ica.jacobi import Jacobi, jacobi_rotation, round_robin
from jaxssl.ica.problems import (SOURCE_KINDS, amari_distance, jarque_bera_p, make_sources,
                                 random_mixing)
from jaxssl.ica.projector import (pair_dependence, project, projector_init,
                                  threshold_projector)
from jaxssl.ica.unmix import ICAResult, fit, whitening

__all__ = [
    "Gradient", "ICAResult", "Jacobi", "SOURCE_KINDS", "amari_distance", "default_width",
    "fit", "jacobi_rotation", "jarque_bera_p", "make_sources", "pair_dependence", "project",
    "projector_init", "random_mixing", "round_robin", "threshold_projector",
    "vcreg_ica_loss", "whitening",
]
