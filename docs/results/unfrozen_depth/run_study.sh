#!/usr/bin/env bash
# How many layer groups to unfreeze (`strategy.trainable_groups`: partial fine-tuning's default was 2; this study
# chose 4), on validation: feature extraction (0 groups), partial with 1/2/3/4/6 of EfficientNet-Lite0's 8 groups, and full
# fine-tuning (all), at the default learning rates (head 1e-3, backbone x 0.1).
# 1. digits in domain: 4/16/64 images per class, 3 seeds, the strategies-vs-size study's budget (64 px, 80 steps).
# 2. MNIST -> digits (domain shift): 100 labelled MNIST images per class, 32 px, 4 epochs, 6 seeds (the DA study's
#    source-only arm), chosen on the label-free val/source_acc, target labels only to report what that costs.
#   bash docs/results/unfrozen_depth/run_study.sh
#   python docs/results/unfrozen_depth/tabulate.py multirun/unfrozen_depth
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/unfrozen_depth}
GROUPS_=${GROUPS_:-1,2,3,4,6}
SIZE="--config-dir sweeps --config-name strategies_vs_datasize logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
$PY train.py -m $SIZE strategy=partial strategy.trainable_groups=$GROUPS_ hydra.sweep.dir=$OUT/digits_partial
# the ends: feature extraction (head lr 1e-2, its default before docs/results/head_rate.md, which the committed
# tables ran with) and full fine-tuning
$PY train.py -m $SIZE strategy=feature_extraction strategy.lr=1e-2 hydra.sweep.dir=$OUT/digits_ends
$PY train.py -m $SIZE strategy=full hydra.sweep.dir=$OUT/digits_ends
SHIFT="data=mnist_to_digits data.image_size=32 data.train_per_class=100 trainer.max_epochs=4 seed=${SEEDS:-0,1,2,3,4,5}
  logger=none trainer.enable_progress_bar=false callbacks.checkpoint=null hydra/launcher=local
  hydra.launcher.n_jobs=${N_JOBS:-2} +hydra.job.env_set.OMP_NUM_THREADS=1"
$PY train.py -m $SHIFT strategy=partial strategy.trainable_groups=$GROUPS_ hydra.sweep.dir=$OUT/shift_partial
$PY train.py -m $SHIFT strategy=feature_extraction strategy.lr=1e-2 hydra.sweep.dir=$OUT/shift_ends
$PY train.py -m $SHIFT strategy=full hydra.sweep.dir=$OUT/shift_ends
