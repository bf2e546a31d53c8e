#!/usr/bin/env bash
# Domain-bridging augmentation and test-time augmentation under today's defaults (the seed text: "low cost, high
# return"). Every run also evaluates with TTA (tta=shifts: identity + 4 shifts + 2 zooms), on val and on test, so
# TTA is paired within each run and chosen on val; the augmentations are paired by seed with augment=none.
#   domain shift: MNIST -> digits, partial fine-tuning, the DA study's setting (docs/results/da_study.md), 6 seeds
#   in domain:    digits, full fine-tuning, the strategies-vs-size study's setting, 3 sizes x 3 seeds
#   bash docs/results/augment_tta/run_study.sh
#   python docs/results/augment_tta/tabulate.py multirun/augment_tta
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/augment_tta}
# DEPTH=2: the committed tables ran with partial's 2 trainable groups, the default before docs/results/unfrozen_depth.md
# (2026-12-07); DEPTH=4: today's default.
RUN="logger=none trainer.enable_progress_bar=false callbacks.checkpoint=null hydra/launcher=local
  hydra.launcher.n_jobs=${N_JOBS:-2} +hydra.job.env_set.OMP_NUM_THREADS=1 tta=shifts"
$PY train.py -m $RUN data=mnist_to_digits strategy=partial strategy.trainable_groups=${DEPTH:-2} data.image_size=32 data.train_per_class=100 \
  trainer.max_epochs=4 augment=none,bridge,mnist_to_digits seed=${SEEDS:-0,1,2,3,4,5} hydra.sweep.dir=$OUT/shift
$PY train.py -m --config-dir sweeps --config-name strategies_vs_datasize logger=none tta=shifts strategy=full \
  augment=none,bridge hydra.sweep.dir=$OUT/in_domain
