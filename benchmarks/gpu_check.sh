#!/usr/bin/env bash
# One GPU session for the device checks (issues 6 and 7), sized to a few minutes:
#   1. models/ training smoke: N GAN steps per variant at 64×64 on synthetic captions, steps/s
#   2. facemetrics scoring smoke: extraction images/s on CUDA, CPU-vs-CUDA feature agreement,
#      single process vs torchrun (RANDOM_NET=1: the FID weights file is too large to carry,
#      so a seeded random network of the same architecture is used; speeds stay valid)
# Usage (from the repo root): bash benchmarks/gpu_check.sh DATA_DIR [OUT_DIR]
# DATA_DIR holds lfw/deepfunneled/ (a copy of a few thousand LFW images is enough).
# Missing pure-Python packages are installed from ./.whl when that folder exists.
set -uo pipefail
DATA=${1:?usage: gpu_check.sh DATA_DIR [OUT_DIR]}
OUTDIR=${2:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi -L || true
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
echo "== 1. training smoke"
timeout "${TRAIN_TIMEOUT:-200}" bash benchmarks/gpu_train_smoke.sh . synthetic "${TRAIN_STEPS:-60}" \
  --out "$OUTDIR/train" 2>&1 | grep -v -i "warn" | tee "$OUTDIR/train.log"
echo "== 2. scoring smoke"
RANDOM_NET=1 timeout "${SCORE_TIMEOUT:-200}" bash benchmarks/gpu_score_smoke.sh . "$DATA" "${SCORE_N:-1000}" 2 cuda \
  2>&1 | tee "$OUTDIR/score.log"
