#!/usr/bin/env bash
# da.epoch study: what a domain-adaptation epoch is, and what it does to a DA-vs-source-only comparison.
# Both directions of the digit pair at the pixel-level study's budget (partial, 32 px, 50 labelled images per class,
# 4 epochs), seeds 0-2, one job at a time, single-threaded:
#   none                       source-only (no target batches: da.epoch has nothing to change)
#   dann_w0, dann, cdan        da.epoch=source  (an epoch = one pass over the labelled source data)
#   longest_dann_w0, longest_cdan   da.epoch=longest (the longer loader: MNIST's 2,750 training images set the
#                              epoch in digits -> MNIST; the 500 labelled digits are then cycled 5.7 times)
#   steps_none, steps_cdan     da.epoch=source at the step count the longest arms took (120 / 340): max_steps,
#                              validated once at the end
# Jobs that already finished ok are skipped, so re-running the script completes an interrupted study.
#   bash docs/results/da_epoch/run.sh
#   python docs/results/tabulate_da.py multirun/da_epoch/mnist_to_digits; ... digits_to_mnist
set -u
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
OUT=${OUT:-multirun/da_epoch}
# depthwise_crop=false: the committed tables ran before depthwise_crop existed (BENCHMARKS.md P11); the cropped
# kernels give the same outputs but gradients that differ in the last bits, which a DA run amplifies. CROP=auto: today's default.
# da.rng=shared: the committed tables ran before da.rng existed (one random stream); RNG=isolated: today's default.
# DEPTH=2: the committed tables ran with partial's 2 trainable groups, the default before docs/results/unfrozen_depth.md
# (2026-12-07); DEPTH=4: today's default.
BUDGET="strategy=partial strategy.trainable_groups=${DEPTH:-2} data.image_size=32 data.train_per_class=50 trainer.max_epochs=4 trainer.enable_progress_bar=false cache=off
  depthwise_crop=${CROP:-false} da.rng=${RNG:-shared}"

job() {  # job DIRECTION ARM SEED OVERRIDES...
  local dir=$OUT/$1/$2/seed$3 data=$1; shift 3
  mkdir -p "$(dirname "$dir")"
  if grep -qs '"status": "ok"' "$dir/results.json"; then return; fi
  echo "$(date +%T) $dir"
  .venv/bin/python train.py data=$data $BUDGET seed=${dir##*seed} "$@" hydra.run.dir=$dir > /dev/null 2> "$dir.log" \
    || echo "  failed: see $dir.log"
}
for d in mnist_to_digits digits_to_mnist; do
  for s in 0 1 2; do
    job $d none $s
    job $d dann_w0 $s adaptation=dann adaptation.weight=0 da.epoch=source
    job $d dann $s adaptation=dann da.epoch=source
    job $d cdan $s adaptation=cdan da.epoch=source
  done
done
for d in mnist_to_digits digits_to_mnist; do
  for s in 0 1 2; do
    job $d longest_dann_w0 $s adaptation=dann adaptation.weight=0 da.epoch=longest
    job $d longest_cdan $s adaptation=cdan da.epoch=longest
  done
done
for d in mnist_to_digits digits_to_mnist; do
  n=$([ $d = mnist_to_digits ] && echo 120 || echo 340)  # the longest arms' steps: 4 epochs of the longer loader
  steps="trainer.max_epochs=-1 trainer.max_steps=$n +trainer.check_val_every_n_epoch=null +trainer.val_check_interval=$n"
  for s in 0 1 2; do
    job $d steps_none $s $steps
    job $d steps_cdan $s adaptation=cdan da.epoch=source $steps
  done
done
