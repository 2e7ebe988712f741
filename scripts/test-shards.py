"""Deals test methods to shards, heaviest first, each to the shard with the least time so far.
Usage: deal-tests.py METHODS TIMES SHARDS I  (prints shard I's methods as xUnit arguments, one per line:
-method, then the name). METHODS: one full method name a line; TIMES: name<TAB>seconds (# comments)."""
import sys

methods_file, times_file, shards, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
times = {}
try:
    for line in open(times_file):
        if line.strip() and not line.startswith("#"):
            name, seconds = line.rstrip("\n").split("\t")
            times[name] = float(seconds)
except FileNotFoundError:
    pass
methods = [m.strip() for m in open(methods_file) if m.strip()]
load = [0.0] * shards
mine = []
# Ties broken by name, so every shard's process deals the same hands.
for m in sorted(methods, key=lambda m: (-times.get(m, 1.0), m)):
    s = min(range(shards), key=lambda i: (load[i], i))
    load[s] += times.get(m, 1.0)
    if s == index:
        mine.append(m)
for m in mine:
    print("-method")
    print(m)
