"""The README's Python examples run as written, in order, in one namespace."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "the README should show how to call the losses"
  namespace = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)  # pylint: disable=exec-used
