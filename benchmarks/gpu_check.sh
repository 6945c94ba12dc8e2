#!/usr/bin/env bash
# One prepared GPU check (one NVIDIA GPU), meant to finish in about 4 minutes. Prints:
#   1. the pipeline/bare-step ratio (benchmarks/bench_pipeline.py) for efficientnet_lite0 at 160 and 224 px
#      and resnet50 at 224 px, each with its epoch-1 start-up time against a steady epoch;
#   2. the wall time of a 5-fold `skinlesion cv` of the default recipe at 224 px.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repo root
#   bash benchmarks/gpu_check.sh --smoke    # the same steps shrunk to seconds (CPU test: generated data,
#                                           # a tiny CNN at 32 px, 2 folds of 1 epoch)
#
# Needs ../shared/data/ham10000-lowres, or a copy in .gpu-data/ham10000-lowres (git-ignored; copy it
# there and carry it when the repo travels to the GPU machine). No network: every model trains from random
# init (--no-pretrained), which has the same speed as pretrained weights. Each step has its own timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
# the interpreter this machine has: $PYTHON, else python3, else python (GPU images often lack `python`)
PY="${PYTHON:-$(command -v python3 || command -v python || true)}"
[ -n "$PY" ] || { echo "no python3 or python on PATH (set PYTHON=...)" >&2; exit 2; }
if ! "$PY" -c "import skinlesion" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps -e . >/dev/null
fi
# never $OUT: the device tool owns that name (the folder that comes back)
WORK="${GPU_CHECK_DIR:-/tmp/skinlesion-gpu-check}"
RESULTS="${GPU_CHECK_RESULTS:-$WORK/results}"
rm -rf "$WORK"; mkdir -p "$WORK" "$RESULTS"
export HF_HUB_OFFLINE=1
if [ "$SMOKE" = 1 ]; then
  DATA="$WORK/demo"
  "$PY" -c "from skinlesion.data.synthetic import make_demo_data as m; m('$DATA', n=120, seed=3, progress=False)"
  COMBOS="simple_cnn:32"; BENCH=(--epochs 2 --min-time 1); LIMIT=120
  CV=(--arch simple_cnn --image-size 32 --folds 2 --epochs 1)
else
  DATA=".gpu-data/ham10000-lowres"
  [ -d "$DATA" ] || DATA="../shared/data/ham10000-lowres"
  [ -d "$DATA" ] || { echo "no ham10000-lowres found (.gpu-data/ or ../shared/data/)" >&2; exit 2; }
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  COMBOS="efficientnet_lite0:160 efficientnet_lite0:224 resnet50:224"; BENCH=(--epochs 3 --min-time 5); LIMIT=100
  CV=(--image-size 224 --folds 5)  # the 5-minute target; every step has its own timeout (worst case 9.5 min)
fi
for combo in $COMBOS; do
  arch="${combo%%:*}"; size="${combo##*:}"
  echo "== bench_pipeline $arch ${size}px"
  timeout "$LIMIT" "$PY" benchmarks/bench_pipeline.py --data "$DATA" --arch "$arch" --image-size "$size" \
    "${BENCH[@]}" --out "$RESULTS/pipeline_${arch}_${size}" || echo "bench_pipeline $arch $size: exit $?"
done
echo "== 5-fold cv of the default recipe (${CV[*]})"
start=$(date +%s)
status=0
timeout "$((LIMIT * 3))" "$PY" -m skinlesion cv --data "$DATA" --out "$WORK/cv" --no-pretrained \
  --cache-dir "$WORK/cache" --quiet "${CV[@]}" > "$WORK/cv.log" 2>&1 || status=$?
end=$(date +%s)
tail -3 "$WORK/cv.log"
echo "cv wall time: $((end - start)) s (exit $status)" | tee "$RESULTS/cv_wall.txt"
