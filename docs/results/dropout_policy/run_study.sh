#!/usr/bin/env bash
# backbone_dropout on the packaged MiniLM and the synthetic reviews task (the text_peft.md budget: 5 epochs,
# batch 32): prompt tuning under the new rule and the old one, 5 seeds each, and LoRA under the new rule
# (the old rule's LoRA runs are text_peft.md's). ~20 min on an idle 2-core machine, one job at a time.
#   bash docs/results/dropout_policy/run_study.sh && python docs/results/dropout_policy/tabulate.py
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-multirun/dropout_policy}
C="backbone=minilm data=reviews trainer.max_epochs=5 logger=none callbacks.checkpoint=null hydra/launcher=local hydra.launcher.n_jobs=1"
$PY train.py -m $C strategy=prompt_tuning backbone_dropout=after_trainable,frozen_subtrees seed=0,1,2,3,4 \
  hydra.sweep.dir="$OUT/prompt"
$PY train.py -m $C strategy=lora strategy.peft_lr=1e-3 backbone_dropout=after_trainable,frozen_subtrees seed=0,1,2 \
  hydra.sweep.dir="$OUT/lora"
