#!/usr/bin/env bash
# Table 7-1 on a GPU, in one go: `smokewatch evaluate` of the default bundle with --device cuda.
#
#   OUT=/tmp/gpu-eval bench/gpu_evaluate.sh                 # real-sample + a synthetic set made here
#   OUT=/tmp/gpu-eval bench/gpu_evaluate.sh DATA_DIR ...    # your own manifest folders
#
# Installs nothing from the network. Python: $PYTHON, else the project's .venv, else python3. If
# packages smokewatch needs are missing there (a bare GPU image lacks ultralytics and PyAV), wheels
# in $WHEELS (default .whl/ in the repository) are installed with --no-index into a temporary
# folder; without them the script stops and names what is missing.
#
# Model: $MODEL, else the shipped default bundle (pipeline/bundles/default). When no default bundle
# exists yet, a bundle of the default bundle's architecture (training.recipe.default_config) with
# random weights is built and evaluated
# instead, and every output says so: its s/frame figures are real, its scores mean nothing. An
# untrained detector finds nothing at the shipped confidence threshold, so that bundle runs with
# detector.conf=0: every frame then carries the most candidates the config allows (tubes.max_tracks),
# which times features and heads at their heaviest load.
#
# Everything is written under $OUT: gpu_evaluate.log, summary.md (environment and every table),
# <data>.results.json per data folder, and evaluation.tar.gz holding each full evaluation folder
# (table.md, table.csv, results.json, plots). The synthetic clips are left out of the archive:
# `smokewatch synth` makes the same clips again from the seed.
#
# Where it can run: a machine with smokewatch's dependencies, or one whose missing packages come as
# wheels. This workplace's lent GPU machines (bare image: torch, torchvision, OpenCV, no PyAV,
# pydantic or ultralytics) take 64 MiB a call, repository and wheels together; on 2026-12-05 the
# tracked tree was 44 MiB (the default bundle with its ONNX exports) and PyAV's wheel alone 34 MiB,
# so PyAV cannot travel there and the script stops, naming av as missing. bench/gpu_train_detector.sh
# needs only ultralytics (1.4 MiB) beside its job, which must then stay under about 18 MiB.
#
# Knobs (environment): SYNTH_CLIPS (32), SYNTH_SEED (424242: keep it out of training seeds),
# SYNTH_FRAMES (48), SYNTH_WORKERS (8), EVAL_ARGS (extra `smokewatch evaluate` arguments),
# DEVICE (cuda; `DEVICE=cpu MODEL=tiny_bundle SYNTH_CLIPS=2` rehearses the script without a GPU).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${OUT:?set OUT to the folder the results are written into}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_evaluate.log"
exec > >(tee -a "$LOG") 2>&1
cd "$ROOT"

export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
DEVICE=${DEVICE:-cuda}
OWN_HOME=""
if [ -z "${SMOKEWATCH_HOME:-}" ]; then OWN_HOME="$OUT/.smokewatch-home"; export SMOKEWATCH_HOME=$OWN_HOME; fi
export MPLBACKEND=Agg

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c "import torch" 2>/dev/null; then PY="$ROOT/.venv/bin/python"
else PY=python3
fi

NEEDED="torch torchvision ultralytics av cv2 PIL numpy pydantic yaml tqdm matplotlib"
missing() {
  "$PY" - "$@" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}
absent=$(missing $NEEDED)
if [ -n "$absent" ]; then
  WHEELS=${WHEELS:-$ROOT/.whl}
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu_evaluate: $PY lacks: $absent; put their wheels in \$WHEELS (default .whl/) and run again" >&2
    exit 2
  fi
  echo "== installing local wheels from $WHEELS (no network) for: $absent"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/smokewatch-site "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/smokewatch-site"
  absent=$(missing $NEEDED)
  [ -z "$absent" ] || { echo "gpu_evaluate: still missing after the wheels: $absent" >&2; exit 2; }
fi

