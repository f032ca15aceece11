"""The projector's matmul, with its weight gradient in the kernel's own layout (on a CPU).

JAX differentiates ``y = x @ w`` with respect to ``w`` (``(in, out)``, flax's layout) as the
matmul ``dy^T x``, of shape ``(out, in)``, then a transpose. XLA folds such a transpose into
the matmul, but the two views go through the projector separately, so each kernel has two
gradients, and XLA adds them before the transpose. XLA:CPU then runs the transpose inside the
addition's elementwise fusion, reading the sum column by column: 11 ms per 1024 x 1024 kernel
and device, about 8% of the quickstart's step (bench/README.md, "The quickstart's trainer").
Here the gradient is the matmul ``x^T dy`` itself, already ``(in, out)``: the same products
summed in the same order, so training in float32 is bitwise the same. In bfloat16 XLA may
compute a view's gradient straight into the float32 kernel's type, where JAX's form rounds it
to bfloat16 first (it did for ResNet-18 on one device, not for the shipped configs on two).

The gradient is written out (``jax.custom_vjp``), so forward-mode differentiation
(``jax.jvp``) is not defined for it; ``model.conv="xla"`` keeps JAX's own (``pick``).
"""

from __future__ import annotations

import functools

import jax
from jax import lax


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x, w, precision=None):
  """``x @ w``: ``x``'s last axis against ``w``'s first (any leading axes, as ``nn.Dense``)."""
  return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _matmul_fwd(x, w, precision):
  return matmul(x, w, precision), (x, w)


def _matmul_bwd(precision, residuals, dy):
  x, w = residuals
  dx = lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())), precision=precision)
  # Leading axes flattened into one, which sums as JAX's form does (contracting them apart
  # summed in another order).
  rows = lambda a: a.reshape(-1, a.shape[-1])
  dw = lax.dot_general(rows(x), rows(dy), (((0,), (0,)), ((), ())), precision=precision)
  return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """``lax.dot_general`` as ``nn.Dense(dot_general=...)`` calls it, by ``matmul``; any other
  contraction (or a preferred element type) by lax's."""
  (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
  dense = (tuple(contract_lhs) == (lhs.ndim - 1,) and tuple(contract_rhs) == (0,)
           and rhs.ndim == 2 and not batch_lhs and not batch_rhs)
  if not dense or preferred_element_type is not None:
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
  return matmul(lhs, rhs, precision)


def pick(conv: str, platform: str | None = None):
  """The projector's ``dot_general`` under ``model.conv`` = ``conv``: ``dot_general`` on a
  CPU (``platform``, default JAX's default backend) unless ``conv`` is ``"xla"`` (everything
  differentiated by JAX); lax's elsewhere, where nothing was measured to need it."""
  if conv == "xla" or (platform or jax.default_backend()) != "cpu":
    return lax.dot_general
  return dot_general
