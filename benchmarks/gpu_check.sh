#!/usr/bin/env bash
# The prepared GPU check for a lent device machine (see benchmarks/README.md): installs nothing from the
# network; the machine must already have torch with CUDA, timm, and this tree's dependencies or a carried venv.
# All of it (the 32-px epoch, then ResNet-50 and ViT-S/16 at 224 px in fp32 / bf16, eager, then compiled)
# has run on one H200 in parts (2026-11-28, 2026-12-04), never all at once: the epoch and the eager rows take about
# 2 minutes, compiling 65-80 s per model and precision with an empty cache, so all of it about 8. To split it, e.g.
#   benchmarks/gpu_check.sh --parts step224 --compile off     then     --parts step224 --compile on
# Prints as it measures (eager rows first) and writes $OUT/gpu_check.txt and $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/gpu_check.py --out "${OUT:-/tmp}/gpu_check.json" "$@" | tee "${OUT:-/tmp}/gpu_check.txt"
