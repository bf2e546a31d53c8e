#!/usr/bin/env bash
# LoRA on the image backbone: its adapters' learning rate (`strategy.peft_lr`, 1e-3 before this study) and rank
# (`strategy.r`, 8), chosen on val/acc, on the strategies-vs-size study's task (digits, EfficientNet-Lite0 at 64 px,
# 4/16/64 images per class, 80 steps, 3 seeds), with the head alone (feature extraction at LoRA's head rate) as the
# control and full fine-tuning at its defaults as the reference. 81 runs, about 15 min with 2 workers on 2 cores.
#   bash docs/results/lora_rate_rank/run_study.sh     # RATE (3e-3): the rate the rank arms run at, the one chosen
#   python docs/results/lora_rate_rank/tabulate.py multirun/lora_rate_rank
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/lora_rate_rank}
SIZE="--config-dir sweeps --config-name strategies_vs_datasize logger=none hydra.launcher.n_jobs=${N_JOBS:-2}"
# rate, at the default rank (r=8, alpha=16: the update scaled by alpha/r = 2)
$PY train.py -m $SIZE strategy=lora strategy.peft_lr=3e-4,1e-3,3e-3,1e-2 hydra.sweep.dir=$OUT/rate
# rank, at the chosen rate, alpha = 2r (the same scale alpha/r = 2 as the default). r >= 16 is refused on this backbone
# (its narrowest adapted 1x1 conv is 16 wide: no longer a low-rank update there), so 2, 4 and 12 beside the default 8.
for r in 2 4 12; do
  $PY train.py -m $SIZE strategy=lora strategy.peft_lr=${RATE:-3e-3} strategy.r=$r strategy.alpha=$((2 * r)) \
    hydra.sweep.dir=$OUT/rank
done
# control: the head alone on the frozen network, at LoRA's head rate (lr 1e-3); reference: full fine-tuning
$PY train.py -m $SIZE strategy=feature_extraction strategy.lr=1e-3 hydra.sweep.dir=$OUT/control
$PY train.py -m $SIZE strategy=full hydra.sweep.dir=$OUT/full
