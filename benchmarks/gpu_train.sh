#!/usr/bin/env bash
# The quality issue's GPU call, in under 9 minutes: unpack the carried training data and train with the largest
# batch that fits. RECIPE=truth (the default, the shipped v8's recipe): the shipped model trained on the aligned
# truth at t = 999 with the detail term (7.5 min) -> student.pt. RECIPE=distill: fine-tune a model as a 4-step
# denoiser (5 min), distil it into a one-step student (2.5 min) -> teacher.pt, student.pt. Models (split into
# 15 MiB parts) and logs land under $OUT. Evaluate and ship on the CPU.
#
# Before the call, here (the lent machine has PyTorch and OpenCV but no PyAV or platformdirs and no network;
# OpenCV reads the packed H.264 clips, so PyAV's 35 MB wheel need not travel):
#   python benchmarks/pack_train_data.py ~/facenhance-data/all64p gpu_data/train.tar    # ~37 MiB
# (all64p: prepare's default steady low frames, so TARGET_MOTION=registered; EDIT_MARGIN=32 for row 46's wider
# region, with INIT_MODEL=gpu_data/init.pt a model exported from it; all64 holds the older landmark-aligned clips)
#   pip download platformdirs --no-deps --only-binary=:all: --python-version 3.12 -d .whl/
# RECIPE=distill, optional: a teacher that is a full denoiser (the shipped default is a one-step patch-2 student): its 4-step
# ancestor, 20 MiB more to carry (57 MiB with the pack), and the student then starts as the shipped default:
#   git show 2880ac8:models/facenhance-small-v5.pt > gpu_data/teacher-init.pt
# The call (device tool): command "bash benchmarks/gpu_train.sh", carry ["gpu_data", ".whl"], timeout_s 600.
# After it, here: cat teacher.pt.part-* > teacher.pt; cat student.pt.part-* > student.pt; then
#   facenhance enhance ... --model student.pt, facenhance eval ... as for any model (docs/quality.md).
# TRUTH_MIN / DENOISE_MIN / DISTILL_MIN change the phases' minutes (a CPU smoke run: DEVICE=cpu TRUTH_MIN=0.2 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/gpu-train-out}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c 'import platformdirs' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/platformdirs-*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
DATA="${DATA_DIR:-/tmp/gpu-train-data}"
mkdir -p "$DATA"
tar -xf gpu_data/train.tar -C "$DATA"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
RECIPE="${RECIPE:-truth}"
INIT=()
if [ "$RECIPE" = distill ] && [ -f gpu_data/teacher-init.pt ]; then
  INIT=(--init gpu_data/teacher-init.pt --student-init "${STUDENT_INIT:-default}")
elif [ -n "${INIT_MODEL:-}" ]; then
  INIT=(--init "$INIT_MODEL")
fi
if [ -n "${EDIT_MARGIN:-}" ]; then INIT+=(--edit-margin "$EDIT_MARGIN"); fi
timeout 540 "$PY" benchmarks/gpu_train.py "$DATA/data" "$OUT" --recipe "$RECIPE" --device "${DEVICE:-cuda}" \
  ${INIT[@]+"${INIT[@]}"} --truth-minutes "${TRUTH_MIN:-7.5}" --denoise-minutes "${DENOISE_MIN:-5}" \
  --distill-minutes "${DISTILL_MIN:-2.5}" --workers "${WORKERS:-16}" --target-motion "${TARGET_MOTION:-landmarks}"
ls -la "$OUT"
