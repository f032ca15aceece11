#!/usr/bin/env bash
# Set up and run the tests: the Fashion-MNIST Debian package (for the real-data tests), a
# virtual environment with jaxssl and pytest, the linter, then pytest on 8 virtual CPU devices
# (several test processes side by side, one per core, as pytest-xdist's workers).
#   bash launch/test.sh            the fast part and one real end-to-end run of each kind
#                                  (train and evaluate, resume after a kill, 2 processes, a
#                                  bucket): -m "not slow or e2e"
#   bash launch/test.sh --all      everything (what CI runs, .ci/run)
#   bash launch/test.sh ARGS...    pytest ARGS (e.g. -m "not slow", or a test file)
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/_fashion_mnist.sh
source launch/_cpu.sh
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check .
# pytest-xdist: one worker per core, at most 4 (each runs JAX on 8 virtual devices, and some
# tests start training processes of their own). On 2 cores the whole suite took 28.5 minutes
# with 2 workers against 36 in one process.
workers=$(( $(nproc) < 4 ? $(nproc) : 4 ))
if [[ "${1:-}" == --all ]]; then
  shift
  exec .venv/bin/python -m pytest -n "$workers" "$@"
elif [[ $# -eq 0 ]]; then
  exec .venv/bin/python -m pytest -n "$workers" -m "not slow or e2e"
fi
exec .venv/bin/python -m pytest "$@"
