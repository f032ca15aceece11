#!/usr/bin/env bash
# The CPU default, end to end: set up, pretrain VICReg on Fashion-MNIST, evaluate the
# checkpoint (linear probes, k-NN, RankMe) against a randomly initialised encoder.
#   bash launch/quickstart.sh [WORKDIR] [extra --config.key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR="${1:-runs/vicreg_fashion_mnist}"
shift || true
source launch/_fashion_mnist.sh
python3 -m venv .venv
.venv/bin/pip install -q -e .
.venv/bin/python -m jaxssl.train --config configs/vicreg_fashion_mnist.py --workdir "$WORKDIR" "$@"
.venv/bin/python -m jaxssl.evaluate --workdir "$WORKDIR"
