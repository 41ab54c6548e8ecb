#!/usr/bin/env bash
# The prepared GPU check for a lent device machine (see benchmarks/README.md): installs nothing from the
# network; the machine must already have torch with CUDA, and this tree's dependencies or a carried venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/gpu_check.py "$@" | tee "${OUT:-/tmp}/gpu_check.txt"
