"""bench/precision.py on this CPU, where JAX's default matmul precision is float32 in full,
and bench/table.py's table of its JSON."""

import json
import subprocess
import sys

import pytest

from tests.test_distributed import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import table  # noqa: E402  pylint: disable=g-import-not-at-top


@pytest.mark.slow  # a subprocess: the script turns on float64 for its whole process
def test_quick_run_measures_every_loss_and_renders(tmp_path):
  out = tmp_path / "precision.json"
  subprocess.run([sys.executable, "bench/precision.py", "--quick", "--out", str(out)],
                 cwd=ROOT, check=True, capture_output=True, timeout=600)
  result = json.loads(out.read_text())
  assert [r["loss"] for r in result["rows"]] == [
      "vicreg", "barlow_twins", "info_vicreg logdet", "info_vicreg pairdist", "corinfomax",
      "wmse"]
  for r in result["rows"]:
    # The same float32 products at either precision on a CPU, so the same errors.
    assert r["default"]["value"] == r["highest"]["value"], r
    assert r["default"]["grad"] == r["highest"]["grad"], r
    assert r["default"]["grad"] < 1e-4 and r["default"]["value"] < 1e-4, r
  assert table.kind_of(result) == "precision"
  rendered = table.precision_table(result)
  assert "| vicreg | 256 | 1024 |" in rendered and "| wmse | 256 | 64 |" in rendered
