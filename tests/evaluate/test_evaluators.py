"""Evaluators: chosen by name from the config, the report built from the names they return,
k-NN and RankMe during training equal to the same protocols offline, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxssl import config as config_lib
from jaxssl import evaluate
from jaxssl.data import source
from jaxssl.errors import ConfigError
from jaxssl.evaluate import evaluators, report
from jaxssl.evaluate.run import evaluate_encoder
from tests.conftest import smoke_config
from tests.test_distributed import ROOT


class Dummy(evaluators.Evaluator):
  """A protocol added by a test: the share of test labels that are even."""
  kind, accuracies, details = "dummy", ("even_labels",), ("seen",)

  def run(self, context):
    labels = context.test[1]
    yield "even_labels", float(np.mean(labels % 2 == 0))
    yield "seen", len(labels)


def test_an_added_evaluator_reaches_the_report(tiny_run, monkeypatch):
  monkeypatch.setitem(evaluators.EVALUATORS, "dummy", Dummy)
  encoder = evaluate.load_encoder(tiny_run)
  with encoder.config.unlocked():
    encoder.config.evals.dummy = {"offline": True, "every": 0}
  evaluation = evaluate_encoder(encoder, ["dummy", "rankme"], examples=(64, 32))
  results, spectrum, warnings = evaluation.results, evaluation.spectrum, evaluation.warnings
  assert list(results) == ["even_labels", "seen", "rankme", "dim", "std_mean", "std_min"]
  assert results["seen"] == 32 and len(spectrum) == results["dim"]
  assert [w for w in warnings if "may be collapsing" not in w] == []  # (6 steps of a tiny CNN)
  header, _, row = report.table({"pretrained": results}).splitlines()
  assert header == "| encoder | even_labels | rankme |"  # details stay in eval.json
  assert row.startswith(f"| pretrained | {100 * results['even_labels']:.2f}% | ")


def test_knn_during_training_equals_offline_knn_of_the_checkpoint(tiny_run):
  c = evaluate.load_encoder(tiny_run).config
  assert c.evals.knn.every is None and c.train.eval_every == 3  # with the online probe
  logged = {m["step"]: m for m in map(json.loads, (tiny_run / "metrics.jsonl").read_text()
                                                     .splitlines())}
  assert {s for s, m in logged.items() if "eval/knn" in m} == {3, 6}
  last = logged[6]
  offline = evaluate_encoder(evaluate.load_encoder(tiny_run), ["knn", "rankme"],
                             examples=(c.eval.train_examples, c.eval.test_examples)).results
  assert abs(last["eval/knn"] - offline["knn"]) <= 0.001
  np.testing.assert_allclose(last["eval/rankme"], offline["rankme"], rtol=1e-4)
  assert last["eval/dim"] == offline["dim"]


def test_balanced_subset_takes_each_class_in_proportion():
  labels = np.repeat(np.arange(4), [100, 50, 10, 1])
  ids = source.balanced_subset(labels, 0.1, seed=0)
  assert np.bincount(labels[ids]).tolist() == [10, 5, 1, 1]  # at least one of each
  assert np.array_equal(ids, source.balanced_subset(labels, 0.1, seed=0))
  assert not np.array_equal(ids, source.balanced_subset(labels, 0.1, seed=1))
  assert list(ids) == sorted(set(ids))
  with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
    source.balanced_subset(labels, 0.0, seed=0)


def test_the_subset_is_strided_and_fixed():
  split = source.ArraySource(np.arange(10)[:, None], np.arange(10) % 3)
  subset = source.strided(split, 4)
  assert [int(subset[i]["image"][0]) for i in range(len(subset))] == [0, 2, 5, 7]
  assert len(source.strided(split, 50)) == 10
  with pytest.raises(ValueError, match="at least one example"):
    source.strided(split, 0)


def test_default_sets_offline_and_during_training(fmnist_data_dir):
  c = smoke_config(fmnist_data_dir)
  assert evaluators.names(c) == ["knn", "logistic", "rankme", "ridge"]  # (ConfigDict's order)
  assert "linear" in c.evals and not c.evals.linear.offline  # minutes, not seconds, on a CPU
  assert evaluators.names(c, during_training=True) == ["knn", "rankme"]
  c.evals.knn.every = 0
  assert list(evaluators.build(c, during_training=True)) == ["rankme"]


@pytest.mark.parametrize("change, chosen, message", [
    ({}, ["logistic", "lineal"],
     r"Unknown evaluator\(s\) \['lineal'\]; choose from finetune_1, finetune_10, knn"),
    ({"knn.k": 0}, None, "config.evals.knn.k: must be > 0"),
    ({"ridge.val_fraction": 1.5}, None, r"config.evals.ridge.val_fraction: must be in \(0, 1\)"),
    ({"rankme.every": -5}, None, "config.evals.rankme.every: must be a number of steps"),
    ({"logistic.epochs": 0}, ["logistic"], "config.evals.logistic.epochs: must be > 0"),
    ({"linear.crop_scale": (0.5, 0.2)}, ["linear"], "config.evals.linear.crop_scale: must"),
    ({"linear.momentum": 1.0}, ["linear"], r"config.evals.linear.momentum: must be in \[0, 1\)"),
    ({"finetune_10.fraction": 1.5}, ["finetune_10"],
     r"config.evals.finetune_10.fraction: must be in \(0, 1\]"),
    ({"finetune_1.head_lr": 0.0}, ["finetune_1"], "config.evals.finetune_1.head_lr: must be > 0"),
])
def test_bad_names_and_settings_name_the_key(fmnist_data_dir, change, chosen, message):
  c = smoke_config(fmnist_data_dir)
  for key, value in change.items():
    entry, setting = key.split(".")
    c.evals[entry][setting] = value
  with pytest.raises(ConfigError, match=message):
    evaluators.build(c, chosen)


def test_labelled_protocols_are_skipped_without_labels(fmnist_data_dir):
  """Unlabeled data: the protocols that need labels are left out, and one notice says which
  and how to give labels; fine-tuning also needs the model's head to fit the classes."""
  c = smoke_config(fmnist_data_dir)
  assert list(evaluators.build(c, ["knn", "rankme"], has_labels=False)) == ["rankme"]
  notice = evaluators.skipped_notice(c, ["knn", "logistic", "rankme"], has_labels=False)
  assert notice.startswith("Skipped knn, logistic: they need labels")
  assert "--config.data.eval_path=DIR" in notice
  assert evaluators.skipped_notice(c, ["rankme"], has_labels=False) is None
  assert evaluators.skipped_notice(c, ["knn"]) is None
  assert list(evaluators.build(c, ["finetune_1", "knn"], has_head=False)) == ["knn"]
  assert "finetune_1" in evaluators.skipped_notice(c, ["finetune_1", "knn"], has_head=False)
  during = evaluators.skipped_notice(c, has_labels=False, during_training=True)
  assert during.startswith("Skipped knn:")


