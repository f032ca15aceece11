"""Convolutions one by one: the forward, input gradient and weight gradient of every distinct
convolution of ResNet-18 (CIFAR stem), ResNet-50 (ImageNet stem) and the Fashion-MNIST
ConvNet, with each of jaxssl's convolutions (``model.conv``: xla, fast, and onednn where
jaxssl[onednn] is installed) against PyTorch (channels-last, oneDNN), side by side in one run.

  python bench/conv.py                         # ResNet-18 (CIFAR stem), batch 64
  python bench/conv.py --nets convnet,resnet50 # the quickstart's CNN; ResNet-50 at 224
  python bench/conv.py --quick                 # three repetitions, for a look
  python bench/conv.py --dtype bfloat16        # in bfloat16 (PyTorch's too), oneDNN on AVX512-BF16

jaxssl's implementations serve their calls from one worker process, PyTorch from another (the
two must not share a thread pool), both with the launch scripts' allocator setting
(``train_step.ALLOCATOR``). The parent has all of them take turns call by call (``in_turns``),
so the machine's drift falls on all alike, keeps every turn, and prints the table and writes
JSON (bench/results/conv_<nets>.json). Rates are GFLOP/s of the pass's multiply-adds (2 FLOPs
each; the input gradient of a stride-s convolution counted at the forward's FLOPs, the
work it needs); "of matmul" is of the matmul rate measured in the same worker in the same
type (2048 x 2048, XLA's or PyTorch's). Times are medians after two warm-ups.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from methods import cpu_kind  # noqa: E402  (this directory's)
from train_step import ALLOCATOR  # noqa: E402  (the launch scripts' malloc setting)
# model.conv's implementations, timed in one worker ("onednn" where it can run here)
CONVS = ("xla", "fast", "onednn")
PASSES = ("forward", "input grad", "weight grad", "forward + backward")


def resnet_shapes(depth: int, stem: str, size: int, batch: int) -> list[dict]:
  """Every convolution of a ResNet as (batch, size, in, out, kernel, stride), in network
  order, each as often as it occurs; the stem's input gradient is never needed (the images
  are not trained)."""
  shapes = []
  add = lambda *s, stem=False: shapes.append(dict(zip(("n", "size", "c", "f", "k", "s"), s),
                                                   stem=stem))
  if stem == "imagenet":
    add(batch, size, 3, 64, 7, 2, stem=True)
    size //= 4  # the stem's stride and its max-pool
  else:
    add(batch, size, 3, 64, 3, 1, stem=True)
  channels = 64
  for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512),
                                              (2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3))):
    for block in range(blocks):
      stride = 2 if stage and not block else 1
      out = size // stride
      if depth == 18:
        add(batch, size, channels, width, 3, stride)
        add(batch, out, width, width, 3, 1)
        if stride != 1 or channels != width:
          add(batch, size, channels, width, 1, stride)  # the shortcut
        channels = width
      else:
        add(batch, size, channels, width, 1, 1)
        add(batch, size, width, width, 3, stride)
        add(batch, out, width, 4 * width, 1, 1)
        if stride != 1 or channels != 4 * width:
          add(batch, size, channels, 4 * width, 1, stride)  # the shortcut
        channels = 4 * width
      size = out
  return shapes


def convnet_shapes(batch=128, size=28, convs_per_stage=None) -> list[dict]:
  """The quickstart's CNN as configs/vicreg_fashion_mnist.py sets it (its widths, and its
  convolutions per stage unless ``convs_per_stage`` is given: one, from
  jaxssl.config.fashion_mnist_config): 3x3 convolutions, 2x2 max-pool between stages;
  ``batch``: images per call, split over the devices (the quickstart's step passes 512,
  two views of 256, through each convolution)."""
  from jaxssl import config as config_lib  # pylint: disable=g-import-not-at-top
  m = config_lib.load(str(ROOT / "configs" / "vicreg_fashion_mnist.py")).model
  shapes, channels = [], 1
  for stage, width in enumerate(m.widths):
    size = size // 2 if stage else size
    for _ in range(convs_per_stage or m.convs_per_stage):
      shapes.append(dict(n=batch, size=size, c=channels, f=width, k=3, s=1, stem=not shapes))
      channels = width
  return shapes


NETS = {
    "resnet18": lambda: resnet_shapes(18, "cifar", 32, 64),
    "resnet50": lambda: resnet_shapes(50, "imagenet", 224, 8),
    "convnet": convnet_shapes,
    # The same CNN with ConvNet's default of two convolutions per stage: its 3x3 1024-to-1024
    # kernel (9.4M weights) is the one "auto" leaves to "fast" in float32 (jaxssl/models/conv.py).
    "convnet_2x": lambda: convnet_shapes(convs_per_stage=2),
}


def distinct(shapes: list[dict]) -> list[dict]:
  seen, out = set(), []
  for s in shapes:
    key = tuple(sorted(s.items()))
    if key not in seen:
      seen.add(key)
      out.append(s)
  return out


def flops(s: dict) -> float:
  out = -(-s["size"] // s["s"])
  return 2.0 * s["n"] * out * out * s["k"] ** 2 * s["c"] * s["f"]


def describe(s: dict) -> str:
  return (f"{s['k']}x{s['k']}/{s['s']} {s['c']}->{s['f']} at {s['size']}x{s['size']}, "
          f"batch {s['n']}{' (stem)' if s['stem'] else ''}")


def local(fn):
  """``fn`` as a turn: called ``repeats`` times back to back, the seconds per call."""
  def run(repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
      fn()
    return (time.perf_counter() - start) / repeats
  return run


def median_seconds(fn, reps: int) -> float:
  return statistics.median(in_turns({"": local(fn)}, reps)[""])


def in_turns(calls: dict, reps: int, min_seconds: float = 0.02) -> dict:
  """Each call's seconds in every timed turn, after two warm-up rounds, the calls taking
  turns (``calls`` maps a name to a function of the repeats that returns the seconds per
  call). A call shorter than ``min_seconds`` runs back to back in each turn, as often as
  fills it: timed one by one, after another implementation's call, a call of about a
  millisecond (the stem's weight gradient) was slowed up to 3x by what the previous call left
  running, and PyTorch's convolutions are timed in the same turns."""
  times = {name: [] for name in calls}
  repeats = dict.fromkeys(calls, 1)
  for round_ in range(reps + 2):
    for name, run in calls.items():
      seconds = run(repeats[name])
      if round_ >= 2:
        times[name].append(seconds)
      else:  # warm-up: how often the call fits in min_seconds
        repeats[name] = max(repeats[name], math.ceil(min_seconds / seconds))
  return times


def jax_worker(p: dict):
  """The greeting (versions, matmul rate) and the calls for a shape: each of ``p["convs"]``
  by pass, the batch split over the devices (one per core: how jaxssl trains on a CPU), the
  kernel on each; a weight gradient is summed over the devices as in a train step."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  sys.path.insert(0, str(ROOT))
  from jaxssl.models import conv as conv_lib

  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  mesh = Mesh(np.array(jax.devices()), ("data",))
  batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  rng = np.random.default_rng(0)
  dtype = jnp.dtype(p["dtype"])
  a = jnp.asarray(rng.normal(size=(2048, 2048)), dtype)
  mm = jax.jit(lambda a: a @ a)
  matmul = 2 * 2048**3 / median_seconds(lambda: mm(a).block_until_ready(), p["reps"])

  def prepare(s: dict) -> dict:
    x = jax.device_put(rng.normal(size=(s["n"], s["size"], s["size"], s["c"])).astype(
        dtype), batch)
    w = jax.device_put(rng.normal(size=(s["k"], s["k"], s["c"], s["f"])).astype(dtype),
                       replicated)
    fns = {name: passes(conv_lib.pick(name), s) for name in p["convs"]}
    dy = jax.device_put(rng.normal(size=jax.eval_shape(
        fns[p["convs"][0]]["forward"], x, w).shape).astype(dtype), batch)
    return {(name, pass_): (lambda f=f, args=(x, w) if pass_ == "forward" else (x, w, dy):
                            jax.block_until_ready(f(*args)))
            for name, by_pass in fns.items() for pass_, f in by_pass.items()}
  return {"matmul_flops": matmul, "jax": jax.__version__,
          "devices": jax.device_count()}, prepare


def passes(conv_fn, s: dict) -> dict:
  """The jitted passes of one convolution of shape ``s``: forward, the two gradients, all."""
  import jax

  def conv(x, w):
    return conv_fn(x, w, (s["s"], s["s"]), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fns = {"forward": jax.jit(conv),
         "input grad": jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)),
         "weight grad": jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)),
         "forward + backward": jax.jit(
             lambda x, w, dy: (lambda y, vjp: (y, vjp(dy)))(*jax.vjp(conv, x, w)))}
  if s["stem"]:  # the images get no gradient: the step runs the forward and weight grad
    del fns["input grad"]
    fns["forward + backward"] = jax.jit(
        lambda x, w, dy: (lambda y, vjp: (y, vjp(dy)))(*jax.vjp(lambda w: conv(x, w), w)))
  return fns


def torch_worker(p: dict):
  """The greeting (version, threads, matmul rate) and the calls for a shape: PyTorch's
  convolution by pass, channels-last (oneDNN's path)."""
  import torch

  torch.set_num_threads(p["threads"])
  dtype = getattr(torch, p["dtype"])
  gen = torch.Generator().manual_seed(0)
  a = torch.randn(2048, 2048, generator=gen).to(dtype)
  matmul = 2 * 2048**3 / median_seconds(lambda: a @ a, p["reps"])
  last = torch.channels_last

  def prepare(s: dict) -> dict:
    x = torch.randn(s["n"], s["c"], s["size"], s["size"], generator=gen).to(
        dtype, memory_format=last)
    w = torch.randn(s["f"], s["c"], s["k"], s["k"], generator=gen).to(dtype, memory_format=last)
    conv = lambda x, w: torch.nn.functional.conv2d(x, w, stride=s["s"], padding=s["k"] // 2)
    with torch.no_grad():
      dy = torch.randn_like(conv(x, w)).contiguous(memory_format=last)

    def forward():
      with torch.no_grad():
        conv(x, w)
    calls = {("pytorch", "forward"): forward}
    grads = {"input grad": "x", "weight grad": "w", "forward + backward": "xw"}
    if s["stem"]:
      del grads["input grad"]
      grads["forward + backward"] = "w"
    for name, wrt in grads.items():  # leaves of their own, each pass its requires_grad
      xs, ws = x.detach().requires_grad_("x" in wrt), w.detach().requires_grad_("w" in wrt)
      leaves = tuple(t for t in (xs, ws) if t.requires_grad)
      if name == "forward + backward":
        calls[("pytorch", name)] = (
            lambda xs=xs, ws=ws, leaves=leaves: torch.autograd.grad(conv(xs, ws), leaves, dy))
      else:  # the backward alone, on one recorded forward
        y = conv(xs, ws)
        calls[("pytorch", name)] = (lambda y=y, leaves=leaves: torch.autograd.grad(
            y, leaves, dy, retain_graph=True))
    return calls
  return {"matmul_flops": matmul, "torch": torch.__version__,
          "threads": torch.get_num_threads()}, prepare


WORKERS = {"jax": jax_worker, "torch": torch_worker}
REPLY = "conv.py reply: "  # marks the protocol's lines among anything else on stdout


def serve(kind: str, params: dict) -> None:
  """A worker's loop: its greeting, then one reply per request on stdin. ``shape`` prepares
  (compiles, allocates) that shape's calls and lists them; ``run`` times one of them."""
  greeting, prepare = WORKERS[kind](params)
  calls = {}
  print(REPLY + json.dumps(greeting), flush=True)
  for line in sys.stdin:
    msg = json.loads(line)
    if msg["op"] == "shape":
      calls = prepare(msg["shape"])
      reply = {"calls": list(calls)}
    else:
      reply = {"seconds": local(calls[msg["label"], msg["pass"]])(msg["repeats"])}
    print(REPLY + json.dumps(reply), flush=True)


class Worker:
  """A process of this script serving its ``kind``'s calls (``serve``), with the launch
  scripts' allocator setting and, for JAX, ``params["devices"]`` XLA CPU devices."""

  def __init__(self, kind: str, params: dict):
    self.kind = kind
    flags = (f"{os.environ.get('XLA_FLAGS', '')} "
             f"--xla_force_host_platform_device_count={params['devices']}").strip()
    env = {**os.environ, **ALLOCATOR, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    self.proc = subprocess.Popen([sys.executable, __file__, "--worker", kind,
                                  json.dumps(params)], env=env, cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    self.greeting = self.reply()

  def ask(self, msg: dict) -> dict:
    self.proc.stdin.write(json.dumps(msg) + "\n")
    self.proc.stdin.flush()
    return self.reply()

  def reply(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(REPLY):
        return json.loads(line[len(REPLY):])
    raise RuntimeError(f"the {self.kind} worker failed (its error is above)")

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


def run_all(params: dict, settle: float = 0.05) -> list[dict]:
  """One result per implementation, PyTorch's last: label, rows, the worker's matmul rate.
  jaxssl's and PyTorch's calls take turns, each from its own process (the two must not share
  a thread pool), so that the machine's drift falls on all of them alike. Before a turn in the
  other process the machine rests ``settle`` seconds: the threads of a parallel region spin a
  while after it ends (OpenMP's, XLA's), and would take a core from the next call."""
  sys.path.insert(0, str(ROOT))
  from jaxssl.models import onednn
  convs = [c for c in CONVS if c != "onednn" or not onednn.unavailable()]
  if len(convs) < len(CONVS):
    print(f"model.conv='onednn' left out: {onednn.unavailable()}", file=sys.stderr)
  # One after the other: each measures its matmul rate while the other is not running.
  workers = [Worker("jax", {**params, "convs": convs}), Worker("torch", params)]
  last = None

  def turn(worker, label, pass_, repeats):
    nonlocal last
    if last is not worker:
      time.sleep(settle)
      last = worker
    return worker.ask({"op": "run", "label": label, "pass": pass_,
                       "repeats": repeats})["seconds"]
  rows = {}
  try:
    for s in params["shapes"]:
      by_pass = {}
      for worker in workers:
        for label, pass_ in worker.ask({"op": "shape", "shape": s})["calls"]:
          by_pass.setdefault(pass_, {})[label] = functools.partial(turn, worker, label, pass_)
      row = {}
      for pass_, calls in by_pass.items():
        for label, seconds in in_turns(calls, params["reps"]).items():
          row.setdefault(label, {"shape": s, "seconds": {}, "turns": {}})
          row[label]["seconds"][pass_] = statistics.median(seconds)
          row[label]["turns"][pass_] = seconds
      for label, r in row.items():
        rows.setdefault(label, []).append(r)
        print(f"  {label}: {describe(s)} " + ", ".join(
            f"{k} {1e3 * v:.1f} ms" for k, v in r["seconds"].items()), file=sys.stderr,
              flush=True)
  finally:
    for worker in workers:
      worker.close()
  ours, torch = workers[0].greeting, workers[1].greeting
  return [{"label": name, **ours, "rows": rows[name]} for name in convs] + [
      {"label": "pytorch", **torch, "rows": rows["pytorch"]}]


def table(results: list[dict], dtype: str = "float32") -> str:
  """One row per shape and pass: each variant's GFLOP/s, PyTorch's, and the best jaxssl
  variant's ratio to PyTorch (of the medians; and, where the file has every turn, the middle
  half of the ratio turn by turn) and to the matmul rate of its own worker."""
  torch = next(r for r in results if r["label"] == "pytorch")
  ours = [r for r in results if r is not torch]
  paired = all("turns" in row for r in results for row in r["rows"])  # files from 2026-12-06
  head = ("| convolution | pass | " + " | ".join(r["label"] for r in ours) +
          " | pytorch | best / pytorch |" + (" by turn, middle half |" if paired else "") +
          " best / its matmul |")
  lines = [head, "|---|---|" + "---:|" * (len(ours) + 3 + paired)]
  for i, row in enumerate(torch["rows"]):
    s = row["shape"]
    for name in PASSES:
      if name not in row["seconds"]:
        continue
      work = flops(s) * (2 if s["stem"] and name == "forward + backward" else
                         3 if name == "forward + backward" else 1)
      rates = [work / r["rows"][i]["seconds"][name] / 1e9 for r in ours]
      best = max(range(len(ours)), key=lambda j: rates[j])
      torch_rate = work / row["seconds"][name] / 1e9
      lines.append(
          f"| {describe(s)} | {name} | " + " | ".join(f"{v:.0f}" for v in rates) +
          f" | {torch_rate:.0f} | {rates[best] / torch_rate:.2f}x ({ours[best]['label']}) | " +
          (middle_half(row["turns"][name], ours[best]["rows"][i]["turns"][name]) + " | "
           if paired else "") +
          f"{1e9 * rates[best] / ours[best]['matmul_flops']:.0%} |")
  matmul = ", ".join(f"{r['label']} {r['matmul_flops'] / 1e9:.0f}" for r in results)
  return "\n".join(lines) + f"\n\n{dtype} matmul, GFLOP/s: {matmul}"


def middle_half(torch_turns: list[float], our_turns: list[float]) -> str:
  """The quartiles of PyTorch's time over ours, turn by turn (the two ran in the same turns):
  how far the ratio moved with the machine."""
  q1, _, q3 = statistics.quantiles([t / o for t, o in zip(torch_turns, our_turns)], n=4)
  return f"{q1:.2f}-{q3:.2f}x"


def totals(results: list[dict], shapes: list[dict]) -> str:
  """Every convolution of the networks once (repeated shapes counted as often as they occur),
  forward + backward: the convolutions' share of a training step, per implementation."""
  count = {}
  for s in shapes:
    key = tuple(sorted(s.items()))
    count[key] = count.get(key, 0) + 1
  lines = ["", "| all convolutions, forward + backward | ms | GFLOP/s | x PyTorch |",
           "|---|---:|---:|---:|"]
  torch_ms = None
  for r in reversed(results):  # PyTorch's first, for the ratio
    ms = work = 0.0
    for row in r["rows"]:
      s, n = row["shape"], count[tuple(sorted(row["shape"].items()))]
      ms += n * 1e3 * row["seconds"]["forward + backward"]
      work += n * flops(s) * (2 if s["stem"] else 3)
    torch_ms = torch_ms or ms
    lines.insert(3, f"| {r['label']} | {ms:,.0f} | {work / ms / 1e6:.0f} | "
                    f"{torch_ms / ms:.2f}x |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--nets", default="resnet18", help=f"comma-separated: {', '.join(NETS)}")
  parser.add_argument("--devices", type=int, default=2,
                      help="XLA CPU devices, the batch split between them (jaxssl's CPU "
                      "default: one per core; 1: one device's thread pool)")
  parser.add_argument("--quick", action="store_true", help="three repetitions, not nine")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="the operands' type, jaxssl's and PyTorch's alike")
  parser.add_argument("--out", default=None)
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    serve(args.worker[0], json.loads(args.worker[1]))
    return
  nets = args.nets.split(",")
  unknown = set(nets) - set(NETS)
  if unknown:
    parser.error(f"unknown nets {sorted(unknown)}; choose from {', '.join(NETS)}")
  shapes = [s for n in nets for s in NETS[n]()]
  params = {"shapes": distinct(shapes), "reps": 3 if args.quick else 9,
            "threads": os.cpu_count(), "devices": args.devices, "dtype": args.dtype}
  result = {"nets": nets, "devices": args.devices, "dtype": args.dtype, "shapes": shapes,
            "machine": {"cpu": cpu_kind(), "cpus": os.cpu_count(),
                        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d")},
            "results": run_all(params)}
  print(render(result))
  out = pathlib.Path(args.out or ROOT / "bench" / "results" /
                     f"conv_{'_'.join(nets)}_{args.devices}dev"
                     f"{'' if args.dtype == 'float32' else '_' + args.dtype}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"wrote {out}")


def render(result: dict) -> str:
  """The Markdown of a run: what ran where, the per-shape table, the networks' totals."""
  versions = ", ".join(f"{k} {r[k]}" for r in result["results"] for k in ("jax", "torch")
                       if k in r and r["label"] in ("xla", "pytorch"))
  dtype = result.get("dtype", "float32")  # files from before --dtype are float32
  devices = ("1 XLA CPU device" if result["devices"] == 1 else
             f"{result['devices']} XLA CPU devices, the batch split between them")
  head = (f"{result['machine']['cpu']}; "
          f"{', '.join(result['nets'])}; {dtype}; jaxssl on "
          f"{devices}; PyTorch {result['results'][-1]['threads']} threads, "
          f"channels-last; {versions}; {result['machine']['date']}")
  return "\n".join([head, "", table(result["results"], dtype),
                    totals(result["results"], result["shapes"])])


if __name__ == "__main__":
  main()
