"""The convolution the models call, picked by name (``model.conv``).

``"xla"``: ``lax.conv_general_dilated``, differentiated by JAX.

``"fast"``: the same values, computed in the forms XLA:CPU runs fastest
(bench/conv.py; bench/README.md, "Convolutions"):
- A 1x1 convolution (any stride, no padding) is a matmul over every s-th position, and so
  are its gradients. XLA:CPU runs a 1x1 convolution's weight gradient at a quarter to a
  third of its matmul rate; as a matmul it runs near that rate.
- At stride s > 1, JAX's input gradient convolves an s-times dilated output gradient
  (``lhs_dilation``) with the reversed kernel: s^2 times the FLOPs needed, in a form
  XLA:CPU's library path (YNNPACK) refuses (jax-ml/jax#23783). Here it is the s^2 stride-1
  convolutions of the output gradient by the kernel's phases (for a 3x3 kernel at stride 2:
  its 2x2, 2x1, 1x2 and 1x1 taps), interleaved (depth-to-space): the forward's FLOPs, in
  convolutions the library path takes.

``"onednn"``: oneDNN's convolutions, the library PyTorch calls on CPU, through XLA's foreign
function interface (:mod:`jaxssl.models.onednn`; CPU only, ``pip install 'jaxssl[onednn]'``
and a C++ compiler), for the convolutions ``"fast"`` covers.

Other convolutions (input or kernel dilation, feature groups, channels not last, a preferred
element type) are ``lax.conv_general_dilated``'s. ``"onednn"`` takes float32, and bfloat16
where the CPU computes it in hardware (AVX512-BF16 or AMX: 1.75-1.93x float32's rate per
convolution on this project's CPU); it leaves other types to ``"fast"``.
Values and gradients equal ``"xla"``'s up to the order of summation, under ``jit``, ``grad``
(to any order), ``vmap`` and sharding; the gradients are written out (``jax.custom_vjp``), so
forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) needs ``"xla"``, which on a CPU
also leaves the projector's matmuls to JAX (:mod:`jaxssl.models.dense`).

``"auto"`` (the default) is what measured fastest on the platform the model runs on (``pick``):
on a CPU, ``"onednn"`` where it is installed, but ``"fast"`` for the largest float32 kernels;
lax's convolution elsewhere: on an H100 ``"fast"`` gained nothing (the bfloat16 ResNet-50
step in 97.6 ms against lax's 97.0), and no TPU was measured.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxssl.errors import ConfigError
from jaxssl.models import onednn

CONVS = ("auto", "xla", "fast", "onednn")
# "auto" on a CPU where oneDNN is installed: oneDNN's convolution for float32 kernels of up
# to this many weights, "fast" for larger ones, where oneDNN measured slower on this
# project's CPU (a 3x3 1024-to-1024 convolution at 3x3 pixels, 9.4M weights: 0.6x of
# "fast"; every kernel of ResNet-18, ResNet-50 and the quickstart's CNN, 2.4M weights at
# most, ran faster by oneDNN). In bfloat16 oneDNN takes every kernel: on that convolution it
# ran at 1.9x "fast"'s rate, which gains nothing from bfloat16 on XLA:CPU (bench/README.md,
# "Convolutions").
AUTO_ONEDNN_MAX_WEIGHTS = {"float32": 4 * 2**20}


def check(name: str, platform: str | None = None) -> None:
  """A ``ConfigError`` naming ``config.model.conv`` unless ``name`` can run on ``platform``
  (default: JAX's default backend); ``"onednn"`` is built here, before any work starts."""
  if name not in CONVS:
    raise ConfigError(f"config.model.conv: must be one of {CONVS}; got {name!r}.")
  platform = platform or jax.default_backend()
  if name == "onednn" and platform != "cpu":
    raise ConfigError(f"config.model.conv: 'onednn' runs on CPU only and this run's devices "
                      f"are {platform}'s; set it to 'auto' or 'xla'.")
  if pick(name, platform) in (onednn_conv_general_dilated, auto_cpu):
    onednn.load()


def pick(name: str, platform: str | None = None):
  """The ``conv_general_dilated`` that ``model.conv``'s value ``name`` names. ``"auto"`` on
  ``platform`` (default: JAX's default backend): on a CPU, oneDNN's where it is installed for
  kernels within ``AUTO_ONEDNN_MAX_WEIGHTS`` and ``"fast"`` otherwise; elsewhere lax's, as
  nothing was measured to beat it on a GPU (``"fast"`` on an H100: even) or a TPU."""
  if name == "auto":
    if (platform or jax.default_backend()) != "cpu":
      return lax.conv_general_dilated
    return conv_general_dilated if onednn.unavailable() else auto_cpu
  return {"xla": lax.conv_general_dilated, "fast": conv_general_dilated,
          "onednn": onednn_conv_general_dilated}[name]


def _covered_pads(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                  dimension_numbers, feature_group_count, batch_group_count,
                  preferred_element_type):
  """The explicit ``(low, high)`` padding per spatial axis when the convolution is one that
  ``"fast"`` and ``"onednn"`` cover (channels last, 1-3 spatial axes, no dilation or
  groups), else None."""
  spatial = lhs.ndim - 2
  covered = (feature_group_count == 1 and batch_group_count == 1
             and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
             and preferred_element_type is None and 1 <= spatial <= 3
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _channels_last(spatial)))
  if not covered:
    return None
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``'s signature and values, in ``"fast"``'s forms (the module's
  docstring); what they do not cover is lax's."""
  strides = tuple(window_strides)
  pads = _covered_pads(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation,
                       dimension_numbers, feature_group_count, batch_group_count,
                       preferred_element_type)
  if pads is not None:
    if all(k == 1 for k in rhs.shape[:-2]) and all(p == (0, 0) for p in pads):
      return _pointwise(lhs, rhs, strides, precision)
    if any(s > 1 for s in strides):
      return _strided(lhs, rhs, strides, pads, precision)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type)


