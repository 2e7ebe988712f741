#!/bin/bash
# One device call on a GPU machine: the CUDA test suite, the seed example, the benchmark, and the
# PyTorch/JAX anchors, then a table of ratios (ours / theirs). Logs and JSON go to $OUT.
# Prepare on the development machine first (from the repo root):
#   bash scripts/gpu-pack.sh   (../shared/gpu/pack.sh of the three projects, other platforms trimmed)
# then run through the device tool with carry [".gpu"]:  bash scripts/gpu-check.sh
# QUICK=1: a second call's check after a default changed (~2 minutes with the anchors): no test suite,
# the example once, the anchors, and the bench's headline figures only (--headline).
# SKIP_ANCHORS=1 leaves out PyTorch and JAX; NCU=1 adds Nsight Compute on the seed step (gpu-ncu.sh).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
# The device tool brings back at most 8 files from $OUT, so the logs are written to LOGS as they are
# made and packed into $OUT/logs.tgz every 20 s and at the end: a call cut short still brings back
# what ran.
LOGS=${LOGS:-/tmp/gpu-logs}
mkdir -p "$LOGS" "$OUT"
snap() { tar -C "$LOGS" -czf "$OUT/.logs.tgz" . 2>/dev/null && mv -f "$OUT/.logs.tgz" "$OUT/logs.tgz"; }
( while sleep 20; do snap; done ) &
SNAPPER=$!
# The whole call stays within BUDGET seconds (the device tool allows 600 a call): each step's limit
# is cut to what is left, and a step with under 10 s left is skipped.
DEADLINE=$(( $(date +%s) + ${BUDGET:-540} ))
source .gpu/env.sh
export AUTOGRAD_DEVICE=${AUTOGRAD_DEVICE:-cuda} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"

step() { local name=$1 limit=$2; shift 2; local t0=$(date +%s) left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "=== $name skipped: ${left} s left of the budget"; return; fi
  echo "=== $name (limit $limit s)"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  echo "=== $name rc=$rc ($(( $(date +%s) - t0 )) s)"; tail -n "${TAILN:-15}" "$LOGS/$name.log"; }

# The CUDA suite in SHARDS processes at once, each a share of the test methods. The suite runs its
# tests one at a time (they share a device's settings), so one process left 15 of the machine's 16
# cores idle (151 s, run 6); processes share the GPU but no state, and these tests check results,
# not times. Methods are dealt heaviest first, each to the shard with the least time so far, by
# their times in scripts/test-times.tsv (a method not listed counts 1 s). Each shard writes xUnit
# XML with every test's time; the call leaves the times file they make in $LOGS/test-times.tsv
# (scripts/test-shards.py), to copy over scripts/test-times.tsv when the suite has changed much.
# -longRunning 60 names in a shard's log any test still running after a minute: a hung kernel's test
# (a shard killed by its limit writes no XML).
tests_sharded() { local limit=$1 t0=$(date +%s) left=$(( DEADLINE - $(date +%s) )) pids=() i
  (( left < limit )) && limit=$left
  echo "=== tests in ${SHARDS:-4} shards (limit $limit s)"
  # Tests marked [CpuOnly] (trait Device=CpuOnly) never run a kernel on the test device (CPU simulators,
  # PTX and ptxas offline): CI runs them on every commit, so the call leaves them out (FULL_SUITE=1
  # keeps them).
  local only=(-trait- "Device=CpuOnly"); [ "${FULL_SUITE:-0}" = 1 ] && only=()
  dotnet .gpu/Autograd.Tests/Autograd.Tests.dll -list methods -noColor "${only[@]}" 2>/dev/null | grep '^AutogradNet\.' > "$LOGS/methods.txt"
  python3 scripts/test-shards.py deal "$LOGS/methods.txt" scripts/test-times.tsv "${SHARDS:-4}" "$LOGS"
  for (( i = 0; i < ${SHARDS:-4}; i++ )); do
    mapfile -t args < "$LOGS/shard-$i.args"
    timeout "$limit" dotnet .gpu/Autograd.Tests/Autograd.Tests.dll -noColor -longRunning 60 "${args[@]}" -xml "$LOGS/tests-$i.xml" > "$LOGS/tests-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}"; echo "=== tests shard $i rc=$?"; grep -h "Total:" "$LOGS/tests-$i.log"; done
  echo "=== tests ($(wc -l < "$LOGS/methods.txt") methods) done in $(( $(date +%s) - t0 )) s"
  cat "$LOGS"/tests-*.log > "$LOGS/tests.log"; }
