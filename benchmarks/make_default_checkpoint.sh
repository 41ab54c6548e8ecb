#!/usr/bin/env bash
# Regenerates the robust source model shipped inside the package (src/autolora/checkpoints/fmnist-resnet8):
# a CIFAR-style ResNet-8 adversarially pre-trained (PGD-AT, eps 0.1) on all of Fashion-MNIST, with the
# project's own commands, then evaluated (clean / PGD-20 on the whole test split, AutoAttack on 1,000 images).
# About 25 minutes on a 2-core CPU. Usage: bash benchmarks/make_default_checkpoint.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default-checkpoint}
target=src/autolora/checkpoints/fmnist-resnet8

autolora pretrain --dataset fashion-mnist --model resnet8 --method pgd-at --epochs 6 --eps 0.1 \
  --attack-steps 7 --lr 0.1 --schedule cosine --batch-size 128 --seed 0 --device cpu --out "$work" --overwrite
autolora evaluate --checkpoint "$work" --dataset fashion-mnist --eps 0.1 --attacks clean,pgd,autoattack \
  --autoattack-n 1000 --seed 0 --device cpu --json "$work/evaluation.json"

mkdir -p "$target"
cp "$work/model.safetensors" "$work/config.json" "$work/evaluation.json" "$work/metrics.jsonl" "$target/"
echo "wrote $target"
