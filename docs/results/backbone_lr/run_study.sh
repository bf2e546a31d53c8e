#!/usr/bin/env bash
# The backbone's learning rate relative to the head's (`strategy.backbone_lr_mult`, default 0.1: the seed text's
# "10x lower"), chosen on val/acc: partial and full fine-tuning on digits at 4/16/64 images per class, 3 seeds,
# the strategies-vs-size study's budget (80 steps), head lr 1e-3 (the default).
#   bash docs/results/backbone_lr/run_study.sh
#   python docs/results/backbone_lr/tabulate.py multirun/backbone_lr
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
# DEPTH=2: the committed tables ran with partial's 2 trainable groups, the default before docs/results/unfrozen_depth.md
# (2026-12-07); DEPTH=4: today's default.
SIZE="--config-dir sweeps --config-name strategies_vs_datasize logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
$PY train.py -m $SIZE strategy=full strategy.backbone_lr_mult=0.01,0.1,1.0 hydra.sweep.dir=${OUT:-multirun/backbone_lr}
$PY train.py -m $SIZE strategy=partial strategy.trainable_groups=${DEPTH:-2} strategy.backbone_lr_mult=0.01,0.1,1.0 \
  hydra.sweep.dir=${OUT:-multirun/backbone_lr}
