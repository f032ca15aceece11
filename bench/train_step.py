"""The train step, side by side: jaxssl's VICReg step against the same model and step in
PyTorch, on the same machine in the same run, plus the SSL-overhead ratio (the VICReg step's
time per view image over a supervised step's time per image, same backbone and optimiser).

  python bench/train_step.py                 # CPU: CIFAR ResNet-18, batch 2 x 64
  python bench/train_step.py --suite gpu     # GPU: ResNet-50 at 224, bfloat16
  python bench/train_step.py --quick         # fewer variants and repetitions
  python bench/train_step.py --suite vit_cpu # the Fashion-MNIST ViT (vicreg_fashion_mnist:vit)
  python bench/train_step.py --suite vit_gpu # ViT-B/16 at 224, bfloat16 (vicreg_imagenet:vit_b16)
  python bench/train_step.py --suite cnn_cpu # the quickstart's CNN (vicreg_fashion_mnist)
  python bench/train_step.py --rounds 3      # every variant 3 times, taking turns
  python bench/train_step.py --only bfloat16 # only the variants whose label says so

Suites:
  cpu  ResNet-18 with the CIFAR stem at 32x32, projector 2048-2048-2048, two views of 64
       images, LARS (configs/vicreg_cifar.py with the official VICReg LARS). Variants: the
       number of XLA CPU devices (one, or one per core with the batch split between them),
       the convolution (model.conv: "fast", "xla", and "onednn" where jaxssl[onednn] is
       installed, also on one device and there once with glibc's 4 KiB pages), float32 /
       bfloat16 (with "onednn" where the CPU has bfloat16 in hardware), and PyTorch with 2
       threads in both memory formats and, channels-last, with bfloat16 autocast (where the
       CPU has bfloat16 in hardware; emulated, it took 20x float32's time). The summary
       compares each precision with PyTorch's in the same precision.
  cnn_cpu  The quickstart's step (configs/vicreg_fashion_mnist.py: its CNN, projector and
       batch of 256): one XLA device per core with model.conv "fast" (the quickstart until
       oneDNN), and "auto" (oneDNN where installed) on one device and on one per core; the
       same CNN in PyTorch with 2 threads in both memory formats.
  gpu  ResNet-50 at 224x224, projector 8192-8192-8192, bfloat16 (configs/vicreg_imagenet.py),
       per-device batches of 128 and 256 per view; images/s and model FLOP utilisation (MFU:
       of the chip's data-sheet dense bfloat16 peak, PEAK_BF16_FLOPS; and of the bfloat16
       matmul rate measured in the jaxssl worker). PyTorch runs the same step with bfloat16
       autocast and channels-last. jaxssl's step also runs with model.conv "fast" beside the
       config's (lax's convolution off a CPU).

Every variant runs in its own subprocess (XLA's device count is fixed at start-up, and the two
frameworks must not share a thread pool or GPU memory); the parent prints the table and writes
JSON. Times are medians over repetitions after warm-up; jit compile time is reported apart.
With --rounds N every variant runs N times, the variants taking turns, and each row's time is
the median of its rounds (all kept in the JSON): a machine's slow minutes then fall on every
variant alike. Every worker runs with the allocator setting of the launch scripts
(launch/_cpu.sh, ALLOCATOR here); on the CPU one jaxssl variant runs without it.
Rows: "step" is model + loss + backward + optimiser on views already on the device; "step +
aug" is jaxssl's real train step, which also draws both views on the device (random crop and
the photometric ops on CPU; on GPU the host has cropped and the device does the rest).
Needs PyTorch (a benchmark-only extra: `pip install torch`).
"""

from __future__ import annotations

import argparse
import json
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

