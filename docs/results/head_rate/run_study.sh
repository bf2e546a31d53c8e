#!/usr/bin/env bash
# Feature extraction's head learning rate (`strategy.lr`; 1e-2 before this study, never chosen by a measurement),
# chosen on val/acc, 3 seeds each:
# - size: the strategies-vs-size study's task (digits, EfficientNet-Lite0 at 64 px, 4/16/64 images per class, 80 steps),
#   5 rates; its reference is full fine-tuning at its defaults (docs/results/lora_rate_rank/run_study.sh, `full`);
# - default_job: the default job's budget (`python train.py`: 20 images per class, 10 epochs), 3 rates;
# - text: MiniLM on the synthetic reviews task (10 epochs), 5 rates.
# 69 runs, about 8 min with 2 workers on 2 cores (the frozen backbones' features are cached).
#   bash docs/results/head_rate/run_study.sh
#   python docs/results/head_rate/tabulate.py multirun/head_rate multirun/lora_rate_rank/full
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/head_rate}
JOBS="logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
SIZE="--config-dir sweeps --config-name strategies_vs_datasize $JOBS"
$PY train.py -m $SIZE strategy=feature_extraction strategy.lr=1e-3,3e-3,1e-2,3e-2,1e-1 hydra.sweep.dir=$OUT/size
EACH="$JOBS hydra/launcher=local +hydra.job.env_set.OMP_NUM_THREADS=1 callbacks.checkpoint=null seed=0,1,2
  hydra.sweep.subdir=\${hydra.job.override_dirname}"
$PY train.py -m $EACH strategy.lr=1e-3,3e-3,1e-2 hydra.sweep.dir=$OUT/default_job
$PY train.py -m $EACH backbone=minilm data=reviews strategy=feature_extraction strategy.lr=1e-3,3e-3,1e-2,3e-2,1e-1 \
  hydra.sweep.dir=$OUT/text
