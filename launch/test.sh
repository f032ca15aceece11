#!/usr/bin/env bash
# Set up and run the test suite: the Fashion-MNIST Debian package (for the real-data tests),
# a virtual environment with jaxssl and pytest, the linter, then pytest on 8 virtual CPU
# devices. Arguments go to pytest: `-m "not slow"` is the fast part (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/_fashion_mnist.sh
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
