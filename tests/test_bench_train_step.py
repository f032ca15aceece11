"""bench/train_step.py's utilisation figures and bench/table.py's table of them: MFU against
the device's data-sheet peak, the share of the matmul rate measured in the run, and columns
only where a result has them."""

import json
import sys

import pytest

from tests.test_distributed import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import table  # noqa: E402  pylint: disable=g-import-not-at-top
import train_step  # noqa: E402  pylint: disable=g-import-not-at-top


@pytest.mark.parametrize("kind,peak", [
    ("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12), ("NVIDIA H200", 989.4e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("TPU v5 lite", 197e12), ("TPU v5", 459e12), ("TPU v6 lite", 918e12), ("cpu", None),
])
def test_peak_flops_by_device_name(kind, peak):
  assert train_step.peak_flops(kind) == peak


def worker_result(device_kind, matmul_flops):
  return {"framework": "jaxssl", "devices": 1, "batch_per_view": 256,
          "device_kind": device_kind, "matmul_flops": matmul_flops,
          "rows": {"step": {"seconds": 0.1, "compile_s": 1.0},
                   "supervised, half batch": {"seconds": 0.05, "compile_s": 1.0}}}


def test_utilisation_of_the_peak_and_of_the_measured_matmul_rate(capsys):
  flops = 25e9
  result = train_step.describe(worker_result("NVIDIA H200", 600e12), "jaxssl", flops)
  step = result["rows"]["step"]
  assert step["images"] == 512 and step["images_per_s"] == pytest.approx(5120)
  assert step["mfu"] == pytest.approx(flops * 5120 / 989.4e12)
  assert step["of_matmul"] == pytest.approx(flops * 5120 / 600e12)
  assert result["rows"]["supervised, half batch"]["images"] == 256
  cpu = train_step.describe(worker_result("cpu", None), "jaxssl", flops)["rows"]["step"]
  assert cpu["mfu"] is None and cpu["of_matmul"] is None
  out = capsys.readouterr().out
  assert "12.9%" in out and "21.3%" in out  # the printed MFU and share of the matmul rate


@pytest.mark.parametrize("name,header", [
    ("train_step_gpu", "| images/s | MFU | of matmul | SSL overhead |"),
    ("train_step_cpu", "| images/s | SSL overhead |"),
])
def test_tables_show_utilisation_only_where_measured(name, header):
  text = table.train_step_table(json.loads((ROOT / f"bench/results/{name}.json").read_text()))
  assert header in text
  widths = {line.count("|") for line in text.splitlines() if line.startswith("|")}
  assert len(widths) == 1, text  # every row has the header's columns


def test_rounds_join_as_medians_and_show_in_the_table(capsys):
  runs = [worker_result("cpu", None) for _ in range(3)]
  for run, seconds in zip(runs, (0.3, 0.1, 0.2)):
    run["rows"]["step"]["seconds"] = seconds
  joined = train_step.describe(train_step.joined(runs), "jaxssl", 1e9)
  assert joined["rows"]["step"]["seconds"] == 0.2
  assert joined["rows"]["step"]["rounds"] == [0.3, 0.1, 0.2]
  assert train_step.joined(runs[:1]) is runs[0]  # one round: as it ran
  torch = {**train_step.joined(runs), "framework": "pytorch", "label": "PyTorch"}
  torch["rows"]["step"].update(seconds=0.4, rounds=[0.6, 0.2, 0.4])
  train_step.summarise([joined, train_step.describe(torch, "PyTorch", 1e9)])
  assert "= 2.00x PyTorch's best float32 step" in capsys.readouterr().out  # medians: 0.4 / 0.2
  text = table.train_step_table({
      "settings": {"config": "vicreg_cifar", "depth": 18, "stem": "cifar", "size": 32,
                   "projector": "8-8"},
      "machine": {"devices": ["cpu"], "date": "2026-12-05"}, "results": [joined]})
  assert "| rounds, ms |" in text and "| 300, 100, 200 |" in text


def test_the_summary_compares_like_precision_with_like(capsys):
  """A bfloat16 jaxssl step against PyTorch's bfloat16 (autocast) step, then its float32 one;
  a float32 step against float32 alone."""
  def result(framework, dtype, seconds):
    r = worker_result("cpu", None)
    r["rows"]["step"]["seconds"] = seconds
    params = {"dtype": dtype} if framework == "jaxssl" else {"bf16": dtype == "bfloat16"}
    return train_step.describe({**r, "framework": framework, "params": params},
                               f"{framework} {dtype}", 1e9)
  train_step.summarise([result("jaxssl", "bfloat16", 0.1), result("jaxssl", "float32", 0.2),
                        result("pytorch", "bfloat16", 0.08), result("pytorch", "float32", 0.25)])
  out = capsys.readouterr().out
  assert "in bfloat16 (jaxssl bfloat16): 5120.0 img/s = 0.80x PyTorch's best bfloat16" in out
  assert "and = 2.50x PyTorch's best float32 step (pytorch float32" in out
  assert "in float32 (jaxssl float32): 2560.0 img/s = 1.25x PyTorch's best float32" in out
  assert out.count("x PyTorch's best") == 3


def test_the_quickstart_cnn_multiply_adds():
  # configs/vicreg_fashion_mnist.py: widths (32, 64, 128, 1024), one 3x3 convolution per
  # stage, 28x28x1 input, 2x2 max-pools: 28, 14, 7 and 3 pixels a side.
  expected = 28**2 * 9 * 32 + 14**2 * 9 * 32 * 64 + 7**2 * 9 * 64 * 128 + 3**2 * 9 * 128 * 1024
  assert train_step.convnet_macs(train_step.SUITES["cnn_cpu"]) == (1024, expected)


def test_the_quickstart_suite_runs_the_configs_cnn_in_pytorch_too():
  variants = {label: (kind, params) for label, kind, _, params in
              train_step.variants("cnn_cpu", quick=False)}
  torch_rows = {label: params for label, (kind, params) in variants.items() if kind == "torch"}
  assert sorted(torch_rows) == ["PyTorch, 2 threads, NCHW", "PyTorch, 2 threads, channels-last"]
  for params in torch_rows.values():  # the config's CNN, the whole batch on PyTorch's threads
    assert (params["widths"], params["convs_per_stage"]) == ([32, 64, 128, 1024], 1)
    assert params["batch"] == 256 and params["rows"] == ["step"]


def test_the_quickstart_table_from_its_json():
  result = {"steps": 160, "rounds": 2, "machine": {"cpu": "AMD EPYC", "date": "2026-12-05"},
            "rows": [{"setting": "before", "images_per_s": 305.2, "wall_s": 159.5,
                      "speedup": 1.0},
                     {"setting": "now", "images_per_s": 466.0, "wall_s": 118.3,
                      "speedup": 1.527}]}
  assert table.kind_of(result) == "quickstart"
  text = table.TABLES["quickstart"](result)
  assert "160 steps per run, 2 rounds" in text and "| now | 466 | 118 | 1.53x |" in text


def test_merged_worker_outputs_keep_each_convolution_apart(tmp_path):
  """Saved worker outputs (one lease's runs) join by framework and batch, but the same step
  with two of ``model.conv``'s values stays two results, each labelled with its own."""
  paths = []
  for name, conv, row in (("auto", "auto", "step"), ("fast", "fast", "step"),
                          ("auto_sup", "auto", "supervised, half batch")):
    result = worker_result("NVIDIA H100 80GB HBM3", 6e14)
    result["rows"] = {row: result["rows"][row]}
    result["params"] = {"conv": conv}
    paths.append(tmp_path / f"{name}.json")
    paths[-1].write_text("a log line\n" + json.dumps(result))
  merged = dict(train_step.merged([str(p) for p in paths]))
  assert set(merged) == {"jaxssl on NVIDIA H100 80GB HBM3, 256/view, conv auto",
                         "jaxssl on NVIDIA H100 80GB HBM3, 256/view, conv fast"}
  assert set(merged["jaxssl on NVIDIA H100 80GB HBM3, 256/view, conv auto"]["rows"]) == {
      "step", "supervised, half batch"}


def test_the_gpu_suite_measures_the_fast_convolutions_beside_lax():
  labels = {label: params for label, _, _, params in train_step.variants("gpu", quick=False)}
  assert labels["jaxssl, bfloat16, conv fast, 256/view"]["conv"] == "fast"
  assert "conv" not in labels["jaxssl, bfloat16, 256/view"]  # the config's: lax off a CPU
  assert not any("conv fast" in label for label, *_ in train_step.variants("gpu", quick=True))


@pytest.mark.parametrize("hardware", [True, False])
def test_pytorchs_bfloat16_step_runs_where_the_cpu_has_bfloat16(hardware, monkeypatch):
  monkeypatch.setattr(train_step, "cpu_has_bfloat16", lambda: hardware)
  labels = [label for label, *_ in train_step.variants("cpu", quick=False)]
  assert ("PyTorch, 2 threads, channels-last, bf16 autocast" in labels) == hardware
  assert "PyTorch, 2 threads, channels-last" in labels
