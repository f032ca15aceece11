"""Every Python example in every Markdown file runs as written: the blocks of one file in
order, in one namespace, from a directory where ``runs/vicreg_fashion_mnist`` is a finished
(smoke) run, as it is after the quickstart."""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in ROOT.rglob("*.md")
              if not any(part.startswith(".") or part in ("runs", "node_modules")
                         for part in p.relative_to(ROOT).parts))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def python_blocks(path: pathlib.Path) -> list[str]:
  return [code for lang, code in FENCE.findall(path.read_text()) if lang in ("python", "py")]


def test_the_docs_have_python_examples():
  assert python_blocks(ROOT / "README.md"), "the README should show how to call the losses"


@pytest.mark.slow  # the README's examples include a restored run and an ICA fit
@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)],
                         ids=lambda d: str(d.relative_to(ROOT)))
def test_python_examples_run(doc, tiny_run, tmp_path):
  (tmp_path / "runs").mkdir()
  (tmp_path / "runs" / "vicreg_fashion_mnist").symlink_to(tiny_run)
  previous = os.getcwd()
  os.chdir(tmp_path)
  try:
    namespace = {}
    for block in python_blocks(doc):
      exec(compile(block, str(doc), "exec"), namespace)  # pylint: disable=exec-used
  finally:
    os.chdir(previous)


def test_no_example_hides_behind_another_fence():
  """A ``py3`` or ``Python`` fence would silently skip the example."""
  for doc in DOCS:
    langs = {lang for lang, _ in FENCE.findall(doc.read_text())}
    assert langs <= {"", "python", "py", "bash", "text", "toml", "json"}, (doc, langs)


def test_benchmark_tables_are_their_json_rendered():
  """A table under ``<!-- bench/results/X.json -->`` is ``bench/table.py X.json``'s, so a
  re-run benchmark whose table was not pasted back fails here instead of going stale."""
  import json
  import sys
  sys.path.insert(0, str(ROOT / "bench"))
  import table  # pylint: disable=g-import-not-at-top
  marker = re.compile(r"^<!-- (bench/results/\S+\.json) -->\n", flags=re.M)
  checked = 0
  for doc in DOCS:
    text = doc.read_text()
    for m in marker.finditer(text):
      result = json.loads((ROOT / m.group(1)).read_text())
      rendered = table.TABLES[table.kind_of(result)](result).strip()
      assert text[m.end():].startswith(rendered), (
          f"{doc.relative_to(ROOT)}: the table under {m.group(1)} is not its rendering; paste "
          f"`python bench/table.py {m.group(1)}` there")
      checked += 1
  assert checked >= 10  # bench/README.md's tables
