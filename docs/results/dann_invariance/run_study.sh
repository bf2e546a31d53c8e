#!/usr/bin/env bash
# Does DANN make the features indistinguishable across domains (the seed text's claim)? The classic digits recipe
# (experiment=digits_da_reference: LeNet, MNIST-5k -> scikit-learn digits, bottleneck 256, 780 steps), with the
# shift diagnostics on: the proxy A-distance (PAD) and MMD between the domains' val features after training, on the
# conv features and on the bottleneck the discriminator reads. Source-only is the baseline, DANN with
# adaptation.weight=0 the control, CDAN+E a second alignment method; the independent reference script
# (bench/da_reference.py, its own PAD with a linear SVM) runs the same arms beside it. About 13 min on 2 idle cores
# (framework and reference side by side, one core each).
#   bash docs/results/dann_invariance/run_study.sh && python docs/results/dann_invariance/tabulate.py multirun/dann_invariance
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
OUT=${OUT:-multirun/dann_invariance}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$OUT"
(
  for seed in $SEEDS; do
    for m in source_only dann cdan_e; do
      $PY bench/da_reference.py --method $m --seed "$seed" --out "$OUT/reference.jsonl"
    done
    $PY bench/da_reference.py --method dann --weight 0 --seed "$seed" --out "$OUT/reference.jsonl"
  done
) > "$OUT/reference.log" 2>&1 &
ref=$!
COMMON="experiment=digits_da_reference diagnostics.enabled=true logger=none trainer.enable_progress_bar=false
  callbacks.checkpoint=null hydra/launcher=local hydra.launcher.n_jobs=1 +hydra.job.env_set.OMP_NUM_THREADS=1"
seeds=$(echo $SEEDS | tr ' ' ,)
$PY train.py -m $COMMON adaptation=none,dann,cdan_e seed=$seeds hydra.sweep.dir="$OUT/framework"
$PY train.py -m $COMMON adaptation=dann adaptation.weight=0 seed=$seeds hydra.sweep.dir="$OUT/framework_control"
wait $ref
