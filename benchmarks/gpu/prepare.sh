#!/usr/bin/env bash
# Build the folder that travels to the GPU machine beside the working tree (git-ignored):
#   .gpu-carry/wheels/  wheels for CPython 3.12, manylinux x86-64, of every package medseg needs at
#                       run time that the machine's image lacks (benchmarks/gpu/closure.py), never torch
#   .gpu-carry/data/    ct/totalsegmentator-example (the real CT DICOM series, its label, the 3 mm
#                       NIfTI case) and ph2-isic-layout (PH2, 150 cases), copied from ../shared/data
# then print its size with the tree's against the device tool's 64 MiB limit, and fail if over.
#
#   benchmarks/gpu/prepare.sh [--python PY] [--data DIR]
#
# PY (default: .venv/bin/python, else /work/main/.venv/bin/python, else python3) must have medseg's
# dependencies installed: the versions carried are the ones it has. DIR defaults to ../shared/data.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY="$ROOT/.gpu-carry"
DATA="$ROOT/../shared/data"
LIMIT=$((64 * 1024 * 1024))
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown argument $1 (expected --python PY or --data DIR)" >&2; exit 1 ;;
  esac
done
if [ -z "$PY" ]; then
  for candidate in "$ROOT/.venv/bin/python" /work/main/.venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
for needed in "$DATA/ct/totalsegmentator-example/dicom" "$DATA/ph2-isic-layout/metadata.csv"; do
  [ -e "$needed" ] || { echo "prepare.sh: $needed not found; give the shared data folder with --data DIR" >&2; exit 1; }
done

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/data/ct"

# wheels: one version of each (two stop the whole install there)
mapfile -t PACKAGES < <("$PY" "$ROOT/benchmarks/gpu/closure.py")
PLATFORMS=()
for n in 17 24 27 28 31 34 35 39; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
echo "wheels for CPython 3.12 manylinux x86-64: ${PACKAGES[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$CARRY/wheels" "${PACKAGES[@]}" 2>&1 | grep -v "is ignored" || true
got=$(find "$CARRY/wheels" -name '*.whl' | wc -l)
if [ "$got" -ne "${#PACKAGES[@]}" ]; then
  echo "prepare.sh: ${#PACKAGES[@]} packages asked for, $got wheels downloaded into $CARRY/wheels" >&2
  exit 1
fi
echo "MLflow is not carried: benchmarks/gpu/run.sh runs every study with tracking.enabled=false"

# data: copies, not links (a link travels only as a link)
cp -r "$DATA/ct/totalsegmentator-example" "$CARRY/data/ct/"
cp -r "$DATA/ph2-isic-layout" "$CARRY/data/"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
wheels=$(du -sb "$CARRY/wheels" | cut -f1)
data=$(du -sb "$CARRY/data" | cut -f1)
tree=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + data + tree))
echo "carry .gpu-carry: wheels $(mib "$wheels") ($got packages), data $(mib "$data") (CT series and labels, PH2 150 cases)"
echo "working tree (tracked and untracked, not ignored) $(mib "$tree")"
echo "total $(mib "$total") of the 64 MiB limit ($((100 * total / LIMIT))%)"
if [ "$total" -gt "$LIMIT" ]; then
  echo "prepare.sh: over the 64 MiB limit by $(mib $((total - LIMIT))); carry less (fewer PH2 images, or re-encode them)" >&2
  exit 1
fi
echo "run on the GPU machine: carry [\".gpu-carry\"], command: benchmarks/gpu/run.sh \$OUT"
