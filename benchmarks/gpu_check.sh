#!/usr/bin/env bash
# One prepared GPU check (one NVIDIA GPU): ResNet50 and EfficientNet-B0 at 224 px with the GPU recipe
# (bf16 autocast, channels_last, pinned memory, persistent workers, augmentation on the device from
# the uint8 cache) on the low-res HAM10000 subset for 3 epochs each; prints train/val images/s and the
# projected wall time of 20 epochs on HAM10000's ~7,000 training + ~1,500 validation images.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repo root
#
# Needs ../shared/data/ham10000-lowres, or a copy in .gpu-data/ham10000-lowres (git-ignored; copy it
# there and carry it when the repo travels to the GPU machine). No network: resnet50/efficientnet_b0
# train from random init (--no-pretrained), which has the same speed as pretrained weights.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=".gpu-data/ham10000-lowres"
[ -d "$DATA" ] || DATA="../shared/data/ham10000-lowres"
[ -d "$DATA" ] || { echo "no ham10000-lowres found (.gpu-data/ or ../shared/data/)" >&2; exit 2; }
# the interpreter this machine has: $PYTHON, else python3, else python (GPU images often lack `python`)
PY="${PYTHON:-$(command -v python3 || command -v python)}"
[ -n "$PY" ] || { echo "no python3 or python on PATH (set PYTHON=...)" >&2; exit 2; }
if ! "$PY" -c "import skinlesion" 2>/dev/null; then
  "$PY" -m pip install -q -e . >/dev/null
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# never $OUT: the device tool owns that name (the folder that comes back)
WORK="${GPU_CHECK_DIR:-/tmp/skinlesion-gpu-check}"
rm -rf "$WORK"; mkdir -p "$WORK"
export HF_HUB_OFFLINE=1
for arch in resnet50 efficientnet_b0; do
  start=$(date +%s)
  "$PY" -m skinlesion train --data "$DATA" --out "$WORK/$arch" --arch "$arch" --no-pretrained --image-size 224 \
    --epochs 3 --phases 1 --batch-size 128 --num-workers 8 --cache-dir "$WORK/cache" --quiet --patience 10
  end=$(date +%s)
  "$PY" - "$WORK/$arch" "$arch" "$((end - start))" <<'PY'
import sys, pandas as pd
run, arch, wall = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = pd.read_csv(f"{run}/metrics.csv")
last = h.iloc[1:] if len(h) > 1 else h          # epoch 1 includes cudnn autotuning and worker start-up
train_ips, val_ips = float(last["train_images_per_s"].median()), float(last["val_images_per_s"].median())
projected = 20 * (7000 / train_ips + 1500 / val_ips)
print(f"{arch}: train {train_ips:.0f} img/s, val {val_ips:.0f} img/s (median of epochs 2-3); run wall {wall}s; "
      f"projected 20 epochs on HAM10000 (~7,000 train + ~1,500 val images): {projected / 60:.1f} min")
PY
done
