#!/bin/bash
# Prepares .gpu/ for scripts/gpu-check.sh: ../shared/gpu/pack.sh with the three projects, then drops
# the native assets of other platforms (SkiaSharp ships 15 of them), the example's plotting natives
# and the XML docs so the carried tree stays small.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/gpu/pack.sh Autograd.Tests/Autograd.Tests.csproj bench/Autograd.Bench/Autograd.Bench.csproj examples/TwoLayerNet/TwoLayerNet.csproj
find .gpu/*/runtimes -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} + 2>/dev/null || true
# API docs are for the IDE, not the run: ~0.5 MiB of the 64 MiB a carry may hold.
find .gpu -mindepth 2 -name '*.xml' -delete
# The example's plotting natives (SkiaSharp, HarfBuzz: 11 MiB) load only for --plot, which the GPU
# check does not pass.
rm -rf .gpu/TwoLayerNet/runtimes
du -sh .gpu
