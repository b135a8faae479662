#!/usr/bin/env bash
# One prepared GPU check (issue 14): forward speed and MFU, enhance seconds per video, training steps/s
# and MFU, each as a markdown table. Its timeouts add up to 470 s: under 8 minutes on one GPU, whatever hangs.
#
# The lent GPU machine has PyTorch but no network and no PyAV / platformdirs: fetch their wheels here
# first and carry the folder (device tool: carry [".whl"]):
#   pip download av platformdirs --python-version 3.12 --only-binary=:all: \
#       --platform manylinux_2_28_x86_64 -d .whl/
# Usage (repository root, on the GPU machine): bash benchmarks/gpu.sh [PEAK_TFLOPS]
# PEAK_TFLOPS: the device's dense bf16 peak for the MFU column (default 989, H100/H200 SXM).
set -euo pipefail
cd "$(dirname "$0")/.."
PEAK="${1:-989}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=$("$PY" -c '
import importlib.util as u
print(" ".join(m for m in ("av", "platformdirs") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
  "$PY" -m pip install -q --no-index --find-links .whl $missing
fi
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "benchmarks/gpu.sh needs a CUDA device"
print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true

echo "## forward, bf16, channels_last"
timeout 90 "$PY" benchmarks/bench_forward.py --device cuda --presets paper,small --batches 1,8,32 \
  --bf16 --channels-last --repeat 10 --peak-tflops "$PEAK"

echo "## enhance: seconds per 32-frame video (2 frames timed per video, scaled; 1000 steps extrapolated)"
for videos in 1 16; do
  timeout 65 "$PY" benchmarks/bench_enhance.py --device cuda --presets paper,small --steps 50 \
    --frames 32 --measure-frames 2 --batch-videos "$videos" --bf16
done

echo "## training: paper preset, bf16"
for batch in 4 32; do
  timeout 60 "$PY" benchmarks/bench_train.py --device cuda --variants paper@bf16 --batch "$batch" \
    --steps 10 --peak-tflops "$PEAK"
done

echo "## enhance, compiled as \`enhance --compile\` (reduce-overhead: one CUDA graph per step), 16 videos"
timeout 130 "$PY" benchmarks/bench_enhance.py --device cuda --presets paper --steps 50 --frames 32 \
  --measure-frames 3 --batch-videos 16 --bf16 --compile
