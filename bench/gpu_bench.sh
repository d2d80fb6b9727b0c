#!/usr/bin/env bash
# Every GPU speed check of issue 7, in one go, results written under $OUT:
#
#   OUT=/tmp/gpu-bench bench/gpu_bench.sh
#
# 1. pytest -m gpu tests/pipeline/test_gpu.py tests/training/test_training.py: float32 on CUDA gives
#    the CPU's answers, half precision runs, clips batched together give each clip's own answers,
#    ONNX Runtime gives PyTorch's answers on the GPU box, and `train verifier --device cuda` trains
#    there and writes a bundle the CPU runs;
# 2. smokewatch bench --config all --device cuda: the paper configuration (YOLOv3 yolov3u.yaml at
#    416, ResNet50 at 224, all six heads; random weights) and the shipped default bundle (or its
#    architecture with random weights), on synthetic 1920x1080 H.264 clips, every frame processed,
#    against the naive per-frame loop on the same GPU in the same run;
# 3. smokewatch bench --config default --backend onnx: ONNX Runtime on this box (its CUDA provider
#    when onnxruntime-gpu is installed, else its CPU provider; the JSON says which);
# 4. summary.md: the figures and the issue's targets (paper config >= 500 frames/s end to end and
#    >= 10x the naive loop).
#
# Installs nothing from the network. Python: $PYTHON, else the project's .venv, else python3. If
# packages smokewatch needs are missing there, wheels in $WHEELS (default .whl/ in the repository)
# are installed with --no-index into a temporary folder; without them the script stops and names
# what is missing. Missing onnx/onnxruntime only skips the ONNX parts, missing pytest the tests.
#
# Where it can run: a machine with smokewatch's dependencies, or one whose missing packages come as
# wheels. This workplace's lent GPU machines (bare image: torch, torchvision, OpenCV, no PyAV,
# pydantic or ultralytics) take 64 MiB a call, repository and wheels together; on 2026-12-05 the
# tracked tree was 44 MiB (the default bundle with its ONNX exports) and PyAV's wheel alone 34 MiB,
# so PyAV cannot travel there and the script stops, naming av as missing. bench/gpu_train_detector.sh
# needs only ultralytics (1.4 MiB) beside its job, which must then stay under about 18 MiB.
#
# Knobs (environment): FRAMES (160 per clip), CLIPS (4 run at once), BATCH (16 frames per chunk
# and clip), NAIVE_FRAMES (48), REPEATS (3), SIZE (1920x1080), DEVICE (cuda; `DEVICE=cpu FRAMES=4
# CLIPS=1 BATCH=4 NAIVE_FRAMES=2 REPEATS=1 SIZE=320x192` rehearses the script without a GPU).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${OUT:?set OUT to the folder the results are written into}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu_bench.log") 2>&1
cd "$ROOT"

export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
export PIP_NO_INDEX=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
export SMOKEWATCH_HOME=${SMOKEWATCH_HOME:-$OUT/.smokewatch-home}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-160} CLIPS=${CLIPS:-4} BATCH=${BATCH:-16} NAIVE_FRAMES=${NAIVE_FRAMES:-48} REPEATS=${REPEATS:-3} SIZE=${SIZE:-1920x1080}

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c "import torch" 2>/dev/null; then PY="$ROOT/.venv/bin/python"
else PY=python3
fi
missing() {
  "$PY" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "$@"
}
NEEDED="torch torchvision ultralytics av cv2 PIL numpy pydantic pydantic_settings yaml tqdm matplotlib"
absent=$(missing $NEEDED onnx onnxruntime pytest)
if [ -n "$absent" ] && compgen -G "${WHEELS:-$ROOT/.whl}/*.whl" >/dev/null; then
  echo "== installing local wheels from ${WHEELS:-$ROOT/.whl} (no network) for: $absent"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/smokewatch-site "${WHEELS:-$ROOT/.whl}"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/smokewatch-site"
fi
absent=$(missing $NEEDED)
[ -z "$absent" ] || { echo "gpu_bench: $PY lacks: $absent; put their wheels in \$WHEELS (default .whl/) and run again" >&2; exit 2; }
HAVE_ONNX=1; [ -z "$(missing onnx onnxruntime)" ] || HAVE_ONNX=0
HAVE_PYTEST=1; [ -z "$(missing pytest)" ] || HAVE_PYTEST=0

