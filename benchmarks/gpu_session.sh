#!/usr/bin/env bash
# One lent-GPU session (performance item 6, reference-producer item 5), about 8 minutes:
#   1. torch input path (gpu_torch_input_check.sh): nvjpeg vs PIL pixels, images/s of the
#      PIL path vs the torch decode+resize, FID of both paths (LFW only: CelebA does not travel)
#   2. scoring smoke (gpu_score_smoke.sh): extraction images/s with thread/process decode
#      workers, the network alone, CPU-vs-GPU features, single process vs torchrun
#   3. a short sweep: `python -m models sweep` over loss.lambda=1,5 for SWEEP_MINUTES each on
#      SWEEP_IMAGES LFW images with placeholder captions (benchmarks/placeholder_captions.py:
#      Face2Text does not travel), scored with fid,kid,rprec; GAN/DAMSM steps/s per cell
# Every part uses benchmarks/random_inception.py (the FID network's layout, seeded random
# weights; the 87 MB weights file does not travel): speeds and agreements are valid, FID/KID
# values are not the protocol's.
# Usage (repo root): bash benchmarks/gpu_session.sh DATA OUT
#   DATA holds lfw/deepfunneled/ (2,000 Name_0001.jpg are enough); OUT receives session.log
#   and the sweep's report. Wheels in ./.whl are installed first (open_clip_torch, ftfy, wcwidth).
# Environment: DEVICE (cuda), SCORE_N (1000), SWEEP_MINUTES (0.75), SWEEP_IMAGES (600),
#   DAMSM_STEPS (150); timeouts INPUT_TIMEOUT (150 s), SCORE_TIMEOUT (150 s), SWEEP_TIMEOUT (240 s).
set -uo pipefail
DATA=$(cd "${1:?usage: gpu_session.sh DATA OUT}" && pwd)
OUTDIR=${2:?usage: gpu_session.sh DATA OUT}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
DEVICE=${DEVICE:-cuda}
LOG="$OUTDIR/session.log"
WORK=$(mktemp -d)
export DEVICE PYTHONUNBUFFERED=1 FACEMETRICS_OFFLINE=1 FACEMETRICS_CACHE="$WORK/cache"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    && export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
  nproc
  python3 benchmarks/random_inception.py "$WORK/random-inception.pt" 2>/dev/null
} 2>&1 | tee "$LOG"
export FACEMETRICS_INCEPTION="$WORK/random-inception.pt"

echo "== 1. torch input path" | tee -a "$LOG"
timeout "${INPUT_TIMEOUT:-150}" bash benchmarks/gpu_torch_input_check.sh "$DATA" "$WORK/torch_input" 2>&1 | grep --line-buffered -v -i warn | tee -a "$LOG"

echo "== 2. scoring smoke" | tee -a "$LOG"
timeout "${SCORE_TIMEOUT:-150}" bash benchmarks/gpu_score_smoke.sh . "$DATA" "${SCORE_N:-1000}" 2 "$DEVICE" 2>&1 | grep --line-buffered -v -i warn | tee -a "$LOG"

echo "== 3. sweep" | tee -a "$LOG"
SW="$WORK/sweep-data"
mkdir -p "$SW/lfw"
ln -s "$DATA/lfw/deepfunneled" "$SW/lfw/deepfunneled"
python3 benchmarks/placeholder_captions.py "$SW" --n "${SWEEP_IMAGES:-600}" 2>&1 | tee -a "$LOG"
t0=$(date +%s)
timeout "${SWEEP_TIMEOUT:-240}" python3 -m models sweep --config models/configs/face2text_64.yaml --grid loss.lambda=1,5 \
  --minutes "${SWEEP_MINUTES:-0.75}" --set "damsm.steps=${DAMSM_STEPS:-150}" --set train.eval_every=0 \
  --data "$SW" --device "$DEVICE" --metrics fid,kid,rprec --out "$WORK/sweep" 2>&1 | grep --line-buffered -v -i warn | tee -a "$LOG"
echo "sweep wall time: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
python3 - "$WORK/sweep" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for log in sorted(out.glob("*/run/log.jsonl")):
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    for phase in ("damsm", "gan"):
        r = [x for x in rows if x.get("phase") == phase and x.get("steps")]
        if r:
            n = sum(x["steps"] for x in r)
            s = sum(x["steps"] / x["steps_per_s"] for x in r)
            print(f"{log.parts[-3]}: {phase} {n} steps, {n / s:.2f} steps/s")
EOF
for f in report.md report.csv sweep.json; do
  [ -f "$WORK/sweep/$f" ] && cp "$WORK/sweep/$f" "$OUTDIR/sweep_$f"
done
echo "== done" | tee -a "$LOG"
rm -rf "$WORK"
