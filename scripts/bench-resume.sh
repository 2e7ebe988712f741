#!/bin/bash
# Runs the bench as many times as it takes to reach its last unit, within LIMIT seconds in all.
# A part that stops at a unit goes on in a new process from the unit after it (Units.cs says why):
# exit 3 with "RESUME FROM UNIT n", the unit left the CUDA context unusable; exit 4, it ran past
# --unit-limit; a crash without that line, the unit in the progress file. A part killed by the time
# limit ends it. Every part adds its rows to NAME.json; its log is NAME.log, then NAME-from-n.log.
# Usage: bash scripts/bench-resume.sh LOGS NAME LIMIT -- dotnet .../Autograd.Bench.dll [options]
# DEADLINE (epoch seconds), if set, cuts LIMIT to what is left of the caller's budget. After MAX_LOST
# parts (3 unless set) have lost the device, the loop stops: a kernel candidate that faults while
# autotuning breaks the context in every unit that tunes its shape, and gpu-check.sh then runs the
# bench without autotuning instead of paying a restart a unit. This script's exit code is 3 then, else 0.
set -uo pipefail
logs=$1 name=$2 limit=$3
shift 3
[ "${1:-}" = -- ] && shift
end=$(( $(date +%s) + limit ))
(( ${DEADLINE:-$end} < end )) && end=$DEADLINE
from=0 lost=0
rm -f "$logs/$name.json" "$logs/$name.at"
while :; do
  left=$(( end - $(date +%s) ))
  part=$name; (( from > 0 )) && part=$name-from-$from
  if (( left < 10 )); then echo "=== $part skipped: ${left} s left of the budget"; break; fi
  echo "=== $part (limit $left s)"
  t0=$(date +%s)
  timeout "$left" "$@" --from "$from" --json "$logs/$name.json" --progress "$logs/$name.at" > "$logs/$part.log" 2>&1
  rc=$?
  echo "=== $part rc=$rc ($(( $(date +%s) - t0 )) s)"
  tail -n "${TAILN:-15}" "$logs/$part.log"
  next=$(grep -oE "^RESUME FROM UNIT [0-9]+" "$logs/$part.log" | tail -n 1 | awk '{print $4}')
  # Killed by the limit (124), or finished (0, or 1 when some workload failed): nothing to resume.
  if [ -z "$next" ] && (( rc != 0 && rc != 1 && rc != 2 && rc != 124 )) && [ -s "$logs/$name.at" ]; then
    next=$(( $(cut -f1 "$logs/$name.at") + 1 ))
    echo "=== $part ended (rc=$rc) in unit $(cut -f1 "$logs/$name.at"); going on from unit $next"
  fi
  [ -z "$next" ] && break
  if (( rc == 3 )) && (( ++lost >= ${MAX_LOST:-3} )); then echo "=== $part: the device was lost $lost times; stopping"; exit 3; fi
  if (( next <= from )); then echo "=== $part made no progress (unit $next); stopping"; break; fi
  from=$next
done
