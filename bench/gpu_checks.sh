#!/usr/bin/env bash
# The checks that need a GPU, as one prepared script for the device machine (a session that is lent one):
#   - tests/test_run_device.py (skipped on a CPU machine) and the CycleGAN end-to-end test: the feature cache,
#     AdaBN, LoRA's merged check and the translation pass on the CUDA device, cached and uncached metrics compared;
#   - issue 17 item 5: bf16 MFU of ViT-B/BERT-base full fine-tuning, and P3 (peak GPU memory full/LoRA/QLoRA).
# The machine is offline: its Python needs this project's dependencies (see the device tool's KINDS.md for
# what it has; missing ones travel as wheels). Results land in $OUT (or /tmp/gpu_checks) and BENCHMARKS.md.
#   bash bench/gpu_checks.sh
set -u
out=${OUT:-/tmp/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
nvidia-smi -L 2>&1 | tee "$out/device.txt"
python -m pytest -q -n 0 -p no:cacheprovider tests/test_run_device.py "tests/test_cyclegan.py::test_cyclegan_with_dann_end_to_end_then_reused" -rs 2>&1 | tee "$out/pytest.txt"
python bench/gpu_throughput.py --device cuda 2>&1 | tee "$out/throughput.txt"
for backbone in minilm smollm2; do
  python bench/p3_memory.py --device cuda --backbone "$backbone" 2>&1 | tee "$out/p3_$backbone.txt"
done
cp BENCHMARKS.md "$out/"