SUITES = {
    "cpu": dict(config="vicreg_cifar", arg="cifar10", depth=18, stem="cifar", size=32,
                projector="2048-2048-2048", classes=10, batches=[64], reps=5),
    "gpu": dict(config="vicreg_imagenet", arg=None, depth=50, stem="imagenet", size=224,
                projector="8192-8192-8192", classes=1000, batches=[256, 128], reps=20),
    # The ViTs: the model of the config file (its model.vit section) and its optimiser (AdamW,
    # gradient clipping); the VICReg step and, on the CPU, the step with its device crops.
    "vit_cpu": dict(config="vicreg_fashion_mnist", arg="vit", model="vit", size=28, channels=1,
                    projector="1024-1024-1024", classes=10, batches=[128], reps=5),
    "cnn_cpu": dict(config="vicreg_fashion_mnist", arg=None, model="convnet", size=28,
                    channels=1, projector="1024-1024-1024", classes=10, batches=[256], reps=5),
    "vit_gpu": dict(config="vicreg_imagenet", arg="vit_b16", model="vit", size=224, channels=3,
                    projector="8192-8192-8192", classes=1000, batches=[256, 128], reps=20),
}


# glibc's malloc asks for transparent huge pages for the large blocks it maps (glibc 2.35+;
# older ones ignore the name): XLA:CPU allocates a step's temporary buffers afresh every step
# (1 GB for the ResNet-18 step), and faulting them in 4 KiB pages cost that step about 10%.
# The launch scripts set the same (launch/_cpu.sh).
ALLOCATOR = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def log(message: str) -> None:
  """A worker's progress, on stderr (the parent passes it through; stdout carries the JSON)."""
  print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_seconds(fn, reps: int) -> float:
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


# ---- jaxssl ------------------------------------------------------------------------------

def jax_worker(p: dict) -> dict:

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from jax.sharding import NamedSharding, PartitionSpec as P

  from jaxssl.data import augment
  from jaxssl.models import build_backbone
  from jaxssl.data import source
  from jaxssl.train import optim, run as run_lib, step as step_lib

  from jaxssl import config as config_lib
  path = ROOT / "configs" / f"{p['config']}.py"
  c = config_lib.load(f"{path}:{p['arg']}" if p["arg"] else str(path))
  batch = p["batch"] * jax.device_count()
  c.model.dtype, c.model.projector = p["dtype"], p["projector"]
  c.model.conv = p.get("conv", c.model.conv)
  c.optim.clip_trust_ratio = False  # the official VICReg LARS, as PyTorch runs it
  c.train.global_batch = batch
  c.aug.view_a.out_size = c.aug.view_b.out_size = p["size"]
  channels = p.get("channels", 3)
  r = run_lib.Run(c, info=source.SplitInfo(c.data.name, "train", 100 * batch,
                                           (p["size"], p["size"], channels), p["classes"]))
  mesh = r.mesh
  state = r.init_state()
  log(f"state built on {jax.device_count()} {jax.devices()[0].device_kind} device(s)")
  rng = np.random.default_rng(0)
  size = p["size"]
  images = rng.integers(0, 256, (batch, size, size, channels), np.uint8)
  labels = rng.integers(0, p["classes"], (batch,), np.int32)
  shard = lambda tree: jax.device_put(tree, NamedSharding(mesh, P("data")))
  dtype = jnp.dtype(p["dtype"])
  update = r.update()
  view_a, view_b = r.views

  def timed(step, data) -> dict:
    nonlocal state
    fn = step_lib.jit_train_step(step, state, mesh)
    start = time.perf_counter()
    compiled = fn.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    log(f"compiled in {compile_s:.1f} s")

    def run():
      nonlocal state
      state, metrics = compiled(state, data)
      jax.block_until_ready(metrics["loss"])
    run()
    run()
    seconds = median_seconds(run, p["reps"])
    log(f"{1e3 * seconds:.1f} ms per step")
    return {"seconds": seconds, "compile_s": compile_s}

  views = {"a": jnp.asarray(rng.normal(size=images.shape), dtype),
           "b": jnp.asarray(rng.normal(size=images.shape), dtype), "label": labels}
  wanted = lambda row: row in p.get("rows", (row,))  # "rows": measure only these
  out = {}
  if wanted("step"):
    out["step"] = timed(lambda s, b: update(s, b["a"], b["b"], b["label"]), shard(views))
  if not wanted("step + aug"):
    pass
  elif r.host_crops is None:  # crops drawn on the device from the stored images
    out["step + aug"] = timed(r.train_step(), shard({"image": images, "label": labels}))
  else:  # host-cropped views; the photometric ops on the device

    def photometric_step(s, b):
      key = step_lib.step_keys(jax.random.key(0), s.step)[0]
      key_a, key_b = jax.random.split(key)
      x_a = augment.augment_batch(key_a, step_lib.images_to_float(b["a"]), view_a, crop=False)
      x_b = augment.augment_batch(key_b, step_lib.images_to_float(b["b"]), view_b, crop=False)
      return update(s, x_a.astype(dtype), x_b.astype(dtype), b["label"])
    out["step + aug"] = timed(photometric_step,
                              shard({"a": images, "b": images[::-1].copy(), "label": labels}))
  del state

  # The supervised step: the same backbone and optimiser, one batch of 2 x batch images.
  class Supervised(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
      backbone = build_backbone(c.model.backbone, width=c.model.width, stem=c.model.stem,
                                conv=c.model.conv, dtype=dtype)
      return nn.Dense(p["classes"])(backbone(x, train=train))

  model = Supervised()
  tx = optim.make_optimizer(c.optim, global_batch=batch, total_steps=100, steps_per_epoch=100)

  def init_supervised():
    variables = model.init(jax.random.key(0), jnp.zeros((2, size, size, 3)), train=True)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"],
            "opt": tx.init(variables["params"])}
  init_supervised = jax.jit(init_supervised, out_shardings=NamedSharding(mesh, P()))

  def supervised_step(s, b):
    def loss_fn(params):
      logits, updates = model.apply({"params": params, "batch_stats": s["batch_stats"]},
                                    b["x"], train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, b["label"]).mean()
      return loss, updates["batch_stats"]
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(s["params"])
    updates, opt = tx.update(grads, s["opt"], s["params"])
    return ({"params": optax.apply_updates(s["params"], updates), "batch_stats": batch_stats,
             "opt": opt}, {"loss": loss})
  # Both views' images in one batch, and one view's worth: the ratio is taken against the
  # faster per image, so a batch-size effect cannot flatter the VICReg step.
  both = jnp.concatenate([views["a"], views["b"]])
  if wanted("supervised"):
    state = init_supervised()
    out["supervised"] = timed(supervised_step,
                              shard({"x": both, "label": np.concatenate([labels, labels])}))
  if wanted("supervised, half batch"):
    state = init_supervised()
    out["supervised, half batch"] = timed(supervised_step,
                                          shard({"x": views["a"], "label": labels}))
  rate = None
  if jax.default_backend() == "gpu":
    n = 8192
    a = jnp.asarray(rng.normal(size=(n, n)), jnp.bfloat16)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    rate = 2 * n**3 / median_seconds(lambda: mm(a).block_until_ready(), 10)
  return {"framework": "jaxssl", "devices": jax.device_count(), "batch_per_view": batch,
          "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
          "matmul_flops": rate, "rows": out}


