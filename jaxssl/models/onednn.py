"""oneDNN's convolutions inside jitted JAX programs on CPU (``model.conv="onednn"``).

XLA:CPU runs convolutions of up to 64 channels on one core, at 0.4-0.5x the rate of
oneDNN, the library PyTorch calls on CPU (bench/conv.py; bench/README.md, "Convolutions").
This module calls oneDNN itself: ``onednn_conv.cc`` (beside this file) defines its forward,
backward-data and backward-weights convolutions as XLA FFI handlers, in float32 or bfloat16.
It is compiled on first use with the system's C++ compiler against pip's oneDNN (``pip install
'jaxssl[onednn]'``: ``onednn-cpu-gomp`` and its headers), cached in ``$XDG_CACHE_HOME/jaxssl``
(``~/.cache/jaxssl``) by the source and the versions of jax and oneDNN.

Each direction is a JAX function with
- its gradient, in the other two directions (``jax.custom_vjp``; to any order, since each
  direction's gradient is the other two);
- a batching rule (``jax.custom_batching.custom_vmap``): a batched input folds into the
  convolution's batch, anything else maps over the batch;
- a partitioning rule (``custom_partitioning``, with a Shardy rule): the convolution runs
  on each device's share of the batch; the weight gradient sums the shares over the batch's
  mesh axes. Sharded on anything but the batch, the operands are gathered first.
Each call runs on the process's cores divided by its CPU devices, as OpenMP threads; calls
that XLA runs side by side take turns for the cores rather than oversubscribe them. Without
AVX-512 a large weight gradient is several calls, each over some output channels.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pathlib
import shutil
import site
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.errors import ConfigError

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
TARGETS = {"forward": "ConvForward", "backward_data": "ConvBackwardData",
           "backward_weights": "ConvBackwardWeights"}
HEADER = pathlib.Path("include", "oneapi", "dnnl", "dnnl.hpp")
INSTALL = ("pip install 'jaxssl[onednn]' (oneDNN's library and headers: onednn-cpu-gomp, "
           "onednn-devel-cpu-gomp) and a C++ compiler (Debian: apt-get install g++)")


def prefix() -> pathlib.Path:
  """Where pip put oneDNN (``include/`` and ``lib/`` below it): this Python's environment,
  else the user's base (``pip install --user``)."""
  bases = [pathlib.Path(sys.prefix), pathlib.Path(site.getuserbase())]
  return next((b for b in bases if (b / HEADER).exists()), bases[0])


def unavailable() -> str | None:
  """Why ``model.conv="onednn"`` cannot run here (None: it can): no oneDNN or no compiler."""
  base = prefix()
  if not (base / HEADER).exists():
    return f"oneDNN's headers are not in {base / 'include'}"
  if not any((base / "lib").glob("libdnnl.so*")):
    return f"oneDNN's library is not in {base / 'lib'}"
  if not shutil.which(_compiler()):
    return "no C++ compiler (g++, or $CXX) on PATH"
  return None


def _compiler() -> str:
  return os.environ.get("CXX", "g++")


@functools.cache
def load() -> None:
  """Builds the handlers (unless ``build_library``'s cache holds them) and registers them."""
  reason = unavailable()
  if reason:
    raise ConfigError(f"config.model.conv: 'onednn' cannot run here: {reason}. Install: "
                      f"{INSTALL}; or set model.conv to 'fast' or 'xla'.")
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(f"jaxssl_onednn_{name}", jax.ffi.pycapsule(
        getattr(_library(), symbol)), platform="cpu")


@functools.cache
def _library():
  import ctypes
  return ctypes.cdll.LoadLibrary(str(build_library()))


@functools.cache
def native_bfloat16() -> bool:
  """Whether oneDNN computes bfloat16 in hardware on this CPU (AVX512-BF16 or AMX). Elsewhere
  it would emulate bfloat16 in software, which no measurement here has shown to pay."""
  load()
  return bool(_library().JaxsslNativeBfloat16())