echo "== environment"
{
  echo "# smokewatch GPU evaluation"
  echo
  echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  "$PY" - "$DEVICE" <<'EOF'
import os, sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), device {sys.argv[1]}")
if sys.argv[1].startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_evaluate: torch sees no CUDA device; this script measures GPU timings")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print(f"CPU only: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
EOF
  if [[ $DEVICE == cuda* ]] && command -v nvidia-smi >/dev/null; then
    echo
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader || true
  fi
} | tee "$OUT/summary.md"

MODEL=${MODEL:-}
UNTRAINED=0
EXTRA=()
if [ -z "$MODEL" ]; then
  if [ -f "$ROOT/pipeline/bundles/default/metadata.json" ]; then
    MODEL="$ROOT/pipeline/bundles/default"
  else
    MODEL="$OUT/work/untrained-default-bundle"
    UNTRAINED=1
    echo "== no default bundle in pipeline/bundles/default: building its architecture with random weights"
    "$PY" - "$MODEL" <<'EOF'
import sys, torch
from pipeline.bundle import ModelBundle
from pipeline.config import HEAD_NAMES
from training.recipe import default_config
torch.manual_seed(0)
ModelBundle.create(
    default_config(), heads=list(HEAD_NAMES), name="untrained-default-architecture",
    description="random weights, default architecture: for timing only; scores are meaningless",
).save(sys.argv[1])
EOF
    EXTRA=(--set detector.conf=0.0)
  fi
fi
{
  echo "model: $MODEL"
  [ "$UNTRAINED" = 1 ] && echo "**untrained bundle (random weights), run with detector.conf=0 (the most candidates per frame):" \
    "s/frame is real, Precision/Recall/F1/TPR/TNR are meaningless**"
  true
} | tee -a "$OUT/summary.md"

DATA=("$@")
if [ ${#DATA[@]} -eq 0 ]; then
  if [ -f "$ROOT/../shared/data/real-sample/manifest.csv" ]; then
    DATA+=("$ROOT/../shared/data/real-sample")
  else
    echo "== ../shared/data/real-sample is not here: evaluating the synthetic set only"
  fi
  SYNTH="$OUT/work/synth-eval"
  echo "== smokewatch synth: ${SYNTH_CLIPS:-32} clips, seed ${SYNTH_SEED:-424242}"
  "$PY" -m service.cli synth "$SYNTH" --clips "${SYNTH_CLIPS:-32}" --seed "${SYNTH_SEED:-424242}" \
    --frames "${SYNTH_FRAMES:-48}" --fps 8 --workers "${SYNTH_WORKERS:-8}" -q
  DATA+=("$SYNTH")
fi

status=0
mkdir -p "$OUT/evaluations"
for data in "${DATA[@]}"; do
  name=$(basename "$(cd "$data" && pwd)")
  dest="$OUT/evaluations/$name"
  echo "== smokewatch evaluate $data (device $DEVICE)"
  # shellcheck disable=SC2086 # EVAL_ARGS is a list of words on purpose
  if "$PY" -m service.cli evaluate "$data" --model "$MODEL" --device "$DEVICE" --out "$dest" ${EXTRA[@]+"${EXTRA[@]}"} ${EVAL_ARGS:-}; then
    { echo; echo "## $name"; echo; sed -e '1,2d' -e 's/^## /### /' "$dest/table.md"; } >> "$OUT/summary.md"
    cp "$dest/results.json" "$OUT/$name.results.json"
  else
    status=$?
    echo "gpu_evaluate: evaluation of $data failed (status $status)" | tee -a "$OUT/summary.md"
  fi
done

tar -czf "$OUT/evaluation.tar.gz" -C "$OUT" evaluations
rm -rf "$OUT/evaluations" "$OUT/work" ${OWN_HOME:+"$OWN_HOME"}
echo "== done: $OUT/summary.md, $OUT/*.results.json, $OUT/evaluation.tar.gz"
exit $status