# ---- PyTorch -----------------------------------------------------------------------------

def torch_worker(p: dict) -> dict:
  sys.path.insert(0, str(ROOT / "bench"))
  import torch_reference as ref
  from torch_reference import torch

  cuda = p["device"] == "cuda"
  device = torch.device(p["device"])
  if not cuda:
    torch.set_num_threads(p["threads"])
  torch.backends.cudnn.benchmark = True
  fmt = torch.channels_last if p["channels_last"] else torch.contiguous_format
  widths = [int(w) for w in p["projector"].split("-")]
  channels = p.get("channels", 3)
  if p.get("model") == "vit":  # the config's ViT, AdamW and gradient clipping
    v = p["vit"]
    backbone = ref.ViT(width=v["width"], depth=v["depth"], mlp_dim=v["mlp_dim"],
                       heads=v["heads"], patch=v["patch"], channels=channels, size=p["size"],
                       pool=v["pool"]).to(device)
    features = v["width"]
  elif p.get("model") == "convnet":  # the config's CNN
    backbone = ref.convnet(p["widths"], p["convs_per_stage"], channels).to(
        device, memory_format=fmt)
    features = p["widths"][-1]
  else:
    backbone = ref.resnet(p["depth"], p["stem"]).to(device, memory_format=fmt)
    features = 512 if p["depth"] == 18 else 2048
  proj = ref.projector([features, *widths]).to(device)
  head = torch.nn.Linear(features, p["classes"]).to(device)
  params = [*backbone.parameters(), *proj.parameters()]
  if p.get("model") == "vit":
    o = p["optim"]  # the learning rate scaled as jaxssl scales it, by this batch
    opt = torch.optim.AdamW(params, lr=o["lr"] * (p["batch"] / 256 if o["scale_lr_by_batch"]
                                                  else 1.0),
                            weight_decay=o["weight_decay"])
  else:
    opt = ref.LARS(params, lr=0.2, weight_decay=1e-6, momentum=0.9, eta=0.001)
  clip = p.get("optim", {}).get("clip_norm")
  probe_opt = torch.optim.Adam(head.parameters(), lr=1e-4)
  b, size = p["batch"], p["size"]
  gen = torch.Generator().manual_seed(0)
  x1 = torch.randn(b, channels, size, size, generator=gen).to(device, memory_format=fmt)
  x2 = torch.randn(b, channels, size, size, generator=gen).to(device, memory_format=fmt)
  labels = torch.randint(0, p["classes"], (b,), generator=gen).to(device)
  autocast = torch.autocast(p["device"], dtype=torch.bfloat16, enabled=p["bf16"])
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  ce = torch.nn.functional.cross_entropy

  def vicreg_step():
    opt.zero_grad(set_to_none=True)
    probe_opt.zero_grad(set_to_none=True)
    with autocast:
      h1, h2 = backbone(x1), backbone(x2)
      z1, z2 = proj(h1), proj(h2)
      probe = ce(head(torch.cat([h1, h2]).detach()), torch.cat([labels, labels]))
    loss = ref.torch_vicreg(z1.float(), z2.float()) + probe.float()
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    probe_opt.step()
    sync()

  sup_head = torch.nn.Linear(features, p["classes"]).to(device)
  sup_opt = ref.LARS([*backbone.parameters(), *sup_head.parameters()], lr=0.2,
                     weight_decay=1e-6, momentum=0.9, eta=0.001)
  x_both, labels_both = torch.cat([x1, x2]).contiguous(memory_format=fmt), torch.cat(
      [labels, labels])

  def supervised_step(x, y):
    sup_opt.zero_grad(set_to_none=True)
    with autocast:
      loss = ce(sup_head(backbone(x)), y)
    loss.float().backward()
    sup_opt.step()
    sync()

  out = {}
  for name, fn in (("step", vicreg_step),
                   ("supervised", lambda: supervised_step(x_both, labels_both)),
                   ("supervised, half batch", lambda: supervised_step(x1, labels))):
    if name not in p.get("rows", (name,)):
      continue
    fn()
    fn()
    out[name] = {"seconds": median_seconds(fn, p["reps"]), "compile_s": 0.0}
    log(f"PyTorch {name}: {1e3 * out[name]['seconds']:.1f} ms per step")
  return {"framework": "pytorch", "devices": 1, "batch_per_view": b,
          "device_kind": torch.cuda.get_device_name() if cuda else "cpu",
          "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": out}


