#!/usr/bin/env bash
# The GPU checks in one script (at most ~8 minutes on one H200), from the repository root:
#
#   bash benchmarks/gpu/run.sh               # on a GPU machine
#   bash benchmarks/gpu/run.sh --cpu-smoke   # every stage at toy size on CPU (CI runs this)
#
# One JSON line per stage on stdout ({"stage": ..., "status": ...}), also appended to
# $OUT/gpu_bench.jsonl when OUT is set; exit status 1 when a stage failed.
#
# On a GPU machine the Python ($PYTHON, default python3) must already have torch, triton
# and transformers; every other package comes as a wheel in .whl/ (benchmarks/gpu/wheels.txt
# lists them; README "GPU checks" says how to make the folder), installed with
#   pip install --no-index --no-deps --target .gpu-deps .whl/*.whl
# A missing wheel stops the script before any stage, naming the package and the command
# that makes its wheel. --cpu-smoke uses .venv (make .venv/.flanforge-installed) as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=""
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke="--cpu-smoke" ;;
    *) echo "usage: bash benchmarks/gpu/run.sh [--cpu-smoke]" >&2; exit 2 ;;
  esac
done

if [[ -n "$smoke" ]]; then
  PYTHON="${PYTHON:-.venv/bin/python}"
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  export CUDA_VISIBLE_DEVICES=""  # the smoke run is the CPU path, also on a machine with a GPU
else
  PYTHON="${PYTHON:-python3}"
  "$PYTHON" benchmarks/gpu/deps.py --wheels .whl --target .gpu-deps
  export PYTHONPATH="$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" benchmarks/gpu/stages.py $smoke
