#!/bin/bash
# Where a seed step's kernels spend their microseconds, by Nsight Compute on the GPU machine (its
# image has ncu; it reads the hardware counters on the Firecracker runtime, not on gVisor). Each
# launch of the example's compiled step, 3 steps, is profiled on its own (the sections below), with
# the clocks left as they are. Autotuning is off so that only the step's launches (and the few of
# its setup) are profiled: the product kernels are pinned, one form a run (PATHS, default "tiled
# warp"). The step's launches are the last ones of each report. A second run per form writes the
# raw stall reasons as CSV.
# Usage (after gpu-check.sh's setup, on the GPU machine): bash scripts/gpu-ncu.sh [LOGS]
set -uo pipefail
LOGS=${1:-${LOGS:-/tmp/gpu-logs}}
mkdir -p "$LOGS"
source .gpu/env.sh > /dev/null
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -n 1)
if [ -z "$NCU" ]; then echo "=== ncu: not found"; exit 0; fi
for path in ${PATHS:-tiled warp}; do
  echo "=== ncu, products on $path (limit ${NCU_LIMIT:-90} s)"
  t0=$(date +%s)
  AUTOGRAD_DEVICE=cuda AUTOGRAD_AUTOTUNE=0 AUTOGRAD_MATMUL=$path timeout "${NCU_LIMIT:-90}" "$NCU" --clock-control none \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section InstructionStats --launch-count "${NCU_LAUNCHES:-200}" \
    dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --steps 3 > "$LOGS/ncu-$path.txt" 2>&1
  echo "=== ncu $path rc=$? ($(( $(date +%s) - t0 )) s), $(grep -c 'Duration' "$LOGS/ncu-$path.txt") kernels profiled"
  # The last launches (the step's): duration, the SMs' active share, occupancy, L2 hits, and the
  # instructions a warp executed (InstructionStats: a small product's group is bound by how many it
  # runs one after another, run 12).
  python3 scripts/ncu-table.py "$LOGS/ncu-$path.txt"
  # Why the warps wait: the details page gives only cycles per issue; the raw page of the same section
  # lists each stall reason (run 10 did not have this). One CSV line a launch.
  echo "=== ncu stall reasons, products on $path"
  AUTOGRAD_DEVICE=cuda AUTOGRAD_AUTOTUNE=0 AUTOGRAD_MATMUL=$path timeout "${NCU_LIMIT:-90}" "$NCU" --clock-control none \
    --section WarpStateStats --section SchedulerStats --page raw --csv --launch-count "${NCU_LAUNCHES:-200}" \
    dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --steps 3 > "$LOGS/ncu-$path-stalls.csv" 2>&1
  echo "=== ncu stalls $path rc=$?, $(grep -c '^"' "$LOGS/ncu-$path-stalls.csv") lines"
done