# ---- the parent: variants, table, JSON ----------------------------------------------------

def vit_settings(s: dict) -> dict:
  """The ViT and optimiser of a ViT suite's config file, for the PyTorch worker."""
  from jaxssl import config as config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.load(f"{ROOT / 'configs' / s['config']}.py:{s['arg']}")
  return {"vit": c.model.vit.to_dict(),
          "optim": {k: c.optim[k] for k in ("lr", "scale_lr_by_batch", "weight_decay",
                                            "clip_norm")}}


def convnet_settings(s: dict) -> dict:
  """The CNN of a CNN suite's config file, for the PyTorch worker."""
  from jaxssl import config as config_lib  # pylint: disable=g-import-not-at-top
  m = config_lib.load(str(ROOT / "configs" / f"{s['config']}.py")).model
  return {"widths": list(m.widths), "convs_per_stage": m.convs_per_stage}


def variants(suite: str, quick: bool):
  s = SUITES[suite]
  common = {k: v for k, v in s.items() if k not in ("batches", "reps")}
  reps = 3 if quick else s["reps"]
  if s.get("model") == "vit":
    common.update(vit_settings(s), rows=["step", "step + aug"])
    cpu = suite.endswith("cpu")
    for b in s["batches"][:1] if quick or cpu else s["batches"]:
      dtype = "float32" if cpu else "bfloat16"
      yield f"jaxssl, 1 device, {dtype}, {b}/view", "jax", {}, dict(
          common, batch=b, dtype=dtype, reps=reps)
      if cpu and not quick:  # one XLA device per core, each with half the batch
        yield (f"jaxssl, 2 devices, {dtype}, {b}/view", "jax",
               {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
               dict(common, batch=b // 2, dtype=dtype, reps=reps))
      yield (f"PyTorch, {'2 threads' if cpu else 'bf16 autocast'}, {b}/view", "torch", {},
             dict(common, batch=b, device="cpu" if cpu else "cuda", threads=2 if cpu else 0,
                  bf16=not cpu, channels_last=False, reps=reps))
    return
  two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  if s.get("model") == "convnet":  # the quickstart's step: its old setting, then "auto"
    b, rows = s["batches"][0], ["step", "step + aug"]
    yield "jaxssl, 2 devices, conv fast", "jax", two, dict(
        common, batch=b // 2, dtype="float32", reps=reps, conv="fast", rows=rows)
    yield "jaxssl, 2 devices, conv auto", "jax", two, dict(
        common, batch=b // 2, dtype="float32", reps=reps, conv="auto", rows=rows)
    yield "jaxssl, 1 device, conv auto", "jax", {}, dict(
        common, batch=b, dtype="float32", reps=reps, conv="auto", rows=rows)
    for channels_last in (False, True):
      yield (f"PyTorch, 2 threads, {'channels-last' if channels_last else 'NCHW'}", "torch", {},
             dict(common, **convnet_settings(s), batch=b, device="cpu", threads=2, bf16=False,
                  channels_last=channels_last, reps=reps, rows=["step"]))
    return
  if suite == "cpu":
    b = s["batches"][0]
    yield "jaxssl, 1 device, float32, conv fast", "jax", {}, dict(
        common, batch=b, dtype="float32", reps=reps, conv="fast")
    if not quick:
      # One XLA device per core, each with half the batch (global batch unchanged), with
      # each convolution (model.conv; oneDNN's where jaxssl[onednn] is installed); and
      # oneDNN's on one device, its threads over both cores.
      from jaxssl.models import onednn
      convs = ("fast", "xla") + (() if onednn.unavailable() else ("onednn",))
      for conv in convs:
        yield (f"jaxssl, 2 devices, float32, conv {conv}", "jax", two,
               dict(common, batch=b // 2, dtype="float32", reps=reps, conv=conv))
      if "onednn" in convs:
        yield ("jaxssl, 1 device, float32, conv onednn", "jax", {},
               dict(common, batch=b, dtype="float32", reps=reps, conv="onednn"))
        yield ("jaxssl, 1 device, float32, conv onednn, 4 KiB pages", "jax",
               {"GLIBC_TUNABLES": ""}, dict(common, batch=b, dtype="float32", reps=reps,
                                            conv="onednn", rows=["step"]))
      yield "jaxssl, 1 device, bfloat16, conv fast", "jax", {}, dict(
          common, batch=b, dtype="bfloat16", reps=reps, conv="fast")
      # oneDNN in bfloat16 where this CPU has it in hardware (else "onednn" is "fast").
      if "onednn" in convs and onednn.native_bfloat16():
        yield "jaxssl, 1 device, bfloat16, conv onednn", "jax", {}, dict(
            common, batch=b, dtype="bfloat16", reps=reps, conv="onednn")
    for channels_last in ((False,) if quick else (False, True)):
      yield (f"PyTorch, 2 threads, {'channels-last' if channels_last else 'NCHW'}", "torch", {},
             dict(common, batch=b, device="cpu", threads=2, bf16=False,
                  channels_last=channels_last, reps=reps))
    if not quick and cpu_has_bfloat16():  # emulated, its step took 20x float32's (Zen 3)
      yield ("PyTorch, 2 threads, channels-last, bf16 autocast", "torch", {},
             dict(common, batch=b, device="cpu", threads=2, bf16=True, channels_last=True,
                  reps=reps))
  else:
    for b in s["batches"][:1] if quick else s["batches"]:
      yield (f"jaxssl, bfloat16, {b}/view", "jax", {},
             dict(common, batch=b, dtype="bfloat16", reps=reps))
      yield (f"PyTorch, bf16 autocast, channels-last, {b}/view", "torch", {},
             dict(common, batch=b, device="cuda", threads=0, bf16=True, channels_last=True,
                  reps=reps))
    if not quick:  # model.conv's "fast" forms against lax's, the default off a CPU
      b = s["batches"][0]
      yield (f"jaxssl, bfloat16, conv fast, {b}/view", "jax", {},
             dict(common, batch=b, dtype="bfloat16", reps=reps, conv="fast", rows=["step"]))


def cpu_has_bfloat16() -> bool:
  """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), per /proc/cpuinfo."""
  try:
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
  except OSError:
    return False
  return "avx512_bf16" in flags or "amx_bf16" in flags


# Analytic model FLOPs per view image of forward + backward (3x the forward's multiply-adds
# x 2): the backbones' multiply-adds at their input size, plus the projector's.
BACKBONE_MACS = {(18, "cifar", 32): 0.556e9, (50, "imagenet", 224): 4.09e9}


def vit_macs(v: dict, size: int, channels: int) -> float:
  """A ViT's forward multiply-adds per image: patch embedding, then per block the qkv and
  output projections (4 w^2 per token), the MLP (2 w mlp_dim) and attention (2 t^2 w)."""
  patches = (size // v["patch"]) ** 2
  tokens, w = patches + (v["pool"] == "tok"), v["width"]
  block = tokens * (4 * w * w + 2 * w * v["mlp_dim"]) + 2 * tokens**2 * w
  return patches * v["patch"] ** 2 * channels * w + v["depth"] * block


def convnet_macs(s: dict) -> tuple[int, float]:
  """The suite config's CNN (jaxssl/models/convnet.py): its features and forward
  multiply-adds per image (3x3 convolutions, 2x2 max-pools between stages)."""
  m = convnet_settings(s)
  macs, size, cin = 0, s["size"], s["channels"]
  for stage, width in enumerate(m["widths"]):
    size = size // 2 if stage else size
    for _ in range(m["convs_per_stage"]):
      macs, cin = macs + size * size * 9 * cin * width, width
  return cin, macs


def model_flops_per_image(s: dict) -> float:
  if s.get("model") == "vit":
    v = vit_settings(s)["vit"]
    features, backbone = v["width"], vit_macs(v, s["size"], s["channels"])
  elif s.get("model") == "convnet":
    features, backbone = convnet_macs(s)
  else:
    features = 512 if s["depth"] == 18 else 2048
    backbone = BACKBONE_MACS[(s["depth"], s["stem"], s["size"])]
  widths = [features] + [int(w) for w in s["projector"].split("-")]
  projector = sum(a * b for a, b in zip(widths, widths[1:]))
  return 3 * 2 * (backbone + projector)


# Dense bfloat16 peaks from the vendors' data sheets (no sparsity), by a piece of the device's
# name: MFU is the model's FLOPs per second over this. The first match wins.
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989.4e12),
                   ("H200", 989.4e12), ("A100", 312e12), ("L4", 121e12),
                   ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
                   ("TPU v5", 459e12), ("TPU v6", 918e12))


def peak_flops(device_kind: str) -> float | None:
  """The data-sheet dense bfloat16 peak of ``device_kind`` (None: not in the table, e.g. a
  CPU)."""
  return next((peak for name, peak in PEAK_BF16_FLOPS if name in device_kind), None)


def run_variant(kind: str, env: dict, params: dict) -> dict:
  cmd = [sys.executable, __file__, "--worker", kind, json.dumps(params)]
  proc = subprocess.run(cmd, env={**os.environ, **ALLOCATOR, **env}, stdout=subprocess.PIPE,
                        text=True, cwd=ROOT)
  if proc.returncode != 0:
    raise RuntimeError(f"the {kind} worker failed (its error is above): {' '.join(cmd)}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(result: dict, label: str, flops_per_image: float) -> dict:
  """Adds images/s, model FLOP utilisation (of the device's data-sheet peak, ``mfu``, and of
  the bfloat16 matmul rate the jaxssl worker measured in the same run, ``of_matmul``) and the
  SSL-overhead ratio to a worker's result, and prints its rows."""
  result["label"] = label
  batch, rate = result["batch_per_view"], result.get("matmul_flops")
  peak = peak_flops(result["device_kind"])
  rows = result["rows"]
  for row, m in rows.items():
    m["images"] = batch if row.endswith("half batch") else 2 * batch  # both views, or one
    m["images_per_s"] = m["images"] / m["seconds"]
    m["mfu"] = flops_per_image * m["images_per_s"] / peak if peak else None
    m["of_matmul"] = flops_per_image * m["images_per_s"] / rate if rate else None
    mfu, of_matmul = (f"{100 * m[k]:.1f}%" if m[k] else "-" for k in ("mfu", "of_matmul"))
    print(f"{label:<58}{row:<24}{m['images']:>7}{1e3 * m['seconds']:>9.1f}"
          f"{m['images_per_s']:>9.1f}{mfu:>7}{of_matmul:>10}{m['compile_s']:>11.1f}",
          flush=True)
  supervised = [rows[r]["images_per_s"] for r in ("supervised", "supervised, half batch")
                if r in rows]
  if supervised and "step" in rows:
    result["ssl_overhead"] = max(supervised) / rows["step"]["images_per_s"]
    print(f"{'':<58}SSL overhead (VICReg time per view image / the faster supervised "
          f"time per image): {result['ssl_overhead']:.3f}", flush=True)
  return result


def merged(paths: list[str]) -> list[tuple[str, dict]]:
  """Worker outputs saved to files (``--worker KIND PARAMS > FILE``, e.g. one accelerator
  session each), joined by framework and batch: rows measured in separate runs of the same
  setting become one result."""
  results: dict[tuple, dict] = {}
  for path in paths:
    text = pathlib.Path(path).read_text().strip()
    if not text:
      raise SystemExit(f"{path} is empty: its worker did not finish (see its log).")
    r = json.loads(text.splitlines()[-1])
    key = (r["framework"], r["batch_per_view"], r["devices"], r.get("params", {}).get("conv"))
    if key in results:
      results[key]["rows"].update(r["rows"])
      results[key]["matmul_flops"] = results[key].get("matmul_flops") or r.get("matmul_flops")
    else:
      results[key] = r
  return [(f"{r['framework']} on {r['device_kind']}, {r['batch_per_view']}/view"
           + (f", conv {conv}" if conv else ""), r)
          for (*_, conv), r in results.items()]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
  parser.add_argument("--quick", action="store_true", help="fewer variants and repetitions")
  parser.add_argument("--out", default=None,
                      help="JSON path (default bench/results/train_step_<suite>.json)")
  parser.add_argument("--merge", nargs="+", metavar="FILE",
                      help="report saved worker outputs instead of running the variants")
  parser.add_argument("--rounds", type=int, default=1,
                      help="run every variant this many times, taking turns; each row's "
                      "time is the median of its rounds")
  parser.add_argument("--only", nargs="+", metavar="TEXT",
                      help="run only the variants whose label contains one of these")
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    kind, params = args.worker[0], json.loads(args.worker[1])
    result = (jax_worker if kind == "jax" else torch_worker)(params)
    print(json.dumps({**result, "params": params}))
    return
  suite = SUITES[args.suite]
  flops_per_image = model_flops_per_image(suite)
  out = pathlib.Path(args.out or f"bench/results/train_step_{args.suite}.json")
  print(f"{args.suite}: {model_name(suite)} at {suite['size']}x{suite['size']}, projector "
        f"{suite['projector']}; {flops_per_image / 1e9:.2f} GFLOP per view image "
        "(forward + backward)")
  header = (f"{'variant':<58}{'row':<24}{'images':>7}{'ms':>9}{'img/s':>9}{'MFU':>7}"
            f"{'of matmul':>10}{'compile s':>11}")
  print(header)
  print("-" * len(header))
  if args.merge:
    results = [describe(result, label, flops_per_image) for label, result in merged(args.merge)]
  else:
    todo = [v for v in variants(args.suite, args.quick)
            if not args.only or any(o in v[0] for o in args.only)]
    rounds: list[list[dict]] = []
    for n in range(args.rounds):
      if args.rounds > 1:
        print(f"round {n + 1} of {args.rounds}", flush=True)
      rounds.append([describe({**run_variant(kind, env, params), "env": env}, label,
                              flops_per_image) for label, kind, env, params in todo])
      results = [joined(runs) for runs in zip(*rounds)]
      write_results(out, args.suite, suite, flops_per_image, results, merged=False)
    if args.rounds > 1:
      print(f"each row's median over {args.rounds} rounds:")
      results = [describe(r, r["label"], flops_per_image) for r in results]
  write_results(out, args.suite, suite, flops_per_image, results, merged=bool(args.merge))
  summarise(results)
  print(f"wrote {out}")


def model_name(s: dict) -> str:
  """A suite's model and step, as the console and bench/table.py's tables name them."""
  if s.get("model") == "vit":
    return f"the ViT of configs/{s['config']}.py:{s['arg']}, VICReg + AdamW"
  if s.get("model") == "convnet":
    return f"the CNN of configs/{s['config']}.py, VICReg + LARS"
  return f"ResNet-{s['depth']} ({s['stem']} stem), VICReg + LARS"


def joined(runs: list[dict]) -> dict:
  """One variant's runs (rounds) as one result: each row's time the median of the rounds',
  the rounds' own times kept under ``rounds``."""
  if len(runs) == 1:
    return runs[0]
  result = {**runs[-1], "rows": {}}
  for row in runs[-1]["rows"]:
    result["rows"][row] = {
        **runs[-1]["rows"][row],
        "seconds": statistics.median(r["rows"][row]["seconds"] for r in runs),
        "rounds": [r["rows"][row]["seconds"] for r in runs]}
  return result


def precision(result: dict) -> str:
  """A variant's arithmetic: ``"bfloat16"`` (jaxssl's model.dtype, PyTorch's autocast) or
  ``"float32"``."""
  p = result.get("params", {})
  return "bfloat16" if p.get("bf16") or p.get("dtype") == "bfloat16" else "float32"


def summarise(results: list[dict]) -> None:
  """The best jaxssl variant of each row and precision against PyTorch's best step in the
  same precision (a bfloat16 one also against PyTorch's best float32 step); with rounds,
  also the ratio within each round (the two ran minutes apart)."""
  best = {}
  for r in results:
    for row, m in r["rows"].items():
      key = (r["framework"], row, r["batch_per_view"], precision(r))
      if key not in best or m["images_per_s"] > best[key][1]:
        best[key] = (r["label"], m["images_per_s"], m.get("rounds"))
  for (framework, row, batch, dtype), (label, ips, rounds) in sorted(best.items()):
    if framework != "jaxssl" or row.startswith("supervised"):
      continue
    against = [(d, best[("pytorch", "step", batch, d)]) for d in dict.fromkeys((dtype, "float32"))
               if ("pytorch", "step", batch, d) in best]
    for n, (torch_dtype, (torch_label, torch_ips, torch_rounds)) in enumerate(against):
      per_round = ""
      if rounds and torch_rounds:
        per_round = "; per round " + ", ".join(
            f"{t / j:.2f}x" for j, t in zip(rounds, torch_rounds))
      lead = (f"best jaxssl {row!r} at {batch}/view in {dtype} ({label}): {ips:.1f} img/s"
              if n == 0 else " " * 8 + "and")
      print(f"{lead} = {ips / torch_ips:.2f}x PyTorch's best {torch_dtype} step ({torch_label}, "
            f"{torch_ips:.1f} img/s){per_round}")


def write_results(out: pathlib.Path, name: str, suite: dict, flops: float, results: list, *,
                  merged: bool):
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({
      "suite": name, "settings": suite, "model_flops_per_image": flops, "merged": merged,
      "machine": {"devices": sorted({r["device_kind"] for r in results}),
                  "cpu": cpu_kind(), "written_on": platform.platform(), "cpus": os.cpu_count(),
                  "date": time.strftime("%Y-%m-%d")},
      "results": results}, indent=2))


if __name__ == "__main__":
  main()