def test_collapse_warning():
  c = config_lib.base_config()
  rankme = evaluators.RankMe(c.evals.rankme, every=10)
  values = {"rankme": 3.0, "dim": 64, "std_mean": 0.1, "std_min": 1e-5}
  assert "effective rank (RankMe) is 3.0 of 64 dimensions" in rankme.warning(values)
  assert rankme.warning({**values, "rankme": 30.0}) is None


def test_configs_saved_before_the_evaluators_keep_their_settings():
  saved = {"eval": {"batch": 8, "knn_k": 50, "logistic_epochs": 5}, "seed": 1}
  assert config_lib.upgrade(saved) == {"eval": {"batch": 8}, "seed": 1, "evals": {
      "knn": {"k": 50}, "logistic": {"epochs": 5}}}


@pytest.mark.slow
def test_cli_refuses_bad_evaluators_examples_and_settings(tiny_run):
  for flag, message in (("--evals=logistic,lineal", "Unknown evaluator(s) ['lineal']"),
                        ("--examples=100", "--examples takes two positive counts"),
                        ("--set=evals.knn.k", "--set takes KEY=VALUE"),
                        ("--set=model.widths=(8,)", "only evaluation settings")):
    result = subprocess.run([sys.executable, "-m", "jaxssl.evaluate", "--workdir",
                             str(tiny_run), flag], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_linear_head_matches_a_numpy_sgd_loop(tiny_run):
  # Crops of the whole image and no flips: the head sees fixed features, so its training is
  # plain SGD (momentum, weight decay, cosine schedule) over the loader's batches.
  encoder = evaluate.load_encoder(tiny_run)
  c = encoder.config
  with c.unlocked():
    c.evals.linear.update(epochs=2, batch=64, lr=0.1, crop_scale=(1.0, 1.0), flip_prob=0.0)
  linear = evaluators.Linear(c.evals.linear, seed=3)
  head = linear.train_head(encoder)

  from jaxssl.data import loader  # pylint: disable=g-import-not-at-top
  split = encoder.run.train_source
  steps = 2 * len(split) // 64
  batches = loader.train_iterator(split, global_batch=64, seed=3, num_threads=1)
  import jax  # pylint: disable=g-import-not-at-top
  w = 0.01 * np.asarray(jax.random.normal(jax.random.key(3), head["w"].shape))
  b = np.zeros(head["b"].shape)
  trace_w, trace_b = np.zeros_like(w), np.zeros_like(b)
  for i in range(steps):
    batch = next(batches)
    x = np.asarray(encoder.embed(batch["image"]), np.float64)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), batch["label"]] -= 1
    grad_w, grad_b = x.T @ p / len(x) + 1e-6 * w, p.mean(0) + 1e-6 * b
    lr = 0.1 * 0.5 * (1 + np.cos(np.pi * i / steps))
    trace_w, trace_b = grad_w + 0.9 * trace_w, grad_b + 0.9 * trace_b
    w, b = w - lr * trace_w, b - lr * trace_b
  np.testing.assert_allclose(head["w"], w, rtol=2e-3, atol=2e-5)
  np.testing.assert_allclose(head["b"], b, rtol=2e-3, atol=2e-5)


