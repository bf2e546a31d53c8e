#!/usr/bin/env bash
# Pretrained vs from scratch (the seed text's central claim) on the default task: scikit-learn digits at 64 px,
# 4/16/64 training images per class, seeds 0-2, the strategies-vs-size study's budget (80 steps, batch 32).
# Each arm gets the same small grid, chosen on val/acc (never on test): head lr x batch-norm policy.
#   pretrained:     EfficientNet-Lite0 (ImageNet weights), full fine-tuning, backbone lr x0.1 (the default)
#   scratch:        the same network from random init, every layer at the head's lr
#   lenet:          a small from-scratch network suited to 28 px digits (no batch norm)
#   features:       the controls: a linear head on the pretrained network's features, and on a random one's
# Then the chosen configs again at 5x the steps (STEPS_LONG=400): does training from scratch only need longer?
#   bash docs/results/pretrained_vs_scratch/run_study.sh
#   python docs/results/pretrained_vs_scratch/tabulate.py multirun/pretrained_vs_scratch
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/pretrained_vs_scratch}
C="--config-dir sweeps --config-name strategies_vs_datasize logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
GRID="strategy.lr=1e-3,3e-3 strategy.norm=frozen,train"
$PY train.py -m $C strategy=full $GRID hydra.sweep.dir=$OUT/pretrained
$PY train.py -m $C strategy=full backbone.pretrained=false strategy.backbone_lr_mult=1.0 $GRID hydra.sweep.dir=$OUT/scratch
$PY train.py -m $C strategy=full backbone=lenet data.image_size=28 strategy.backbone_lr_mult=1.0 strategy.lr=1e-3,3e-3 \
  hydra.sweep.dir=$OUT/lenet
# head lr 1e-2: feature extraction's default before docs/results/head_rate.md, which the committed tables ran with
$PY train.py -m $C strategy=feature_extraction strategy.lr=1e-2 backbone.pretrained=true,false hydra.sweep.dir=$OUT/features
# The long budget: each arm's configuration chosen on val/acc at 80 steps (tabulate.py --chosen prints them).
if [ -n "${LONG:-}" ]; then
  while read -r arm overrides; do
    $PY train.py -m $C $overrides trainer.max_steps=${STEPS_LONG:-400} trainer.val_check_interval=${STEPS_LONG:-400} \
      hydra.sweep.dir=$OUT/long_$arm
  done < <($PY docs/results/pretrained_vs_scratch/tabulate.py --chosen $OUT)
fi
