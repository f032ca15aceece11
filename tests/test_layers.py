"""The package's layers run one way (STYLE.md): each module imports only from its own group
or from groups below it, read from the source without importing anything."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[1] / "jaxssl"
# Lowest first. A module may import from its own group and from any group below it.
LAYERS = [
    ["jaxssl.errors"],
    ["jaxssl.losses", "jaxssl.watchdog", "jaxssl.storage"],
    ["jaxssl.models", "jaxssl.data", "jaxssl.distributed", "jaxssl.ica"],
    ["jaxssl.methods"],
    ["jaxssl.config"],
    ["jaxssl.train.optim", "jaxssl.train.state"],
    ["jaxssl.train.step", "jaxssl.train.checkpoint", "jaxssl.train.metrics"],
    ["jaxssl.train.run"],
    ["jaxssl.evaluate"],
    ["jaxssl.train.loop"],
    ["jaxssl.cli"],
    ["jaxssl.train.__main__", "jaxssl.evaluate.__main__"],
]


def group(module: str) -> tuple[int, str] | None:
  """(layer, group) of the longest group name that ``module`` is or lies under."""
  best = None
  for layer, groups in enumerate(LAYERS):
    for name in groups:
      if (module == name or module.startswith(name + ".")) and (
          best is None or len(name) > len(best[1])):
        best = (layer, name)
  return best


def imports(path: pathlib.Path) -> set[str]:
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out.update(f"{node.module}.{a.name}" for a in node.names)
  return {m for m in out if m.startswith("jaxssl.")}


def modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if name not in ("jaxssl", "jaxssl.train"):  # (package docstrings only)
      yield name, path


def test_every_module_has_a_layer():
  assert [name for name, _ in modules() if group(name) is None] == []


def test_no_import_runs_up_the_layers():
  upward = []
  for name, path in modules():
    layer, own = group(name)
    for target in imports(path):
      found = group(target) or group(target.rsplit(".", 1)[0])
      if found and found[1] != own and found[0] >= layer:
        upward.append(f"{name} imports {target}")
  assert upward == []


def test_evaluation_does_not_import_the_training_loop():
  for name, path in modules():
    if name.startswith("jaxssl.evaluate"):
      assert not any(t.startswith("jaxssl.train.loop") for t in imports(path)), name
