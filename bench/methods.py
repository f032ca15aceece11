"""Every method at equal budget on Fashion-MNIST, and the papers' claims put to the test.

    .venv/bin/python bench/methods.py                    # sweep, table, projector study
    .venv/bin/python bench/methods.py --parts table      # one part
    .venv/bin/python bench/methods.py --report           # the Markdown tables from the JSON
    .venv/bin/python bench/methods.py --smoke            # every run in its smoke form (CI)

Each run (train, then evaluate its last checkpoint) is one subprocess; its result goes into
``bench/results/methods.json`` as soon as it ends, and a run already there is skipped, so the
benchmark can be stopped at any point and filled across several sittings (``--retry`` redoes
runs that failed). A run's workdir (under ``--workroot``) keeps its checkpoints, so a run
killed half-way resumes from its last one.

Parts:
- ``sweep``: one seed at one epoch per setting, the search that picked each method's learning
  rate and coefficients in ``configs/*_fashion_mnist.py``;
- ``table``: every method's config file as it is, at ``--table_epochs`` (default 3, the
  files' own length), ``--seeds`` seeds, plus the randomly initialised encoder and the
  supervised baselines (with and without VCReg);
- ``projector``: VICReg at several projector widths and depths (the sweep's length, seed 0;
  the table's 1024-1024-1024 run at that length is the fifth point), for the pairwise
  independence of the representation;
- ``quickstart``: the search for a better CPU default (``configs/vicreg_fashion_mnist.py``),
  VICReg at the sweep's length with one change to the shared recipe each, and a freshly
  initialised encoder for each change of architecture (the baseline moves with it); then the
  default it chose (last stage 512, 2 epochs) at every seed;
- ``vit``: the small ViT of ``configs/vicreg_fashion_mnist.py:vit`` at its own length (the
  quickstart's time), seed 0, with a few optimiser settings, against its random init;
- ``wide``: the 89% attempt: the table's two leaders (VICReg, pairwise-distance info-VICReg)
  on the then default's 512-wide CNN at the table's 3 epochs, seed 0, against that CNN's
  random init;
- ``ceiling``: what labels reach at the default's shape and budget: the supervised baseline
  (``configs/vcreg_fashion_mnist.py:plain``) with the default's 1024-wide CNN for its 2
  epochs, at every seed, beside the default and its random init (a yardstick for the
  quickstart's "+5 points over the random encoder" target);
- ``default``: the second 89% attempt: one change each to the CPU default as it then was
  (``configs/vicreg_fashion_mnist.py`` with its last stage 512 wide) at its own budget
  (2 epochs), seed 0, against that default's seed-0 run; the changes the other searches left
  open (learning rate, warm-up, crop range, the method, a still wider last stage with its
  random init), and the one that reached 89% (last stage 1024, today's default) at every seed.
- ``onednn``: today's default as ``launch/quickstart.sh`` has run it since 2026-12-05
  (``model.conv="auto"`` finds ``jaxssl[onednn]`` and runs oneDNN's convolutions: the same
  recipe in another summation order), in float32 and in bfloat16, at every seed; beside the
  ``default`` part's seeds of the same recipe from before. It needs oneDNN installed.
- ``maxpool``: the same float32 runs since the CNN's 2x2 max-pool is a reshape and a
  reduction (``jaxssl.models.convnet.max_pool_2x2``: the same values and gradients, another
  compiled step, so another summation order), beside the ``onednn`` part's float32 seeds.
- ``one_pass``: the same float32 runs since the step runs both views through the model in one
  pass (``jaxssl.models.norm``: BatchNorm's statistics still per view, the same values to
  float32 summation order), beside the ``maxpool`` part's seeds.
- ``threads``: the same float32 runs since each oneDNN primitive is built for the threads its
  call runs on (one per device on two devices; before, built on a thread that could use both
  cores, each device's calls opened two: the same values to float32 summation order in the
  weight gradients), beside the ``one_pass`` part's seeds.

Every run is evaluated on the backbone's features: logistic and ridge probes, 200-NN, RankMe,
the covariance spectrum, the mean pairwise normalised HSIC between features (512 test images)
and a logistic probe on MNIST digits (``mnist_5k``: out-of-domain transfer).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's jaxssl (see run_one)
sys.path.insert(0, str(ROOT / "bench"))
import methods_stats  # noqa: E402  (this directory's)
RESULTS = ROOT / "bench" / "results" / "methods.json"

# In the order the table trains them: the 1-epoch leaders first, so that a table cut short
# by the session still answers the papers' questions.
SSL_CONFIGS = {
    "vicreg": "configs/vicreg_fashion_mnist.py:shared",  # (the default widens the CNN)
    "info_vicreg_pairdist": "configs/info_vicreg_fashion_mnist.py:pairdist",
    "corinfomax": "configs/corinfomax_fashion_mnist.py",
    "info_vicreg_logdet": "configs/info_vicreg_fashion_mnist.py:logdet",
    "barlow_twins": "configs/barlow_twins_fashion_mnist.py",
    "wmse": "configs/wmse_fashion_mnist.py",
}
BASELINES = {
    "supervised": "configs/vcreg_fashion_mnist.py:plain",
    "supervised + vcreg": "configs/vcreg_fashion_mnist.py",
}
SWEEP_EPOCHS = 1

# The search, at SWEEP_EPOCHS and seed 0: official coefficients first, then the learning rate
# and, for info-VICReg (no published coefficients), the balance of its terms and the
# estimator's scale. Each entry: (method, overrides on top of its config file).
SWEEP = [
    ("vicreg", {"optim.lr": 3.2}),
    ("barlow_twins", {"optim.lr": 0.8}),
    ("barlow_twins", {"optim.lr": 3.2}),
    ("wmse", {"optim.lr": 3.2}),
    ("wmse", {"optim.name": "adamw", "optim.lr": 3e-3, "optim.scale_lr_by_batch": False,
              "optim.weight_decay": 1e-6}),
    ("corinfomax", {"optim.lr": 3.2}),
    ("corinfomax", {"optim.name": "sgd", "optim.lr": 0.5, "optim.scale_lr_by_batch": False,
                    "optim.weight_decay": 1e-4}),
    ("info_vicreg_logdet", {"method.kwargs.sim_coeff": 1.0, "method.kwargs.ent_coeff": 1.0}),
    ("info_vicreg_logdet", {"method.kwargs.sim_coeff": 25.0, "method.kwargs.ent_coeff": 1.0}),
    ("info_vicreg_logdet", {"method.kwargs.sim_coeff": 1.0, "method.kwargs.ent_coeff": 10.0}),
    ("info_vicreg_pairdist", {"method.kwargs.sigma": 1.0}),
    ("info_vicreg_pairdist", {"method.kwargs.sigma": 4.0}),
]
QUICKSTART_DEFAULT = "configs/vicreg_fashion_mnist.py"  # what launch/quickstart.sh trains
# The default as the quickstart_default and default parts measured it (its last stage has been
# 1024 wide since, the change the default part chose): those runs pin it, so they stay the runs
# they were.
DEFAULT_512 = {"model.widths": (32, 64, 128, 512)}
PROJECTORS = ["256", "1024", "1024-1024", "4096-4096-4096"]  # besides the table's 1024-1024-1024
# (label, overrides, whether the architecture changes): each against the table's 1-epoch VICReg.
QUICKSTART = [
    ("batch 128", {"train.global_batch": 128}, False),
    ("last stage 512", {"model.widths": (32, 64, 128, 512)}, True),
    ("projector 2048-2048-2048", {"model.projector": "2048-2048-2048"}, False),
    ("no blur", {"aug.view_a.blur_prob": 0.0, "aug.view_b.blur_prob": 0.0}, False),
    ("lr 6.4", {"optim.lr": 6.4}, False),
    # The two that helped, together (the backbone of "last stage 512": its random encoder).
    ("last stage 512, projector 2048-2048-2048",
     {"model.widths": (32, 64, 128, 512), "model.projector": "2048-2048-2048"}, False),
]
VIT_CONFIG = "configs/vicreg_fashion_mnist.py:vit"
# (label, overrides on top of VIT_CONFIG)
VIT = [
    ("adamw lr 1e-3 (the switch's)", {}),
    ("adamw lr 3e-3", {"optim.lr": 3e-3}),
    ("lars lr 3.2 (the CNN's)", {"optim.name": "lars", "optim.lr": 3.2,
                                 "optim.weight_decay": 1e-6, "optim.clip_norm": None}),
]
WIDE = {**DEFAULT_512, "train.epochs": 3}  # the (then) default's CNN, 3 epochs
WIDE_METHODS = ("vicreg", "info_vicreg_pairdist")
# (label, overrides on top of QUICKSTART_DEFAULT and DEFAULT_512, config if another method's
# file, whether the architecture changes): each against the (then) default's own seed-0 run.
DEFAULT = [
    ("lr 6.4", {"optim.lr": 6.4}, None, False),
    ("warm-up 0.1 epoch", {"optim.warmup_epochs": 0.1}, None, False),
    ("crops of 40-100%", {"aug.view_a.crop_scale": (0.4, 1.0),
                          "aug.view_b.crop_scale": (0.4, 1.0)}, None, False),
    ("pairwise-distance info-VICReg", {"train.epochs": 2},  # the default's length
     SSL_CONFIGS["info_vicreg_pairdist"], False),
    ("last stage 1024", {"model.widths": (32, 64, 128, 1024)}, None, True),
]
DEFAULT_CHOSEN = "last stage 1024"  # (89.40% at seed 0): run at every seed of --seeds
# The labels' reach at the default's shape and budget: supervised training (the table's
# baseline recipe) with the default's CNN and length, at every seed.
CEILING = {"model.widths": (32, 64, 128, 1024), "train.epochs": 2}
# The precisions the onednn part trains today's default in (model.dtype).
PRECISIONS = ("float32", "bfloat16")
# The parts that train today's default again after a change of its step (float32, every seed),
# and with them the parts that train it with oneDNN's convolutions (one run per label and seed).
RERUN_PARTS = ("maxpool", "one_pass", "threads")
ONEDNN_PARTS = ("onednn", *RERUN_PARTS)
PARTS = ("sweep", "table", "projector", "quickstart", "vit", "wide", "default", "ceiling",
         *ONEDNN_PARTS)


@dataclasses.dataclass(frozen=True)
class Run:
  id: str
  part: str
  label: str  # the row of its table
  config: str  # path[:switches]
  overrides: dict
  seed: int = 0
  random_init: bool = False  # evaluate the config's architecture freshly initialised


def plan(parts: list[str], seeds: list[int], table_epochs: int = 3) -> list[Run]:
  """The runs of ``parts`` in order. Table runs are named by their length (``table/e3/...``):
  tables of different budgets live side by side in one results file."""
  runs = []
  if "sweep" in parts:
    for method, overrides in SWEEP:
      setting = ",".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())
      runs.append(Run(f"sweep/{method}/{setting}", "sweep", method, SSL_CONFIGS[method],
                      {"train.epochs": SWEEP_EPOCHS, **overrides}))
  if "table" in parts:
    length = {"train.epochs": table_epochs}
    for seed in seeds:  # all rows of a seed before the next seed: a partial table is a table
      runs.append(Run(f"table/e{table_epochs}/random init/seed{seed}", "table", "random init",
                      SSL_CONFIGS["vicreg"], length, seed, random_init=True))
      for label, config in {**SSL_CONFIGS, **BASELINES}.items():
        runs.append(Run(f"table/e{table_epochs}/{label}/seed{seed}", "table", label, config,
                        length, seed))
  if "projector" in parts:
    for projector in PROJECTORS:
      runs.append(Run(f"projector/vicreg/{projector}", "projector", projector,
                      SSL_CONFIGS["vicreg"],
                      {"train.epochs": SWEEP_EPOCHS, "model.projector": projector}))
  if "quickstart" in parts:
    for label, overrides, architecture in QUICKSTART:
      length = {"train.epochs": SWEEP_EPOCHS, **overrides}
      if architecture:
        runs.append(Run(f"quickstart/random init/{label}", "quickstart", f"random init, {label}",
                        SSL_CONFIGS["vicreg"], length, random_init=True))
      runs.append(Run(f"quickstart/vicreg/{label}", "quickstart", label, SSL_CONFIGS["vicreg"],
                      length))
    for seed in seeds:  # the chosen default as it is, with its spread over seeds
      runs.append(Run(f"quickstart_default/vicreg/seed{seed}", "quickstart_default",
                      "the default", QUICKSTART_DEFAULT, DEFAULT_512, seed))
  if "vit" in parts:
    runs.append(Run("vit/random init", "vit", "random init", VIT_CONFIG, {}, random_init=True))
    for label, overrides in VIT:
      runs.append(Run(f"vit/vicreg/{label}", "vit", label, VIT_CONFIG, overrides))
  if "wide" in parts:
    runs.append(Run("wide/random init", "wide", "random init", SSL_CONFIGS["vicreg"], WIDE,
                    random_init=True))
    for method in WIDE_METHODS:
      runs.append(Run(f"wide/{method}", "wide", method, SSL_CONFIGS[method], WIDE))
  if "default" in parts:
    for label, overrides, config, architecture in DEFAULT:
      overrides = {**DEFAULT_512, **overrides}
      if architecture:
        runs.append(Run(f"default/random init/{label}", "default", f"random init, {label}",
                        QUICKSTART_DEFAULT, overrides, random_init=True))
      runs.append(Run(f"default/vicreg/{label}", "default", label,
                      config or QUICKSTART_DEFAULT, overrides))
    chosen = next(r for r in runs if r.id == f"default/vicreg/{DEFAULT_CHOSEN}")
    for seed in seeds[1:]:  # the change that reached 89% at seed 0, at the other seeds
      runs.append(dataclasses.replace(chosen, id=f"{chosen.id}/seed{seed}", seed=seed))
  if "ceiling" in parts:
    for seed in seeds:
      runs.append(Run(f"ceiling/supervised/seed{seed}", "ceiling",
                      "supervised, the default's CNN and length", BASELINES["supervised"],
                      CEILING, seed))
  if "onednn" in parts:
    for seed in seeds:  # both precisions of a seed before the next seed: pairs at any stop
      for dtype in PRECISIONS:
        runs.append(Run(f"onednn/{dtype}/seed{seed}", "onednn", dtype, QUICKSTART_DEFAULT,
                        {"model.dtype": dtype}, seed))
  for part in RERUN_PARTS:
    if part in parts:
      for seed in seeds:
        runs.append(Run(f"{part}/float32/seed{seed}", part, "float32", QUICKSTART_DEFAULT,
                        {"model.dtype": "float32"}, seed))
  return runs


def fingerprint(run: Run, smoke: bool) -> str:
  """Two runs with the same fingerprint are the same run (e.g. the sweep's chosen setting and
  the table's seed 0 at the sweep's length): see ``config_fingerprint``."""
  return config_fingerprint(_configure(run, smoke, None), run.random_init)


# The data settings added since the first runs (the folder's, jaxssl.data.folder, and the
# probes' split) at their defaults.
FOLDER_DEFAULTS = {"eval_train_split": None, "path": None, "eval_path": None,
                   "val_fraction": 0.1, "labels": "auto", "channels": 3,
                   "on_bad_image": "fail", "index_dir": None}


def conv_here(c) -> str:
  """The convolution ``c`` runs with on this machine: ``model.conv``, or for ``"auto"`` on a
  CPU where oneDNN is installed, ``"auto: onednn"`` (since 2026-12-05; "fast" before)."""
  from jaxssl.models import conv  # pylint: disable=g-import-not-at-top
  if c.model.conv == "auto" and conv.pick("auto") is conv.auto_cpu:
    return "auto: onednn"
  return c.model.conv


def config_fingerprint(c, random_init: bool) -> str:
  """The resolved config (where the data lives aside), the convolution it runs with where
  that is oneDNN's (``conv_here``; the runs before it ran another), the CNN's max-pool since
  it is ``max_pool_2x2`` (2026-12-05; ``nn.max_pool`` before), the step's one pass over both
  views (2026-12-06; a pass per view before), oneDNN's primitives built for their calls'
  threads (2026-12-06) and what is evaluated."""
  config = json.loads(c.to_json_best_effort())
  config["model"]["conv"] = conv_here(c)
  if "onednn" in config["model"]["conv"]:
    config["model"]["onednn_threads"] = "per call"
  if c.model.backbone == "convnet":
    config["model"]["pool"] = "max_pool_2x2"
  config["train"]["views"] = "one pass"
  config["data"].pop("data_dir", None)
  for key, default in FOLDER_DEFAULTS.items():  # added since the first runs, unused by them
    if config["data"].get(key, default) == default:
      config["data"].pop(key, None)
  text = json.dumps({"config": config, "random_init": random_init}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# One run, in its own process.

def _configure(run: Run, smoke: bool, data_dir: str | None):
  from jaxssl import config as jc  # pylint: disable=g-import-not-at-top
  path, _, switches = run.config.partition(":")
  switches = ",".join(s for s in (switches, "smoke" if smoke else "") if s)
  c = jc.load(str(ROOT / path) + (":" + switches if switches else ""))
  for key, value in run.overrides.items():
    if smoke and key in ("train.epochs", "model.projector"):
      continue  # the smoke form keeps its few steps and tiny model
    section = c
    *parents, name = key.split(".")
    for parent in parents:
      section = section[parent]
    section[name] = tuple(value) if isinstance(section[name], tuple) else value  # JSON: lists
  c.seed = run.seed
  c.data.data_dir = data_dir
  c.eval.random_baseline = False
  for entry in c.evals.values():  # the table's train_s: training alone, as in its first rows
    entry.every = 0
  return c


def _spectrum(eigenvalues: np.ndarray) -> list[float]:
  share = eigenvalues / max(float(np.sum(eigenvalues)), 1e-30)
  return [round(float(v), 6) for v in share]


def cpu_kind() -> str:
  """The CPU as /proc/cpuinfo names it, with its family and model numbers: a summation order
  compiled for one kind differs on another, which acts like another seed (bench/methods.md)."""
  fields = {}
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      fields.setdefault(key.strip(), value.strip())
  except OSError:
    return platform.processor() or platform.machine()
  return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')}"
          f", model {fields.get('model', '?')}, {os.cpu_count()} cores)")


def machine() -> dict:
  """What a run's numbers depend on besides its config: the CPU kind, the libraries, the code."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=False).stdout.strip()
  return {"cpu": cpu_kind(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "commit": commit or None}


def work(run: Run, workdir: pathlib.Path, smoke: bool, data_dir: str | None) -> dict:
  """Train (unless ``random_init``) and evaluate one run; the result's JSON."""
  from jaxssl.data import source  # pylint: disable=g-import-not-at-top
  from jaxssl.evaluate import diagnostics, probes, restore  # pylint: disable=g-import-not-at-top
  from jaxssl.evaluate import run as evaluate_run  # pylint: disable=g-import-not-at-top
  from jaxssl.train import loop  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  c = _configure(run, smoke, data_dir)
  start = time.perf_counter()
  final = {}
  if run.random_init:
    encoder = restore.random_encoder(c)
  else:
    final = loop.train(c, workdir)
    if final.get("stopped_by"):  # stopped early, resumable: no result from part of a run
      sys.exit(75)
    encoder = restore.load_encoder(workdir)
  train_s = time.perf_counter() - start
  evaluation = evaluate_run.evaluate_encoder(encoder)
  metrics, spectrum = evaluation.results, evaluation.spectrum
  # The evaluators' test features (the backbone's: eval.projector is off in every config).
  hsic = diagnostics.pairwise_hsic(evaluation.features, max_samples=512, seed=0)
  off_diagonal = hsic[~np.eye(len(hsic), dtype=bool)]
  # Out-of-domain transfer: the same frozen features, a logistic probe on MNIST digits.
  digits = {split: source.open_split("mnist_5k", split, data_dir=data_dir, in_memory=True)[0]
            for split in ("train", "test")}
  (mx, my), (tx, ty) = (encoder.features(digits[s], batch=c.eval.batch) for s in digits)
  mnist = probes.logistic_probe(mx, my, tx, num_classes=10, epochs=c.evals.logistic.epochs,
                                lr=c.evals.logistic.lr, batch=c.evals.logistic.batch,
                                weight_decay=c.evals.logistic.weight_decay, seed=c.seed)
  return {
      **dataclasses.asdict(run), "fingerprint": config_fingerprint(c, run.random_init),
      "step": encoder.step, "devices": jax.device_count(), "machine": machine(),
      "logistic": metrics["logistic"], "ridge": metrics["ridge"], "knn": metrics["knn"],
      "rankme": metrics["rankme"], "dim": metrics["dim"],
      "hsic_mean": float(np.mean(off_diagonal)), "hsic_max": float(np.max(off_diagonal)),
      "mnist_logistic": probes.accuracy(mnist, ty),
      "train_loss": final.get("loss"), "head_accuracy": final.get("head/val_accuracy"),
      "images_per_s": final.get("progress/images_per_s"),
      "train_s": train_s, "eval_s": time.perf_counter() - start - train_s,
      "spectrum": _spectrum(spectrum),
      "settings": {"method": c.method.name, "projector": c.model.projector,
                   "conv": conv_here(c), "dtype": c.model.dtype,
                   "optim": c.optim.to_dict(), "epochs": c.train.epochs,
                   "steps": c.train.steps, "global_batch": c.train.global_batch,
                   "method_kwargs": {k: v for k, v in c.method.kwargs.items()
                                     if v is not None}},
  }


# ---------------------------------------------------------------------------------------------
# The driver: skip what is done, run the rest one at a time, save after each.

def load_results(path: pathlib.Path) -> dict:
  if path.exists():
    return json.loads(path.read_text())
  return {"runs": {}}


def save_results(path: pathlib.Path, results: dict, run_id: str | None = None) -> None:
  """Write ``results``; with ``run_id``, only that run's entry is this driver's news, merged
  into the file as it is now (under a lock), so two drivers can fill one file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path.with_suffix(".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if run_id is not None:
      news = results["runs"][run_id]
      results.update(load_results(path))
      results["runs"][run_id] = news
    results["machine"] = {"node": platform.node(), "cpus": os.cpu_count(),
                          "python": platform.python_version()}
    results["tables"] = summarise(results["runs"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)  # never a half-written file, whenever the benchmark is stopped


NUMBERS = ("logistic", "ridge", "knn", "rankme", "hsic_mean", "mnist_logistic", "train_s")


def summarise(runs: dict) -> dict:
  """Per part, per row: mean and sample std over the finished seeds of each number."""
  tables: dict = {}
  for result in runs.values():
    if "error" in result:
      continue
    part = result["part"]
    if part == "table":
      part = f"table_e{result['overrides']['train.epochs']}"
    key = (result["label"] if part.startswith("table") or part in ("quickstart_default",
                                                                    "default", "ceiling",
                                                                    *ONEDNN_PARTS)
           else result["id"])
    rows = tables.setdefault(part, {})
    rows.setdefault(key, []).append(result)
  out = {}
  for part, rows in tables.items():
    out[part] = {}
    for key, results in rows.items():
      row = {"seeds": sorted(r["seed"] for r in results),
             "machines": sorted({methods_stats.machine_of(r) for r in results})}
      for name in NUMBERS:
        values = np.array([r[name] for r in results], np.float64)
        row[name] = float(values.mean())
        row[name + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        if len(values) > 1 and name in ("logistic", "knn"):
          spread = methods_stats.interval(values)
          row[name + "_ci95"], row[name + "_single95"] = spread["ci95"], spread["single_run95"]
      out[part][key] = row
  return out


def run_one(run: Run, args) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={args.devices}").strip()
  env.setdefault("JAX_PLATFORMS", "cpu")
  # This tree's jaxssl, whatever is installed: a copy of the tree can run the benchmark while
  # the original is being edited.
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
  workdir = pathlib.Path(args.workroot) / run.id.replace("/", "__").replace(" ", "_")
  command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
             json.dumps(dataclasses.asdict(run)), "--workroot", str(workdir)]
  if args.smoke:
    command.append("--smoke")
  if args.data_dir:
    command += ["--data_dir", args.data_dir]
  start = time.perf_counter()
  try:
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=args.timeout_s, check=False)
  except subprocess.TimeoutExpired as err:
    tail = (err.stderr or b"")[-2000:]
    return {**dataclasses.asdict(run), "error": f"timed out after {args.timeout_s} s",
            "stderr": tail.decode() if isinstance(tail, bytes) else tail}
  lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
  if done.returncode or not lines:
    return {**dataclasses.asdict(run), "error": f"exit status {done.returncode}",
            "stderr": done.stderr[-2000:], "seconds": time.perf_counter() - start}
  return json.loads(lines[-1][len("RESULT "):])


def drive(args) -> dict:
  path = pathlib.Path(args.out)
  results = load_results(path)
  runs = plan(args.parts, args.seeds, args.table_epochs)
  if args.rows:
    runs = [r for r in runs if r.part != "table" or r.label in args.rows]
  done = {r.get("fingerprint"): r for r in results["runs"].values() if "error" not in r}
  for run in runs:
    previous = results["runs"].get(run.id)
    if previous and not (args.retry and "error" in previous):
      continue
    key = fingerprint(run, args.smoke)
    if key in done:
      results["runs"][run.id] = {**done[key], **dataclasses.asdict(run), "same_as": done[key]["id"]}
      save_results(path, results, run.id)
      print(f"[{time.strftime('%H:%M:%S')}] {run.id}: the same run as {done[key]['id']}")
      continue
    print(f"[{time.strftime('%H:%M:%S')}] {run.id} ...", flush=True)
    result = run_one(run, args)
    if "error" not in result:
      done[result["fingerprint"]] = result
    results["runs"][run.id] = result
    save_results(path, results, run.id)
    if "error" in result:
      print(f"  failed: {result['error']}\n{result.get('stderr', '')}", flush=True)
    else:
      print(f"  logistic {100 * result['logistic']:.2f}%, ridge {100 * result['ridge']:.2f}%, "
            f"200-NN {100 * result['knn']:.2f}%, RankMe {result['rankme']:.1f}, "
            f"HSIC {result['hsic_mean']:.3f}, MNIST {100 * result['mnist_logistic']:.2f}% "
            f"({result['train_s']:.0f} s + {result['eval_s']:.0f} s)", flush=True)
  left = [r.id for r in runs if r.id not in results["runs"]]
  print(f"{len(runs) - len(left)} of {len(runs)} runs done; results in {path}.")
  return results


# ---------------------------------------------------------------------------------------------
# Markdown.

def _cell(row: dict, name: str, scale: float = 100.0, digits: int = 2) -> str:
  value = f"{scale * row[name]:.{digits}f}"
  std = row.get(name + "_std")
  return value + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def _projector_order(item) -> tuple[int, int]:
  """Projector rows by depth, then width: ``projector/vicreg/1024-1024`` -> (2, 1024)."""
  widths = item[0].split("/")[-1].split(" ")[0].split("-")
  return len(widths), int(widths[0])


def report(results: dict) -> str:
  tables = results.get("tables", {})
  out = []
  for part in sorted(p for p in tables if p.startswith("table")):
    out += [f"\n{part[len('table_e'):]} epochs:\n",
            "| method | seeds | logistic % | ridge % | 200-NN % | RankMe | HSIC | MNIST % | "
            "train s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, row in sorted(tables[part].items(), key=lambda kv: -kv[1]["logistic"]):
      out.append(f"| {label} | {len(row['seeds'])} | {_cell(row, 'logistic')} | "
                 f"{_cell(row, 'ridge')} | {_cell(row, 'knn')} | "
                 f"{_cell(row, 'rankme', 1, 1)} | {_cell(row, 'hsic_mean', 1, 3)} | "
                 f"{_cell(row, 'mnist_logistic')} | {row['train_s']:.0f} |")
  runs = results.get("runs", {})
  for part in sorted(p for p in tables if p.startswith("table")):
    out += [f"\n{part[len('table_e'):]} epochs, intervals of the logistic probe:\n",
            methods_stats.rows_markdown(runs, part),
            f"\n{part[len('table_e'):]} epochs, the claims (paired over common seeds):\n",
            methods_stats.claims_markdown(runs, part)]
  for part in ("sweep", "projector", "quickstart", "quickstart_default", "vit", "wide",
               "default", "ceiling", *ONEDNN_PARTS):
    if part not in tables:
      continue
    rows = dict(tables[part])
    runs = results.get("runs", {})
    table_run = runs.get(f"table/e{SWEEP_EPOCHS}/vicreg/seed0")
    if part == "projector" and table_run and "error" not in table_run:
      # with the table's own projector, trained to the same length
      rows[f"projector/vicreg/{table_run['settings']['projector']} (the table's)"] = table_run
    if part == "quickstart":  # what each change is measured against
      for label in ("vicreg", "random init"):
        run = runs.get(f"table/e{SWEEP_EPOCHS}/{label}/seed0")
        if run and "error" not in run:
          rows[f"quickstart/{label}/(the table's recipe)"] = run
    if part == "default":  # the default it changes (its seeds), and its CNN freshly initialised
      if "the default" in tables.get("quickstart_default", {}):
        rows["(the default then, last stage 512)"] = tables["quickstart_default"]["the default"]
      run = runs.get("wide/random init")
      if run and "error" not in run:
        rows["random init, last stage 512 (the default's CNN then)"] = run
    if part == "ceiling":  # today's default and its random init, beside what labels reach
      for label in (DEFAULT_CHOSEN, f"random init, {DEFAULT_CHOSEN}"):
        if label in tables.get("default", {}):
          rows[f"{label} (the default part's)"] = tables["default"][label]
    if part == "onednn" and DEFAULT_CHOSEN in tables.get("default", {}):  # the same, before
      rows["float32 before, conv 'fast' (the default part's)"] = tables["default"][DEFAULT_CHOSEN]
    out += ["", f"| {part} run | logistic % | ridge % | 200-NN % | RankMe | HSIC | MNIST % | "
            "train s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = _projector_order if part == "projector" else (lambda kv: kv[0])
    for key, row in sorted(rows.items(), key=order):
      out.append(f"| {key.split('/', 1)[-1]} | {_cell(row, 'logistic')} | "
                 f"{_cell(row, 'ridge')} | {_cell(row, 'knn')} | "
                 f"{_cell(row, 'rankme', 1, 1)} | {_cell(row, 'hsic_mean', 1, 3)} | "
                 f"{_cell(row, 'mnist_logistic')} | {_cell(row, 'train_s', 1, 0)} |")
  if "onednn" in tables:
    out += ["", precision_markdown(results.get("runs", {}))]
  failed = [r for r in results.get("runs", {}).values() if "error" in r]
  for r in failed:
    out.append(f"\nfailed: {r['id']}: {r['error']}")
  return "\n".join(out)


def precision_markdown(runs: dict) -> str:
  """The onednn part paired by seed: bfloat16 against float32, the maxpool part's float32
  against it, the one_pass part's against the maxpool part's, the threads part's against the
  one_pass part's, and float32 against the same
  recipe before oneDNN and the allocator setting (the default part's runs of today's default;
  their training time only where a seed ran on the same CPU kind)."""
  def by_seed(part: str, label: str) -> dict[int, dict]:
    return {r["seed"]: r for r in runs.values()
            if "error" not in r and (r["part"], r["label"]) == (part, label)}
  float32, bfloat16 = by_seed("onednn", "float32"), by_seed("onednn", "bfloat16")
  pool, one_pass = by_seed("maxpool", "float32"), by_seed("one_pass", "float32")
  threads, before = by_seed("threads", "float32"), by_seed("default", DEFAULT_CHOSEN)

  def same_cpu(runs: dict, against: dict) -> dict:  # times compare on one CPU kind only
    return {s: r for s, r in runs.items() if s in against and
            methods_stats.machine_of(r) == methods_stats.machine_of(against[s])}
  lines = list(methods_stats.CLAIMS_HEADER)
  for claim, first, second, seconds in (
      ("bfloat16 - float32", bfloat16, float32, float32),
      ("float32, max_pool_2x2 - float32", pool, float32, float32),
      ("float32, one pass - float32, max_pool_2x2", one_pass, pool, pool),
      ("float32, threads per call - float32, one pass", threads, one_pass,
       same_cpu(one_pass, threads)),
      ("float32 - before (conv 'fast', 4 KiB pages)", float32, before,
       same_cpu(before, float32))):
    for number in ("logistic", "ridge", "knn", "train_s"):
      against = seconds if number == "train_s" else second
      lines.append(methods_stats.paired_markdown(
          claim, number, methods_stats.paired(first, against, number)))
  return "\n".join(lines)


def same_row(run: dict, other: dict) -> bool:
  """Whether ``other`` is in ``run``'s row: the same part, label and overrides at another seed
  (or the same run). The config path is left out: a file's switch renamed since (the table's
  VICReg became ``:shared``) names the same recipe, as the fingerprints check."""
  keys = ("part", "label", "random_init")
  strip = lambda o: {k: v for k, v in o.items() if k != "seed"}
  return ("error" not in other and all(run[k] == other[k] for k in keys)
          and strip(run["overrides"]) == strip(other["overrides"]))


def verify(args) -> dict:
  """Re-run the recorded run ``args.verify`` (at ``args.seed`` if given) and set the new
  numbers beside the recorded ones and the row's 95% single-run interval."""
  results = load_results(pathlib.Path(args.out))
  recorded = results["runs"].get(args.verify)
  if recorded is None or "error" in recorded:
    known = [k for k, v in results["runs"].items() if "error" not in v][:5]
    raise SystemExit(f"No finished run {args.verify!r} in {args.out} (e.g. {known}).")
  run = Run(**{k: recorded[k] for k in Run.__dataclass_fields__})
  # Today's definition of the run: a config file's switches may have been renamed since (the
  # table's VICReg became ``:shared`` when the default widened). Runs recorded before the config
  # schema grew have other fingerprints, so the plan, not the fingerprint, names the recipe.
  epochs = run.overrides.get("train.epochs", 3) if run.part == "table" else 3
  run = {r.id: r for r in plan(list(PARTS), [run.seed], epochs)}.get(run.id, run)
  seed = run.seed if args.seed is None else args.seed
  run = dataclasses.replace(run, id=f"verify/{run.id}/seed{seed}", seed=seed)
  shutil.rmtree(pathlib.Path(args.workroot) / run.id.replace("/", "__").replace(" ", "_"),
                ignore_errors=True)  # a fresh run, not a resumed or finished one
  print(f"[{time.strftime('%H:%M:%S')}] re-running {args.verify} at seed {seed} ...", flush=True)
  new = run_one(run, args)
  if "error" in new:
    raise SystemExit(f"The re-run failed: {new['error']}\n{new.get('stderr', '')}")
  row = [r for r in results["runs"].values() if same_row(recorded, r)]
  lines = [f"{args.verify} (recorded on: {methods_stats.machine_of(recorded)}), re-run at seed "
           f"{seed} on {new['machine']['cpu']} (commit {new['machine']['commit']}); the row "
           f"has {len(row)} seeds:", "",
           "| number | recorded | re-run | row mean ± std | a single run (95%) | verdict |",
           "|---|---:|---:|---:|---|---|"]
  verdicts = {}
  for name in ("logistic", "ridge", "knn"):
    spread = methods_stats.interval([r[name] for r in row])
    lo, hi = spread["single_run95"]
    inside = len(row) > 1 and lo <= new[name] <= hi
    verdicts[name] = "inside" if inside else ("outside" if len(row) > 1 else "no interval")
    lines.append(f"| {name} | {100 * recorded[name]:.2f} | {100 * new[name]:.2f} | "
                 f"{100 * spread['mean']:.2f} ± {100 * spread['std']:.2f} | "
                 f"[{100 * lo:.2f}, {100 * hi:.2f}] | {verdicts[name]} |")
  print("\n".join(lines))
  out = pathlib.Path(args.out).with_name("methods_verify.json")
  done = json.loads(out.read_text()) if out.exists() else {}
  done[run.id] = {"recorded": args.verify, "seed": seed, "result": new, "verdicts": verdicts,
                  "row_seeds": sorted(r["seed"] for r in row), "table": lines}
  out.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
  return done[run.id]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", default="sweep,table,projector",
                      help=f"comma-separated: {', '.join(PARTS)} (in that order)")
  parser.add_argument("--seeds", default="0,1", help="seeds of the table's runs")
  parser.add_argument("--rows", default="", help="comma-separated table rows to run (e.g. "
                      "'vicreg,random init'; default: every row)")
  parser.add_argument("--table_epochs", type=int, default=3,
                      help="the table's budget (3: the CPU recipe of the config files)")
  parser.add_argument("--out", default=str(RESULTS))
  parser.add_argument("--workroot", default=str(ROOT / "runs" / "bench_methods"))
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
  parser.add_argument("--devices", type=int, default=2,
                      help="XLA CPU devices per run (one per core measured +14%% per step)")
  parser.add_argument("--timeout_s", type=int, default=3600, help="per run; a hang fails it")
  parser.add_argument("--smoke", action="store_true", help="every run in its smoke form")
  parser.add_argument("--retry", action="store_true", help="redo the runs that failed")
  parser.add_argument("--report", action="store_true", help="print the tables and exit")
  parser.add_argument("--verify", metavar="RUN_ID", help="re-run one recorded run (e.g. "
                      "'table/e1/vicreg/seed0') and check it against its row's interval")
  parser.add_argument("--seed", type=int, help="with --verify: the seed of the re-run "
                      "(default: the recorded run's)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    result = work(Run(**json.loads(args.worker)), pathlib.Path(args.workroot), args.smoke,
                  args.data_dir)
    print("RESULT " + json.dumps(result), flush=True)
    return
  if args.report:
    print(report(load_results(pathlib.Path(args.out))))
    return
  if args.verify:
    verify(args)
    return
  args.parts = [p for p in args.parts.split(",") if p]
  unknown = set(args.parts) - set(PARTS)
  if unknown:
    parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
  if needs := [p for p in ONEDNN_PARTS if p in args.parts]:
    from jaxssl.models import onednn  # pylint: disable=g-import-not-at-top
    if reason := onednn.unavailable():
      parser.error(f"the parts {', '.join(needs)} train with oneDNN's convolutions, which cannot "
                   f"run here: {reason}; install them with {onednn.INSTALL}.")
  args.seeds = [int(s) for s in args.seeds.split(",") if s]
  args.rows = [r for r in args.rows.split(",") if r]
  labels = {"random init", *SSL_CONFIGS, *BASELINES}
  if set(args.rows) - labels:
    parser.error(f"unknown rows {sorted(set(args.rows) - labels)}; choose from "
                 f"{', '.join(sorted(labels))}")
  print(report(drive(args)))


if __name__ == "__main__":
  main()
