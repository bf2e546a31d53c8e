#!/usr/bin/env bash
# Learning rate and forgetting in full fine-tuning (docs/results/lr_forgetting.md): sweeps/full_finetuning_lr.yaml at
# 100 and 10 labelled MNIST images per class (4 head LRs x backbone at 1x or 0.1x x 3 seeds), and the control that
# cannot forget, feature extraction (frozen backbone, head LR 1e-2: its default then), at the same budget.
#   bash docs/results/lr_forgetting/run_study.sh
#   python docs/results/lr_forgetting/tabulate.py multirun/lr_forgetting
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/lr_forgetting}
STUDY="--config-dir sweeps --config-name full_finetuning_lr logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
$PY train.py -m $STUDY data.train_per_class=100,10 hydra.sweep.dir=$OUT/full
# the control: the same budget (32 px, 200 steps, one validation at the end) without the study file's LR grid
# (head lr 1e-2: feature extraction's default before docs/results/head_rate.md, which the committed tables ran with)
$PY train.py -m data=mnist_to_digits strategy=feature_extraction strategy.lr=1e-2 data.image_size=32 data.train_per_class=100,10 \
  trainer.max_epochs=-1 trainer.max_steps=200 +trainer.check_val_every_n_epoch=null +trainer.val_check_interval=200 \
  trainer.enable_progress_bar=false callbacks.checkpoint=null logger=none hydra/launcher=local \
  hydra.launcher.n_jobs=${N_JOBS:-2} +hydra.job.env_set.OMP_NUM_THREADS=1 seed=0,1,2 hydra.sweep.dir=$OUT/control