def onednn_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                                rhs_dilation=None, dimension_numbers=None,
                                feature_group_count=1, batch_group_count=1, precision=None,
                                preferred_element_type=None, *, max_weights=None):
  """``lax.conv_general_dilated``'s signature and values, by oneDNN where ``"fast"`` covers
  the convolution, in float32 or (on a CPU with bfloat16 in hardware) bfloat16, ``precision``
  aside (oneDNN accumulates in float32), and the kernel has at most ``max_weights[dtype]``
  weights (``max_weights`` maps an element type's name to a limit; a type it does not name
  has none), else ``"fast"``'s."""
  args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, batch_group_count, precision, preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  pads = _covered_pads(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation,
                       dimension_numbers, feature_group_count, batch_group_count,
                       preferred_element_type)
  limit = (max_weights or {}).get(jnp.dtype(rhs.dtype).name)
  if (pads is not None and lhs.dtype == rhs.dtype and _onednn_computes(lhs.dtype)
      and (limit is None or rhs.size <= limit)):
    return onednn.forward(lhs, rhs, (strides, pads))
  return conv_general_dilated(*args)


def _onednn_computes(dtype) -> bool:
  """float32 always; bfloat16 where the CPU has it in hardware (elsewhere oneDNN would emulate
  it in software, which no measurement here has shown to pay)."""
  return dtype == jnp.float32 or (dtype == jnp.bfloat16 and onednn.native_bfloat16())