SUMMARY="$OUT/summary.md"
{
  echo "# smokewatch GPU benchmark"
  echo
  echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  "$PY" - "$DEVICE" <<'EOF'
import os, sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), device {sys.argv[1]}, {os.cpu_count()} CPU cores")
if sys.argv[1].startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_bench: torch sees no CUDA device; this script measures the GPU")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF
} | tee "$SUMMARY"
[ "${PIPESTATUS[0]}" = 0 ] || exit 2
if [[ $DEVICE == cuda* ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee -a "$SUMMARY"
fi

status=0
echo "== 1. GPU tests"
if [ "$HAVE_PYTEST" = 1 ] && [[ $DEVICE == cuda* ]]; then
  "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/pipeline/test_gpu.py tests/training/test_training.py --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log"
  tests=${PIPESTATUS[0]}
  { echo; echo "## GPU tests (tests/pipeline/test_gpu.py, tests/training/test_training.py): exit status $tests"; echo; tail -n 3 "$OUT/gpu_tests.log" | sed 's/^/    /'; } >> "$SUMMARY"
  [ "$tests" = 0 ] || status=1
else
  echo "(skipped: pytest missing or not a CUDA run)" | tee -a "$SUMMARY"
fi

echo "== 2. smokewatch bench --config all --device $DEVICE"
"$PY" -m service.cli bench --config all --device "$DEVICE" --frames "$FRAMES" --clips "$CLIPS" --batch-frames "$BATCH" --size "$SIZE" \
  --naive-frames "$NAIVE_FRAMES" --repeats "$REPEATS" --json "$OUT/bench_torch.json" | tee "$OUT/bench_torch.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { status=1; echo "gpu_bench: the torch benchmark failed" | tee -a "$SUMMARY"; }

if [ "$HAVE_ONNX" = 1 ]; then
  echo "== 3. smokewatch bench --config default --backend onnx --device $DEVICE"
  "$PY" -m service.cli bench --config default --backend onnx --device "$DEVICE" --frames "$FRAMES" --clips 1 --size "$SIZE" \
    --naive-frames "$NAIVE_FRAMES" --repeats 1 --json "$OUT/bench_onnx.json" | tee "$OUT/bench_onnx.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || { status=1; echo "gpu_bench: the ONNX benchmark failed" | tee -a "$SUMMARY"; }
else
  echo "(ONNX benchmark skipped: onnx/onnxruntime not installed)" | tee -a "$SUMMARY"
fi

echo "== 4. summary"
"$PY" - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("bench_torch", "bench_onnx"):
    file = out / f"{name}.json"
    if not file.exists():
        continue
    report = json.loads(file.read_text())
    print(f"\n## {name}.json ({report['environment'].get('gpu') or 'CPU'}; onnxruntime {report['environment'].get('onnxruntime')})\n")
    print("| config | backend | models | frames | frames/s | s/frame | peak memory GiB | naive frames/s | ratio | same windows |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        m = r["model"]
        print(f"| {r['config']} | {r['backend']} | {m['detector']} + {m['extractor']}, {len(m['heads'])} heads | {r['frames']} "
              f"| {r['frames_per_s']:.1f} | {r['s_per_frame']:.5f} | {r['peak_memory_bytes'] / 2**30:.2f} "
              f"| {r['naive']['frames_per_s']:.2f} | {r['ratio_vs_naive']:.1f}x | {r['same_windows_as_naive']} |")
    for r in report["results"]:
        if r["config"] == "paper" and r["backend"] == "torch":
            fps, ratio = r["frames_per_s"], r["ratio_vs_naive"]
            print(f"\ntarget, paper config: >= 500 frames/s end to end: {fps:.1f} -> {'MET' if fps >= 500 else 'NOT MET'}; "
                  f">= 10x the naive loop: {ratio:.1f}x -> {'MET' if ratio >= 10 else 'NOT MET'}")
            print(f"(lecture: 0.143 s/frame; this run: {r['s_per_frame']:.5f} s/frame, {0.143 / r['s_per_frame']:.3g}x the lecture's speed)")
EOF
rm -rf "$OUT/.smokewatch-home"
echo "== done (status $status): $SUMMARY, $OUT/bench_*.json, $OUT/gpu_tests.*"
exit $status
