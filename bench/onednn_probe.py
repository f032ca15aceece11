"""What a convolution library reaches inside a jitted JAX program on this CPU: oneDNN's
forward convolution as an XLA FFI custom call (bench/onednn/conv_forward.cc, a probe, not
part of jaxssl) against XLA's own (lax.conv_general_dilated), over every distinct forward
convolution of ResNet-18 (CIFAR stem) and the Fashion-MNIST CNN, on one XLA device, in one
process taking turns call by call. Values are checked against lax's first.

  sudo apt-get install libdnnl-dev g++    # oneDNN (Debian's 2.6), once
  python bench/onednn_probe.py            # builds the probe into a temporary directory

Prints a table and writes bench/results/onednn_probe.json. The forward only: gradients
through oneDNN (its backward-data and backward-weights primitives), batching and
partitioning rules are what a model.conv="onednn" would add (issue 34's note).
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import conv as conv_bench  # noqa: E402  (this directory's)


def build(out_dir: str) -> str:
  import jax
  library = os.path.join(out_dir, "libconv_forward.so")
  subprocess.run(["g++", "-O3", "-std=c++17", "-shared", "-fPIC", "-w",
                  f"-I{jax.ffi.include_dir()}", str(ROOT / "bench" / "onednn" / "conv_forward.cc"),
                  "-o", library, "-ldnnl"], check=True)
  return library


def main():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  with tempfile.TemporaryDirectory() as tmp:
    library = ctypes.cdll.LoadLibrary(build(tmp))
  jax.ffi.register_ffi_target("onednn_conv_forward", jax.ffi.pycapsule(library.ConvFwd),
                              platform="cpu")
  nhwc = ("NHWC", "HWIO", "NHWC")

  def onednn(x, w, stride, pads):
    out = jax.eval_shape(lambda x, w: lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=nhwc), x, w)
    (lo, hi), = set(pads)  # the probe pads both spatial axes alike
    return jax.ffi.ffi_call("onednn_conv_forward", out)(
        x, w, stride=np.int64(stride), pad_lo=np.int64(lo), pad_hi=np.int64(hi))

  rng = np.random.default_rng(0)
  rows = []
  shapes = conv_bench.distinct(conv_bench.NETS["resnet18"]() + conv_bench.NETS["convnet"]())
  for s in shapes:
    x = jnp.asarray(rng.normal(size=(s["n"], s["size"], s["size"], s["c"])), jnp.float32)
    w = jnp.asarray(rng.normal(size=(s["k"], s["k"], s["c"], s["f"])), jnp.float32)
    pads = tuple(lax.padtype_to_pads(x.shape[1:3], w.shape[:2], (s["s"], s["s"]), "SAME"))
    fns = {"xla": jax.jit(lambda x, w, s=s, p=pads: lax.conv_general_dilated(
               x, w, (s["s"], s["s"]), p, dimension_numbers=nhwc)),
           "onednn": jax.jit(lambda x, w, s=s, p=pads: onednn(x, w, s["s"], p))}
    want, got = fns["xla"](x, w), fns["onednn"](x, w)
    error = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    if error > 1e-5:
      raise SystemExit(f"{conv_bench.describe(s)}: oneDNN's values differ from lax's by "
                       f"{error:.1e} relative")
    calls = {k: (lambda f=f: f(x, w).block_until_ready()) for k, f in fns.items()}
    seconds = conv_bench.in_turns(calls, 9)
    rate = {k: conv_bench.flops(s) / v / 1e9 for k, v in seconds.items()}
    rows.append({"shape": s, "seconds": seconds, "gflops": rate, "relative_error": error})
    print(f"| {conv_bench.describe(s)} | {rate['xla']:.0f} | {rate['onednn']:.0f} | "
          f"{rate['onednn'] / rate['xla']:.2f}x |", flush=True)
  out = ROOT / "bench" / "results" / "onednn_probe.json"
  out.write_text(json.dumps({"machine": {"cpu": conv_bench.cpu_kind(), "cpus": os.cpu_count(),
                                         "date": time.strftime("%Y-%m-%d")},
                             "jax": jax.__version__, "rows": rows}, indent=1) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  print("| forward convolution (1 device) | XLA GFLOP/s | oneDNN via FFI GFLOP/s | ratio |")
  print("|---|---:|---:|---:|")
  main()
