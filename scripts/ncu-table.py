#!/usr/bin/env python3
"""One line per profiled launch from Nsight Compute's details page (scripts/gpu-ncu.sh's ncu-*.txt):
its duration, elapsed cycles, the SMs' active cycles averaged over all SMs (and that as a share of the
elapsed: how idle the card was), achieved occupancy, cycles between a warp's instructions, L2 hit rate,
and the instructions a warp executed (InstructionStats' total over the launch's warps).
Usage: python3 scripts/ncu-table.py ncu-tiled.txt [ncu-warp.txt ...] [--last N]  (default: the last 9)"""
import re
import sys

args = sys.argv[1:]
last = 9
if "--last" in args:
    i = args.index("--last")
    last = int(args[i + 1])
    del args[i:i + 2]
METRICS = [("dur", "Duration"), ("el", "Elapsed Cycles"), ("act", "SM Active Cycles"), ("occ", "Achieved Occupancy"),
           ("cpi", "Warp Cycles Per Issued Instruction"), ("l2", "L2 Hit Rate"), ("inst", "Executed Instructions")]
for path in args:
    print("==", path)
    launches, cur = [], None
    for line in open(path, errors="replace"):
        m = re.match(r"^  (\w+) \(([^)]*)\)x\(([^)]*)\)", line)
        if m:
            cur = {"name": m.group(1), "grid": m.group(2).replace(" ", ""), "block": m.group(3).replace(" ", "")}
            launches.append(cur)
            continue
        if cur is None:
            continue
        for key, label in METRICS:
            if line.strip().startswith(label) and key not in cur:
                cur[key] = line.split()[-1].replace(",", "")
    for k in launches[-last:]:
        el, act = float(k.get("el", 0)), float(k.get("act", 0))
        share = f"{act / el * 100:4.1f}%" if el else "  -  "
        warps = 1
        for d in k["grid"].split(",") + k["block"].split(","):
            warps *= int(d or 1)
        warps = max(1, warps // 32)
        inst = f"  inst/warp {float(k['inst']) / warps:.0f}" if k.get("inst") else ""
        print(f"{k['name']:<28}{k['grid']:>10}  {k.get('dur', '-'):>7} us  elapsed {el:>7.0f}  SM active (avg) {act:>7.0f} ({share})"
              f"  occupancy {k.get('occ', '-')}%  cycles/issue {k.get('cpi', '-')}  L2 hit {k.get('l2', '-')}%{inst}")
