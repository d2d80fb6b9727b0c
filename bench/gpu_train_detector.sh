#!/usr/bin/env bash
# Train the detector on a GPU machine that has torch but not smokewatch's other dependencies
# (a lent machine with a bare image), from a job `smokewatch train detector --pack` wrote here:
#
#   smokewatch train detector --data synth-train --data ../shared/data/train-real/fire-and-smoke-ccby:1 \
#       --model pipeline/bundles/default --finetune --pack .gpu/job.tgz        # here
#   JOB=.gpu/job.tgz OUT=/tmp/detector-job bench/gpu_train_detector.sh --hours 0.105   # there
#   smokewatch train detector --adopt /tmp/detector-job --model pipeline/bundles/default --out candidate/   # here
#
# Arguments after the script's name go to `python -m training.detector_job run` (--hours, --epochs,
# --batch, --workers, --device). Installs nothing from the network: when ultralytics is missing,
# its wheels in $WHEELS (default .whl/: ultralytics and ultralytics-thop, see pyproject.toml for the
# version) are installed with --no-index into a temporary folder. Writes under $OUT: detector.pt,
# best.pt, results.csv, result.json (what --adopt reads) and train.log.
#
# On this workplace's lent GPU machines a call carries 64 MiB, repository, wheels and job together:
# on 2026-12-05 the tracked tree was 44 MiB and the ultralytics wheels 1.4 MiB, so the job must stay
# under about 18 MiB (the 2026-12-04 job, 29 MB, travelled when the tree was smaller); pack fewer
# frames or real images (--frames-per-clip, --max-real) until it does.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${JOB:?set JOB to the .tgz that smokewatch train detector --pack wrote}"
: "${OUT:?set OUT to the folder the results are written into}"
JOB=$(cd "$(dirname "$JOB")" && pwd)/$(basename "$JOB")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
export SMOKEWATCH_HOME=${SMOKEWATCH_HOME:-/tmp/smokewatch-home}

if ! "$PY" -c "import ultralytics" 2>/dev/null; then
  WHEELS=${WHEELS:-$ROOT/.whl}
  compgen -G "$WHEELS/*.whl" >/dev/null || { echo "gpu_train_detector: $PY lacks ultralytics; put its wheels in \$WHEELS (default .whl/)" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/smokewatch-site "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/smokewatch-site"
fi
"$PY" -m training.detector_job run "$JOB" "$OUT" "$@" 2>&1 | tee "$OUT/train.log"
