#!/usr/bin/env bash
# da.running_stats: whose batches move the running BN statistics of the bottleneck head (both | source | target),
# on the DA study's bottleneck block (EfficientNet-Lite0 partial, norm=frozen, MNIST-5k -> digits, 32 px, 4 epochs):
# DANN, CDAN+E and DANN's weight-0 control under each setting, source-only (no target batches: no setting applies)
# beside them, 6 seeds each (60 runs, ~30 min with N_JOBS=2 on 2 cores).
#   bash docs/results/da_running_stats/run.sh && python docs/results/da_running_stats/choose.py multirun/da_running_stats/*
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/da_running_stats}
SEEDS=${SEEDS:-0,1,2,3,4,5}
# da.epoch=longest: the committed tables ran before da.epoch existed, when the longer loader set the epoch
# (docs/results/da_epoch.md); it reproduces them to the digit.
# depthwise_crop=false: the committed tables ran before depthwise_crop existed (BENCHMARKS.md P11); the cropped
# kernels give the same outputs but gradients that differ in the last bits, which a DA run amplifies. CROP=auto: today's default.
# da.rng=shared: the committed tables ran before da.rng existed (one random stream); RNG=isolated: today's default.
# DEPTH=2: the committed tables ran with partial's 2 trainable groups, the default before docs/results/unfrozen_depth.md
# (2026-12-07); DEPTH=4: today's default.
COMMON="data=mnist_to_digits strategy=partial strategy.trainable_groups=${DEPTH:-2} data.image_size=32 data.train_per_class=100 trainer.max_epochs=4 da.epoch=longest
  depthwise_crop=${CROP:-false} da.rng=${RNG:-shared}
  head.bottleneck=256 logger=none trainer.enable_progress_bar=false callbacks.checkpoint=null hydra/launcher=local
  hydra.launcher.n_jobs=${N_JOBS:-2} +hydra.job.env_set.OMP_NUM_THREADS=1"
$PY train.py -m $COMMON adaptation=dann,cdan_e da.running_stats=both,source,target seed=$SEEDS hydra.sweep.dir=$OUT/methods
$PY train.py -m $COMMON adaptation=dann adaptation.weight=0 da.running_stats=both,source,target seed=$SEEDS \
  hydra.sweep.dir=$OUT/control
$PY train.py -m $COMMON adaptation=none seed=$SEEDS hydra.sweep.dir=$OUT/source_only
