"""Self-supervised losses as pure JAX functions over the global batch.

Every loss takes ``(N, D)`` embeddings and keyword-only coefficients, works under ``jit``,
``grad`` and ``vmap``, on inputs sharded over a ``Mesh`` (statistics are over the global
batch), and inside ``shard_map``/``pmap`` given ``axis_name=`` (see :mod:`jaxssl.losses.stats`
for the collectives and the gradient convention). Formulas and defaults follow the official
code of each method.
"""

from jaxssl.losses.barlow import barlow_twins
from jaxssl.losses.corinfomax import CorInfoMaxState, corinfomax, corinfomax_init
from jaxssl.losses.entropy import info_vicreg, logdet_entropy, pairdist_entropy
from jaxssl.losses.vicreg import vcreg, vicreg
from jaxssl.losses.wmse import wmse

__all__ = [
    "CorInfoMaxState",
    "barlow_twins",
    "corinfomax",
    "corinfomax_init",
    "info_vicreg",
    "logdet_entropy",
    "pairdist_entropy",
    "vcreg",
    "vicreg",
    "wmse",
]
