#!/usr/bin/env bash
# GPU training smoke test of the models/ producer: N GAN steps per variant, prints steps/s.
#
#   benchmarks/gpu_train_smoke.sh [REPO] [DATA|synthetic] [STEPS] [extra gpu_train_smoke.py args...]
#   e.g. benchmarks/gpu_train_smoke.sh . ../shared/data 200 --resolution 64 --resolution 256
#
# Needs python with torch (CUDA) and numpy + pillow. Missing pure-python dependencies
# (tqdm, pyyaml, open_clip_torch, ftfy, wcwidth, regex) are installed offline from REPO/.whl
# when that folder holds their wheels (pip download -d .whl ...); nothing is downloaded.
set -euo pipefail
REPO=${1:-.}
DATA=${2:-synthetic}
STEPS=${3:-200}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-python3}
cd "$REPO"
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = {"tqdm": "tqdm", "yaml": "pyyaml", "open_clip": "open_clip_torch", "ftfy": "ftfy", "wcwidth": "wcwidth",
        "regex": "regex"}
print(" ".join(p for m, p in need.items() if importlib.util.find_spec(m) is None))
PYEOF
)
for m in torch numpy PIL; do
  "$PY" -c "import $m" 2>/dev/null || { echo "error: python module '$m' is required" >&2; exit 2; }
done
if [ -n "$missing" ]; then
  if [ -d .whl ]; then
    SITE=$(mktemp -d)/site
    echo "installing offline from .whl: $missing" >&2
    "$PY" -m pip install -q --no-index --no-deps --find-links .whl --target "$SITE" $missing >&2 \
      || echo "warning: offline install of '$missing' failed; clip variants may not run" >&2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "warning: missing python packages: $missing (clip variants need open_clip_torch)" >&2
  fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" benchmarks/gpu_train_smoke.py --data "$DATA" --steps "$STEPS" "$@"
