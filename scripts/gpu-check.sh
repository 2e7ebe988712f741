#!/bin/bash
# One device call on a GPU machine: the CUDA test suite, the seed example, the benchmark, and the
# PyTorch/JAX anchors, then a table of ratios (ours / theirs). Logs and JSON go to $OUT.
# Prepare on the development machine first (from the repo root):
#   bash scripts/gpu-pack.sh   (../shared/gpu/pack.sh of the three projects, other platforms trimmed)
# then run through the device tool with carry [".gpu"]:  bash scripts/gpu-check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
LOGS=$(mktemp -d)   # everything lands here; $OUT gets a tarball, the JSON and the ratio table
mkdir -p "$OUT"
source .gpu/env.sh
export AUTOGRAD_DEVICE=${AUTOGRAD_DEVICE:-cuda} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"

step() { local name=$1 limit=$2; shift 2; echo "=== $name"; local t0=$(date +%s)
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  echo "=== $name rc=$rc ($(( $(date +%s) - t0 )) s)"; tail -n "${TAILN:-15}" "$LOGS/$name.log"; }

TAILN=2 step tests 240 dotnet .gpu/Autograd.Tests/Autograd.Tests.dll
grep -A4 -E "\[FAIL\]" "$LOGS/tests.log" | head -60
TAILN=9 step example 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll
TAILN=3 step example-eager 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --eager
step bench 260 dotnet .gpu/Autograd.Bench/Autograd.Bench.dll --device "$AUTOGRAD_DEVICE" --json "$LOGS/bench.json"
[ "${SKIP_ANCHORS:-0}" = 1 ] || { TAILN=20 step torch 150 python3 .gpu/torch_seed.py; TAILN=8 step jax 150 python3 .gpu/jax_seed.py; }
python3 scripts/ratios.py "$LOGS" | tee "$LOGS/ratios.txt"
cp "$LOGS/bench.json" "$LOGS/ratios.txt" "$OUT/" 2>/dev/null
tar -C "$LOGS" -czf "$OUT/logs.tgz" .
