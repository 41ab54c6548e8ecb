#!/usr/bin/env bash
# The prepared GPU check for a lent device machine (see benchmarks/README.md): installs nothing from the
# network; the machine must already have torch with CUDA, timm, and this tree's dependencies or a carried venv.
# All of it (the 32-px epoch, then ResNet-50 and ViT-S/16 at 224 px in fp32 / bf16, eager, then compiled)
# has not run on a GPU yet: an estimate is 10 minutes on one H100, most of it compiling. To split it, e.g.
#   benchmarks/gpu_check.sh --parts step224 --compile off     then     --parts step224 --compile on
# Prints as it measures (eager rows first) and writes $OUT/gpu_check.txt and $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/gpu_check.py --out "${OUT:-/tmp}/gpu_check.json" "$@" | tee "${OUT:-/tmp}/gpu_check.txt"
