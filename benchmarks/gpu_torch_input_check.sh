#!/usr/bin/env bash
# Device check of the torch input path (performance issue, item 6), a few minutes on one GPU:
#   1. nvjpeg decode vs PIL on 200 LFW + 200 CelebA JPEGs (max abs diff, identical fraction)
#   2. images/s: PIL decode+resize vs torch decode+resize on CUDA (batch 1, 32, 128), and
#      libjpeg-turbo decode on the CPU + resize on CUDA (decoded pixels = PIL's)
#   3. FID 2×100 LFW, PIL path vs torch path on CUDA (skipped when the Inception weights are
#      not there: the FID weights file is too large to carry)
# Usage (from the repo root): bash benchmarks/gpu_torch_input_check.sh DATA_DIR [OUT_DIR]
set -uo pipefail
DATA=${1:?usage: gpu_torch_input_check.sh DATA_DIR [OUT_DIR]}
OUTDIR=${2:-${OUT:-/tmp/gpu-torch-input}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi -L || true
timeout 120 python3 benchmarks/decode_torch_input.py --n 200 --device "${DEVICE:-cuda}" --data "$DATA" 2>&1 | tee "$OUTDIR/decode.md"
timeout 180 python3 benchmarks/bench_torch_input.py --n 256 --rounds 5 --batch 1 32 128 --device "${DEVICE:-cuda}" \
  --data "$DATA" 2>&1 | tee "$OUTDIR/bench.md"
timeout 180 python3 benchmarks/bench_torch_input.py --n 256 --rounds 5 --batch 32 128 --device "${DEVICE:-cuda}" \
  --decode-device cpu --data "$DATA" 2>&1 | tee "$OUTDIR/bench_cpu_decode.md"
if python3 -c "from facemetrics.extractors.inception import InceptionExtractor as E; E().weights_path" 2>/dev/null; then
  timeout 180 python3 benchmarks/fid_torch_input.py --n 100 --device "${DEVICE:-cuda}" --data "$DATA" 2>&1 | tee "$OUTDIR/fid.txt"
else
  echo "no Inception weights here: FID comparison skipped" | tee "$OUTDIR/fid.txt"
fi