if [ "${QUICK:-0}" != 1 ]; then
  tests_sharded 240
  # Where the suite's time goes on this machine (per class, and the slowest tests), and the times file.
  python3 scripts/test-shards.py times --keep scripts/test-times.tsv "$LOGS"/tests-*.xml > "$LOGS/test-times.tsv"
  grep -A4 -E "\[FAIL\]" "$LOGS/tests.log" 2>/dev/null | head -60
  # A kernel that faults on the card loses its shard's CUDA context, and every CUDA test after it in that
  # shard fails with the same error. Those methods (not the first) run again in one process, so the call
  # says which of them pass (rerun-tests.log).
  python3 scripts/test-shards.py rerun "$LOGS"/tests-*.xml > "$LOGS/rerun.args"
  if [ -s "$LOGS/rerun.args" ]; then
    mapfile -t args < "$LOGS/rerun.args"
    TAILN=4 step rerun-tests 90 dotnet .gpu/Autograd.Tests/Autograd.Tests.dll -noColor -longRunning 60 "${args[@]}" -xml "$LOGS/rerun-tests.xml"
    grep -A4 -E "\[FAIL\]" "$LOGS/rerun-tests.log" 2>/dev/null | head -30
  fi
fi
TAILN=9 step example 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll
if [ "${QUICK:-0}" != 1 ]; then
  TAILN=3 step example-eager 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --eager
  # The same training as one persistent kernel a step: the same losses are expected, and its time.
  TAILN=9 step example-persistent 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --persistent
  # And with the chain tails (y, its loss and dH in h's launch): the same losses within float rounding.
  TAILN=12 step example-chain 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --chain --describe
  # And with row chains too (h, y with its loss and dH block of rows by block in one launch): 2 launches.
  TAILN=12 step example-rows 60 dotnet .gpu/TwoLayerNet/TwoLayerNet.dll --rows --chain --describe
fi
# The anchors (~20 s each) before the bench, which takes what is left of the budget: a bench that
# runs long must not cost the comparison.
[ "${SKIP_ANCHORS:-0}" = 1 ] || { TAILN=20 step torch 150 python3 .gpu/torch_seed.py; TAILN=8 step jax 150 python3 .gpu/jax_seed.py; }
# NCU=1: Nsight Compute on the seed step's launches (scripts/gpu-ncu.sh), before the bench (each of its
# two runs within NCU_LIMIT, 90 s unless set).
[ "${NCU:-0}" = 1 ] && TAILN=100 step ncu 200 bash scripts/gpu-ncu.sh "$LOGS"
# The bench in parts (scripts/bench-resume.sh): a unit that breaks the CUDA context (a kernel run here
# for the first time faulting) or runs past 90 s ends its process, and the next part starts from the
# unit after it, so it costs its own rows and not every row after it. bench.json gathers the parts.
export DEADLINE
# Autotuning launches every candidate kernel; if one breaks the CUDA context, every unit that tunes its
# shape breaks it again: after 3 such parts the loop gives up (exit 3), and the bench runs again with
# the rule's kernels only, in what is left of the budget.
HEADLINE=(); [ "${QUICK:-0}" = 1 ] && HEADLINE=(--headline)
if ! bash scripts/bench-resume.sh "$LOGS" bench 400 -- dotnet .gpu/Autograd.Bench/Autograd.Bench.dll --device "$AUTOGRAD_DEVICE" --unit-limit 90 "${HEADLINE[@]}"; then
  echo "=== the bench lost the device 3 times; again without autotuning"
  AUTOGRAD_AUTOTUNE=0 bash scripts/bench-resume.sh "$LOGS" bench-rule 300 -- dotnet .gpu/Autograd.Bench/Autograd.Bench.dll --device "$AUTOGRAD_DEVICE" --unit-limit 90 "${HEADLINE[@]}"
fi
python3 scripts/ratios.py "$LOGS" | tee "$LOGS/ratios.txt"
cp "$LOGS/bench.json" "$LOGS/ratios.txt" "$OUT/" 2>/dev/null
kill "$SNAPPER" 2>/dev/null; wait "$SNAPPER" 2>/dev/null
snap
