#!/usr/bin/env bash
# The parameter-efficient methods side by side on text (docs/results/text_peft_methods.md): all-MiniLM-L6-v2 on
# data=reviews, 5 epochs, 3 seeds, the text_peft.md budget. LoRA, QLoRA (4-bit NF4 base), prefix tuning, prompt tuning
# and Houlsby adapters, each at its default peft_lr and one other rate, chosen on val/acc.
#   bash docs/results/text_peft_methods/run_study.sh
#   python docs/results/text_peft_methods/tabulate.py multirun/text_peft_methods
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/text_peft_methods}
SEEDS=${SEEDS:-0,1,2}
C="backbone=minilm data=reviews trainer.max_epochs=5 logger=none callbacks.checkpoint=null trainer.enable_progress_bar=false
  hydra/launcher=local hydra.launcher.n_jobs=${N_JOBS:-2} +hydra.job.env_set.OMP_NUM_THREADS=1 seed=$SEEDS"
# peft_lr is swept (two values each): a fixed `strategy.peft_lr=X` next to a swept `strategy=a,b` would be applied
# by Hydra to the base config's default strategy first, which has no peft_lr
$PY train.py -m $C strategy=lora,qlora,adapter strategy.peft_lr=1e-3,3e-3 hydra.sweep.dir=$OUT/lora_qlora_adapter
$PY train.py -m $C strategy=prefix_tuning strategy.peft_lr=1e-2,3e-2 hydra.sweep.dir=$OUT/prefix_tuning
$PY train.py -m $C strategy=prompt_tuning strategy.peft_lr=3e-2,1e-1 hydra.sweep.dir=$OUT/prompt_tuning
