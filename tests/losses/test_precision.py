"""Every matmul of every loss, value and gradient, asks for float32's full precision.

JAX's default computes float32 matmuls in TF32 on NVIDIA GPUs and in one bfloat16 pass on
TPUs; on an H100 that took the pairwise-distance entropy's gradient 39% off its float64 value
(bench/precision.py). A CPU computes float32 in full whatever is asked, so this reads the
precision off the programs instead of their numbers.
"""

import jax
import numpy as np
import pytest
from jax import lax

from tests.losses.cases import CASE_IDS, CASES, views

HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


def dot_precisions(jaxpr) -> list:
  """The ``precision`` of every ``dot_general`` in ``jaxpr`` and the jaxprs inside it
  (``cond`` branches, ``custom_vjp`` calls, ``pjit``, ``shard_map``)."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn.params["precision"])
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
        if hasattr(inner, "eqns"):
          found += dot_precisions(inner)
  return found


def _forms(case):
  return ["sample", "feature"] if case.has_forms else ["auto"]


@pytest.mark.parametrize("mapped", [False, True], ids=["global", "axis_name"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_matmul_at_highest_precision(case, mapped):
  z_a, z_b = views(48, 20)
  for form in _forms(case):
    if mapped:  # per-device rows under an axis name: the gathered Gram blocks
      loss = jax.vmap(lambda a, b, form=form: case.loss(a, b, form=form, axis_name="batch"),
                      axis_name="batch")
      z_a, z_b = z_a.reshape(2, 24, 20), z_b.reshape(2, 24, 20)
      fn = jax.grad(lambda a, b, loss=loss: loss(a, b).sum(), argnums=(0, 1))
    else:
      fn = jax.grad(lambda a, b, form=form: case.loss(a, b, form=form, axis_name=None),
                    argnums=(0, 1))
    precisions = dot_precisions(jax.make_jaxpr(fn)(z_a, z_b).jaxpr)
    assert precisions, "no matmul found: the walk missed the loss's program"
    assert all(p == HIGHEST for p in precisions), (form, precisions)


def test_cpu_results_unchanged_by_the_precision():
  """On a CPU the explicit precision changes no bit: the same product as ``a @ b``."""
  from jaxssl.losses import stats
  a, b = views(32, 16)
  np.testing.assert_array_equal(jax.jit(lambda x, y: stats.matmul(x, y.T))(a, b),
                                jax.jit(lambda x, y: x @ y.T)(a, b))