def test_evaluation_settings_change_from_the_command_line(tiny_run):
  from jaxssl.evaluate.run import evaluation_config  # pylint: disable=g-import-not-at-top
  c = evaluation_config(tiny_run, {"evals.linear.epochs": "3", "evals.linear.crop_scale":
                                   "(0.2, 1.0)", "eval.batch": 128})
  assert (c.evals.linear.epochs, c.evals.linear.crop_scale, c.eval.batch) == (3, (0.2, 1.0), 128)
  for settings, message in (({"model.widths": "(8,)"}, "only evaluation settings"),
                            ({"evals.linear.epoch": "3"}, "no such evaluation setting"),
                            ({"evals.linear.epochs": "many"}, "evals.linear.epochs")):
    with pytest.raises(ConfigError, match=message):
      evaluation_config(tiny_run, settings)


def test_curves_of_a_log_that_changed_names_midway(tmp_path):
  # A run resumed across the metric renaming (issue 23) logs both styles in one file.
  metrics = [{"step": 50, "loss": 3.0, "head_accuracy": 0.2, "val_head_accuracy": 0.3},
             {"step": 100, "loss": 2.0, "head/accuracy": 0.4, "head/val_accuracy": 0.5,
              "eval/knn": 0.6}]
  assert report.plot_curves(metrics, tmp_path / "curves.png")
  assert (tmp_path / "curves.png").stat().st_size > 0
  assert not report.plot_curves([], tmp_path / "none.png")


def test_finetune_trains_backbone_and_head_only_and_reports_scratch(tiny_run):
  encoder = evaluate.load_encoder(tiny_run)
  c = encoder.config
  finetune = evaluators.build(c, ["finetune_10"])["finetune_10"]
  labels = source.labels_of(encoder.run.train_source)
  ids = source.balanced_subset(labels, 0.1, c.seed)
  subset = source.Subset(encoder.run.train_source, ids)
  tuned = finetune.tune(encoder.run, encoder.variables, subset)
  import jax  # pylint: disable=g-import-not-at-top
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  before, after = encoder.variables["params"], tuned["params"]
  assert same(before["projector"], after["projector"])  # not part of the classifier
  assert not same(before["backbone"], after["backbone"])
  assert not same(before["head"], after["head"])
  with c.unlocked():
    c.evals.finetune_10.backbone_lr = 1e-30  # (must be > 0): the backbone stays put
  frozen = evaluators.build(c, ["finetune_10"])["finetune_10"].tune(
      encoder.run, encoder.variables, subset)
  np.testing.assert_allclose(jax.tree.leaves(frozen["params"]["backbone"])[0],
                             jax.tree.leaves(before["backbone"])[0], atol=1e-12)

  results = evaluate_encoder(encoder, ["finetune_10"]).results
  assert list(results) == ["finetune_10", "finetune_10_scratch", "finetune_10_examples"]
  assert results["finetune_10_examples"] == len(ids)
  assert all(0 <= results[k] <= 1 for k in ("finetune_10", "finetune_10_scratch"))
  header = report.table({"pretrained": results}).splitlines()[0]
  assert header == "| encoder | finetune_10 | finetune_10_scratch |"
  # --examples limits fine-tuning too: its fraction of the strided train subset.
  limited = evaluate_encoder(encoder, ["finetune_10"], examples=(200, 64)).results
  subset_labels = labels[source.strided(encoder.run.train_source, 200).ids]
  assert limited["finetune_10_examples"] == len(source.balanced_subset(subset_labels, 0.1,
                                                                       c.seed))
  assert limited["finetune_10_examples"] < len(ids)


def test_entries_of_one_kind_name_their_results(fmnist_data_dir, monkeypatch):
  monkeypatch.setitem(evaluators.EVALUATORS, "dummy", Dummy)
  c = smoke_config(fmnist_data_dir)
  with c.unlocked():
    c.evals.dummy_b = {"kind": "dummy", "offline": False, "every": 0}
    c.evals.typo = {"kind": "dumy", "offline": False, "every": 0}
  with pytest.raises(ConfigError, match=r"unknown evaluator\(s\) typo \(kind 'dumy'\)"):
    evaluators.build(c, ["dummy_b"])
  with c.unlocked():
    del c.evals["typo"]
  built = evaluators.build(c, ["dummy_b"])
  assert built["dummy_b"].name == "dummy_b" and built["dummy_b"].kind == "dummy"

  class Labels:  # a context with test labels only
    test = (None, np.array([0, 1, 2, 4]))
  results, _ = evaluators.run_all(built, Labels())
  assert results == {"dummy_b_even_labels": 0.75, "dummy_b_seen": 4}
  assert evaluators.is_accuracy("linear_top5") and evaluators.is_detail("finetune_10_examples")
