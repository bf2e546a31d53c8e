#!/usr/bin/env bash
# Feature extraction's head learning rate (`strategy.lr`, 1e-2 before this study, never chosen by a measurement),
# chosen on val/acc, on the strategies-vs-size study's task (digits, EfficientNet-Lite0 at 64 px, 4/16/64 images per
# class, 80 steps, 3 seeds). The reference is full fine-tuning at its defaults (docs/results/lora_rate_rank/).
# 45 runs, about 3 min with 2 workers on 2 cores (the frozen backbone's features are cached).
#   bash docs/results/head_rate/run_study.sh
#   python docs/results/head_rate/tabulate.py multirun/head_rate
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
SIZE="--config-dir sweeps --config-name strategies_vs_datasize logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
$PY train.py -m $SIZE strategy=feature_extraction strategy.lr=1e-3,3e-3,1e-2,3e-2,1e-1 \
  hydra.sweep.dir=${OUT:-multirun/head_rate}
