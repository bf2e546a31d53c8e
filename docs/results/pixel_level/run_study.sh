#!/usr/bin/env bash
# Pixel-level DA study (issue 11): source-only vs translate=cyclegan vs cyclegan + the best feature-level method,
# both directions (mnist_to_digits, digits_to_mnist), seeds 0-2, one job at a time, single-threaded.
# Jobs that already finished ok are skipped, so re-running the script completes an interrupted study.
# While the file multirun/pixel_level/PAUSE exists, no new job starts (to share the CPU).
#   bash docs/results/pixel_level/run_study.sh            # then: python docs/results/pixel_level/tabulate.py
set -u
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
OUT=multirun/pixel_level
# cache=off: every arm trains through the same (uncached) path; the DA arms can't use the feature cache anyway.
# da.epoch=longest: the committed tables ran before da.epoch existed, when the longer loader set the epoch
# (docs/results/da_epoch.md); it reproduces them to the digit. The same arms at da.epoch=source:
# docs/results/da_epoch/run.sh.
# depthwise_crop=false: the committed tables ran before depthwise_crop existed (BENCHMARKS.md P11); the cropped
# kernels give the same outputs but gradients that differ in the last bits, which a DA run amplifies. CROP=auto: today's default.
# da.rng=shared: the committed tables ran before da.rng existed (one random stream); RNG=isolated: today's default.
# DEPTH=2: the committed tables ran with partial's 2 trainable groups, the default before docs/results/unfrozen_depth.md
# (2026-12-07); DEPTH=4: today's default.
BUDGET="strategy=partial strategy.trainable_groups=${DEPTH:-2} data.image_size=32 data.train_per_class=50 trainer.max_epochs=4 trainer.enable_progress_bar=false cache=off
  da.epoch=longest depthwise_crop=${CROP:-false} da.rng=${RNG:-shared}"

job() {  # job DIRECTION ARM SEED OVERRIDES...
  local dir=$OUT/$1/$2/seed$3 data=$1; shift 3
  mkdir -p "$(dirname "$dir")"
  while [ -e $OUT/PAUSE ]; do sleep 10; done
  if grep -qs '"status": "ok"' "$dir/results.json"; then return; fi
  echo "$(date +%T) $dir"
  .venv/bin/python train.py data=$data $BUDGET seed=${dir##*seed} "$@" hydra.run.dir=$dir > /dev/null 2> "$dir.log" \
    || echo "  failed: see $dir.log"
}
best() {  # the feature-level method with the highest val/target_acc of cyclegan+METHOD, seed 0 (never test)
  .venv/bin/python - "$OUT/$1" <<'PY'
import json, sys, pathlib
acc = {p.parent.parent.name.split("_", 1)[1]: json.loads(p.read_text())["metrics"]["val/target_acc"]
       for p in pathlib.Path(sys.argv[1]).glob("cyclegan_*/seed0/results.json")}
print(max(acc, key=acc.get))
PY
}
for d in mnist_to_digits digits_to_mnist; do
  for s in 0 1 2; do job $d cyclegan $s translate=cyclegan; done
  for s in 0 1 2; do job $d none $s; done
done
# The feature-level method is picked once, on mnist_to_digits (CPU time), and used for both directions.
for m in dann cdan; do job mnist_to_digits cyclegan_$m 0 translate=cyclegan adaptation=$m; done
m=$(best mnist_to_digits); echo "best feature-level method on mnist_to_digits val/target_acc (seed 0): $m"
for s in 1 2; do job mnist_to_digits cyclegan_$m $s translate=cyclegan adaptation=$m; done
for s in 0 1 2; do job digits_to_mnist cyclegan_$m $s translate=cyclegan adaptation=$m; done
# Check of the choice on digits_to_mnist's own val split: cdan there too (seed 0 picked it: val 42.3 vs 41.3).
for s in 0 1 2; do job digits_to_mnist cyclegan_cdan $s translate=cyclegan adaptation=cdan; done
for d in mnist_to_digits digits_to_mnist; do  # the feature-level method alone, for reference
  for s in 0 1 2; do job $d $m $s adaptation=$m; done
done
# Weight-0 controls (added 2026-12-06): the same batches and steps with the alignment loss switched off. A DA arm's
# epoch is the longer of its two loaders, so with 50 labelled images per class it trains 2x (MNIST -> digits) to 5x
# (digits -> MNIST) the source-only arm's steps; source-only is no control for it.
for d in mnist_to_digits digits_to_mnist; do
  for s in 0 1 2; do job $d ${m}_w0 $s adaptation=$m adaptation.weight=0; done
  for s in 0 1 2; do job $d cyclegan_${m}_w0 $s translate=cyclegan adaptation=$m adaptation.weight=0; done
done