auto_cpu = functools.partial(onednn_conv_general_dilated, max_weights=AUTO_ONEDNN_MAX_WEIGHTS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pointwise(x, w, strides, precision):
  """A 1x1 convolution at stride s: every s-th position times the kernel; its gradients are
  matmuls too, written out (JAX's own transposes of these matmuls measured 10% slower on
  ResNet-50's convolutions, bench/conv.py)."""
  return _pointwise_fwd(x, w, strides, precision)[0]


def _every(x, strides):
  return x[(slice(None), *(slice(None, None, s) for s in strides))]


def _pointwise_fwd(x, w, strides, precision):
  y = jnp.tensordot(_every(x, strides), w.reshape(w.shape[-2:]), axes=1, precision=precision)
  return y, (x, w)


def _pointwise_bwd(strides, precision, residuals, dy):
  x, w = residuals
  leading = tuple(range(x.ndim - 1))
  dw = jnp.tensordot(_every(x, strides), dy, axes=(leading, leading), precision=precision)
  dx_every = jnp.tensordot(dy, w.reshape(w.shape[-2:]).T, axes=1, precision=precision)
  # Back to x's shape: every s-th position (interior padding s - 1), zeros to the end.
  config = [(0, 0, 0)] + [(0, n - (m - 1) * s - 1, s - 1) for n, m, s in
                          zip(x.shape[1:-1], dy.shape[1:-1], strides)] + [(0, 0, 0)]
  return lax.pad(dx_every, jnp.zeros((), dx_every.dtype), config), dw.reshape(w.shape)


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


def _channels_last(spatial: int) -> tuple[str, str, str]:
  letters = "HWD"[:spatial]
  return f"N{letters}C", f"{letters}IO", f"N{letters}C"


def _conv(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads, precision=precision,
                                  dimension_numbers=_channels_last(x.ndim - 2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided(x, w, strides, pads, precision):
  return _conv(x, w, strides, pads, precision)


def _strided_fwd(x, w, strides, pads, precision):
  return _conv(x, w, strides, pads, precision), (x, w)


def _strided_bwd(strides, pads, precision, residuals, dy):
  x, w = residuals
  (dw,) = jax.linear_transpose(lambda w: _conv(x, w, strides, pads, precision), w)(dy)
  return input_gradient(dy, w, x.shape, strides, pads, precision), dw


_strided.defvjp(_strided_fwd, _strided_bwd)


def input_gradient(dy, w, x_shape, strides, pads, precision=None):
  """The gradient of ``_conv(x, w, strides, pads)`` with respect to ``x`` (shape ``x_shape``)
  as the kernel's phases: with u = s*q + r a position of the padded input, the gradient at u
  sums dy[q - m] * w[r + s*m] over m, a stride-1 convolution of dy by the taps r, r + s, ...
  of w, reversed. The s^2 phases' outputs interleave into the padded input's positions."""
  spatial = len(strides)
  size = x_shape[1:-1]
  out_size = dy.shape[1:-1]
  # Positions 0 .. s*q_len - 1 of the padded input cover the input's [lo, lo + size).
  q_len = [math.ceil((lo + n) / s) for n, s, (lo, _) in zip(size, strides, pads)]
  w_t = jnp.swapaxes(w, -1, -2)  # (..., out features, in features): dy's channels in
  phases = []
  for phase in itertools.product(*(range(s) for s in strides)):
    taps = w_t[tuple(slice(r, None, s) for r, s in zip(phase, strides))]
    if 0 in taps.shape[:spatial]:  # no tap of the kernel lands on this phase
      phases.append(jnp.zeros((dy.shape[0], *q_len, x_shape[-1]), dy.dtype))
      continue
    taps = jnp.flip(taps, axis=tuple(range(spatial)))
    reach = taps.shape[:spatial]
    grad = _conv(dy, taps, (1,) * spatial,
                 [(m - 1, max(0, q - o)) for m, q, o in zip(reach, q_len, out_size)],
                 precision)
    phases.append(grad[(slice(None), *(slice(0, q) for q in q_len))])
  # (s1, s2, .., N, q1, q2, .., C) -> (N, q1, s1, q2, s2, .., C) -> (N, q1*s1, q2*s2, .., C)
  stacked = jnp.stack(phases).reshape(*strides, *phases[0].shape)
  order = [spatial] + [a for d in range(spatial) for a in (spatial + 1 + d, d)] + [2 * spatial + 1]
  padded = stacked.transpose(order).reshape(
      x_shape[0], *(q * s for q, s in zip(q_len, strides)), x_shape[-1])
  return padded[(slice(None), *(slice(lo, lo + n) for (lo, _), n in zip(pads, size)),
                 slice(None))]