def build_library() -> pathlib.Path:
  """The compiled handlers' path, built now unless the cache holds them."""
  base = prefix()
  # A new jax (its FFI headers) or oneDNN (its version header) builds anew.
  version = base / HEADER.with_name("dnnl_version.h")
  key = hashlib.sha256(SOURCE.read_bytes() + jax.__version__.encode() + str(base).encode()
                       + (version.read_bytes() if version.exists() else b"")).hexdigest()
  cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
  library = cache / "jaxssl" / f"onednn_conv_{key[:16]}.so"
  if library.exists():
    return library
  library.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
    built = pathlib.Path(tmp) / library.name
    command = [_compiler(), "-O2", "-std=c++17", "-shared", "-fPIC",
               "-fopenmp", "-w", f"-I{jax.ffi.include_dir()}", f"-I{base / 'include'}",
               str(SOURCE), "-o", str(built), f"-L{base / 'lib'}",
               f"-Wl,-rpath,{base / 'lib'}", "-ldnnl"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
      raise ConfigError(f"config.model.conv: building oneDNN's convolutions failed "
                        f"({' '.join(command)}); set model.conv to 'fast' or 'xla', or fix "
                        f"the compiler's error below.", details=done.stderr[-4000:])
    os.replace(built, library)  # atomic: concurrent processes build alike, one wins
  return library


@functools.cache
def no_avx512() -> bool:
  """Whether oneDNN has no AVX-512 on this CPU (its widest vectors are AVX2's or narrower)."""
  load()
  return bool(_library().JaxsslNoAvx512())


# Without AVX-512 (AMD EPYC, family 25 model 1) oneDNN 3.2's weight gradient of a 512-to-512 3x3
# kernel at 4x4 took 80-88 ms in one call, 58-64 in 2-8 (bench/README.md, "Convolutions").
SLICED_WEIGHT_GRADIENT = 2**20  # weights per call, at most, without AVX-512


def _output_slices(w_shape) -> list[tuple[int, int]]:
  """A weight gradient's output channels, one (start, stop) per call: all in one, except without
  AVX-512 over ``SLICED_WEIGHT_GRADIENT`` weights (the fewest halvings within it, to 16)."""
  out, calls = w_shape[-1], 1
  while no_avx512() and math.prod(w_shape) > calls * SLICED_WEIGHT_GRADIENT and out >= 32 * calls:
    calls *= 2
  width = -(-out // calls)
  return [(i, min(i + width, out)) for i in range(0, out, width)]


def _threads() -> int:
  """OpenMP threads per call: this process's cores over its CPU devices, which XLA runs
  side by side (one device per core: one thread each, no oversubscription)."""
  return max(1, len(os.sched_getaffinity(0)) // max(1, len(jax.local_devices(backend="cpu"))))


def _ffi(direction, a, b, out_shape, geometry):
  load()
  if direction == "backward_weights" and len(slices := _output_slices(out_shape)) > 1:
    return jnp.concatenate([_ffi(direction, a, b[..., lo:hi], (*out_shape[:-1], hi - lo),
                                 geometry) for lo, hi in slices], axis=-1)
  strides, pads = geometry
  call = jax.ffi.ffi_call(f"jaxssl_onednn_{direction}", jax.ShapeDtypeStruct(out_shape, a.dtype))
  return call(a, b, strides=np.asarray(strides, np.int64),
              pad_lo=np.asarray([lo for lo, _ in pads], np.int64),
              pad_hi=np.asarray([hi for _, hi in pads], np.int64), threads=np.int64(_threads()))


def _batch_axes(sharding):
  """The mesh axes that shard an operand's first (batch) dimension: a name, a tuple, None."""
  if isinstance(sharding, NamedSharding) and len(sharding.spec):
    return sharding.spec[0]
  return None


def _rule(direction, out_shape, geometry, mesh, arg_shapes, result_shape):
  """Shardy's rule: only the batch (``n``) may stay sharded; the weight gradient reduces it."""
  spatial = len(out_shape) - 2
  x = ["n", *(f"x{i}" for i in range(spatial)), "c"]
  y = ["n", *(f"y{i}" for i in range(spatial)), "f"]
  w = [*(f"k{i}" for i in range(spatial)), "c", "f"]
  operands, result = {"forward": ((x, w), y), "backward_data": ((y, w), x),
                      "backward_weights": ((x, y), w)}[direction]
  # Shardy wants the special factors in the order they first appear.
  factors = dict.fromkeys(f for o in (*operands, result) for f in o if f != "n")
  text = f"{', '.join(' '.join(o) for o in operands)} -> {' '.join(result)}"
  return text, {"reduction_factors": ("n",) if direction == "backward_weights" else (),
                "need_replication_factors": tuple(factors)}


@functools.cache
def _partitioned(direction):
  """``direction``'s call, split over the devices by the batch (the module's docstring)."""
  reduces = direction == "backward_weights"

  def result_sharding(mesh, arg_shapes):
    return NamedSharding(mesh, P() if reduces else P(_batch_axes(arg_shapes[0].sharding)))

  def partition(out_shape, geometry, mesh, arg_shapes, result_shape):
    batch = _batch_axes(arg_shapes[0].sharding)
    operand = NamedSharding(mesh, P(batch))
    second = operand if reduces else NamedSharding(mesh, P())

    def lower(a, b):
      local = out_shape if reduces else (a.shape[0], *out_shape[1:])
      out = _ffi(direction, a, b, local, geometry)
      return jax.lax.psum(out, batch) if reduces and batch is not None else out

    return mesh, lower, result_sharding(mesh, arg_shapes), (operand, second)

  fn = custom_partitioning(functools.partial(_ffi, direction), static_argnums=(2, 3))
  fn.def_partition(
      partition=partition,
      infer_sharding_from_operands=lambda out_shape, geometry, mesh, arg_shapes, shape:
          result_sharding(mesh, arg_shapes),
      sharding_rule=functools.partial(_rule, direction))
  return fn


@functools.cache
def _call(direction, out_shape, geometry):
  """``direction``'s call on two operands, with its batching rule: a batched activation
  (the first operand of the forward and backward-data calls) joins the convolution's batch;
  other batched operands map one by one."""
  call = jax.custom_batching.custom_vmap(
      lambda a, b: _partitioned(direction)(a, b, out_shape, geometry))

  @call.def_vmap
  def rule(axis_size, in_batched, a, b):
    if in_batched == [True, False] and direction != "backward_weights":
      folded = (axis_size * out_shape[0], *out_shape[1:])
      out = _call(direction, folded, geometry)(a.reshape(-1, *a.shape[2:]), b)
      return out.reshape(axis_size, *out_shape), True
    batched = [x if on else None for x, on in zip((a, b), in_batched)]
    one = lambda pair: call(*(x if x is not None else y for x, y in zip(pair, (a, b))))
    return jax.lax.map(one, batched), True

  return call


def _keeping_operands(direction):
  """``direction``'s forward rule for ``jax.custom_vjp``: its value, and its two array
  operands as the residuals (each direction's gradient is the other two of them)."""
  return lambda a, b, *static: (direction(a, b, *static), (a, b))


def _out_size(size, kernel, stride, pad):
  return (size + pad[0] + pad[1] - kernel) // stride + 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def forward(x, w, geometry):
  """The convolution of channels-last ``x`` by spatial-first ``w`` (``lax.conv_general_dilated``
  with dimension numbers ``N...C``, ``...IO``, ``N...C``) at ``geometry = (strides, pads)``,
  pads a ``(low, high)`` pair per spatial axis."""
  strides, pads = geometry
  out_shape = (x.shape[0], *map(_out_size, x.shape[1:-1], w.shape[:-2], strides, pads),
               w.shape[-1])
  return _call("forward", out_shape, geometry)(x, w)


def _forward_bwd(geometry, residuals, dy):
  x, w = residuals
  return (backward_data(dy, w, x.shape, geometry),
          backward_weights(x, dy, w.shape, geometry))


forward.defvjp(_keeping_operands(forward), _forward_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def backward_data(dy, w, x_shape, geometry):
  """The gradient of ``forward(x, w, geometry)`` with respect to ``x`` (shape ``x_shape``),
  given the output's gradient ``dy``."""
  return _call("backward_data", tuple(x_shape), geometry)(dy, w)


def _backward_data_bwd(x_shape, geometry, residuals, g):
  # <g, backward_data(dy, w)> = <forward(g, w), dy>
  dy, w = residuals
  return forward(g, w, geometry), backward_weights(g, dy, w.shape, geometry)


backward_data.defvjp(_keeping_operands(backward_data), _backward_data_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def backward_weights(x, dy, w_shape, geometry):
  """The gradient of ``forward(x, w, geometry)`` with respect to ``w`` (shape ``w_shape``),
  given the output's gradient ``dy``."""
  return _call("backward_weights", tuple(w_shape), geometry)(x, dy)


def _backward_weights_bwd(w_shape, geometry, residuals, g):
  # <g, backward_weights(x, dy)> = <forward(x, g), dy>
  x, dy = residuals
  return backward_data(dy, g, x.shape, geometry), forward(x, g, geometry)


backward_weights.defvjp(_keeping_operands(backward_weights), _backward_weights_bwd)
