#!/usr/bin/env bash
# The GPU check: install the carried wheels, then every figure of the GPU path within 8 minutes.
#
#   benchmarks/gpu/run.sh OUTDIR [--device cuda|cpu] [--tiny] [--only PARTS] [--carry DIR] [--python PY]
#
# Run from anywhere; on the GPU machine, after benchmarks/gpu/prepare.sh here, through the device
# tool with carry [".gpu-carry"] and the command `benchmarks/gpu/run.sh $OUT`. It installs
# DIR/wheels (default .gpu-carry/wheels) into a folder of its own with pip --no-index --no-deps and
# puts it on PYTHONPATH (on a Python other than 3.12 it only checks that they install for 3.12 and
# keeps its own packages), then runs benchmarks/gpu/figures.py on DIR/data: one `figure KEY: ...`
# line per figure on the output, figures.json and run.log (with cuda-tests.xml, ph2-plan.yaml and
# ph2-summary.json) in OUTDIR. MLflow is not carried: the PH2 study runs with tracking off, and
# benchmarks/gpu/without_mlflow makes any import of it fail here as it would there.
# --only takes parts of tests,train,predict,ph2 (for a second run of some); --tiny shrinks every
# part for a dry run on a CPU (tests/benchmarks/test_gpu_dry_run.py).
set -uo pipefail

started=$(date +%s)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
usage() { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 1; }
[ $# -ge 1 ] || usage
OUTDIR=$1; shift
DEVICE=cuda; CARRY="$ROOT/.gpu-carry"; PY=python3; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --tiny) EXTRA+=(--tiny); shift ;;
    --only) EXTRA+=(--only "$2"); shift 2 ;;
    --carry) CARRY=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
done
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/run.log"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
[ -d "$CARRY/data" ] || { say "run.sh: $CARRY/data not found; run benchmarks/gpu/prepare.sh first and carry .gpu-carry"; exit 1; }

SITE=""
shopt -s nullglob
wheels=("$CARRY"/wheels/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  say "wheels: none in $CARRY/wheels; this Python's own packages are used"
else
  site=$(mktemp -d "${TMPDIR:-/tmp}/medseg-gpu-site-XXXXXX")
  t0=$(date +%s)
  pip=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site")
  version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$version" = 3.12 ]; then
    "${pip[@]}" "${wheels[@]}" >>"$LOG" 2>&1 || { say "run.sh: the carried wheels do not install (see $LOG)"; exit 1; }
    SITE=$site
    say "wheels: ${#wheels[@]} installed into $site in $(( $(date +%s) - t0 )) s"
  else
    platforms=()
    for n in 17 24 27 28 31 34 35 39; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    "${pip[@]}" --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
      --platform manylinux2014_x86_64 "${wheels[@]}" >>"$LOG" 2>&1 \
      || { say "run.sh: the carried wheels do not install for CPython 3.12 (see $LOG)"; exit 1; }
    say "wheels: ${#wheels[@]} install for CPython 3.12 (checked in $site); Python $version keeps its own packages"
    rm -rf "$site"
  fi
fi

export PYTHONPATH="$ROOT/benchmarks/gpu/without_mlflow:$ROOT${SITE:+:$SITE}"
cd "$ROOT"
"$PY" benchmarks/gpu/figures.py "$OUTDIR" --data "$CARRY/data" --device "$DEVICE" --started "$started" "${EXTRA[@]}" \
  2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
[ -n "$SITE" ] && rm -rf "$SITE"
exit "$status"
