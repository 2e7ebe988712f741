"""The CUDA suite's shards for scripts/gpu-check.sh, and the test times they are dealt by.

  test-shards.py deal METHODS TIMES SHARDS OUTDIR
      Deals the methods (one full name a line) heaviest first, each to the shard with the least time
      so far, by TIMES (name<TAB>seconds; # comments; a method not listed counts 1 s), and writes
      OUTDIR/shard-I.args: shard I's xUnit arguments, one a line (-method, then the name).
  test-shards.py times [--keep OLD] XML... > TIMES
      Sums each method's test times from xUnit XML results into a TIMES file, and prints the time
      per class and the slowest tests to stderr. --keep OLD adds OLD's entries for the methods the
      XML does not have (the [CpuOnly] ones a GPU call leaves out), after a comment saying so.
  test-shards.py rerun XML... > ARGS
      For each shard whose tests lost the CUDA context (a kernel faulted on the card: every CUDA test
      after it then fails with the same sticky error), the xUnit arguments that run again the methods
      that failed after the first one, which is left out. Empty when no shard lost the context.
"""
import collections, re, sys, xml.etree.ElementTree as ET

# The errors that leave a CUDA context unusable (CUresult 700, 702, 710, 714-719 and their texts).
# The driver's own texts (cuGetErrorString, which ILGPU's CudaException carries), or the CUresult our
# CUDA graph calls report.
STICKY = re.compile(r"an illegal memory access was encountered|unspecified launch failure|misaligned address|"
                    r"an illegal instruction was encountered|the launch timed out and was terminated|"
                    r"device-side assert triggered|invalid program counter|hardware stack error|"
                    r"operation not supported on global/shared address space|uncorrectable ECC error encountered|"
                    r"CUresult (700|702|710|71[4-9])\b")


def deal(methods_file, times_file, shards, outdir):
    times = read_times(times_file)
    methods = [m.strip() for m in open(methods_file) if m.strip()]
    load, hands = [0.0] * shards, [[] for _ in range(shards)]
    for m in sorted(methods, key=lambda m: (-times.get(m, 1.0), m)):
        s = min(range(shards), key=lambda i: (load[i], i))
        load[s] += times.get(m, 1.0)
        hands[s].append(m)
    for i, hand in enumerate(hands):
        with open(f"{outdir}/shard-{i}.args", "w") as f:
            f.writelines(f"-method\n{m}\n" for m in hand)


def read_times(times_file):
    times = {}
    try:
        for line in open(times_file):
            if line.strip() and not line.startswith("#"):
                name, seconds = line.rstrip("\n").split("\t")
                times[name] = float(seconds)
    except FileNotFoundError:
        pass
    return times


def shard_tests(xml_file):
    """The <test> elements of a shard's xUnit XML; none if the shard wrote none (one killed by its limit)."""
    try:
        return list(ET.parse(xml_file).iter("test"))
    except (ET.ParseError, OSError):
        return []


def times(xml_files, keep=None):
    per_method, tests = collections.Counter(), []
    for f in xml_files:
        for t in shard_tests(f):
            seconds = float(t.get("time", 0))
            per_method[f'{t.get("type")}.{t.get("method")}'] += seconds
            tests.append((seconds, t.get("name", "")))
    print("# Seconds each test method took in the CUDA suite (summed over its cases), from xUnit XML:")
    print("# scripts/gpu-check.sh deals the heaviest methods first so that its shards finish together.")
    for name, seconds in per_method.most_common():
        print(f"{name}\t{seconds:.2f}")
    kept = {n: t for n, t in (read_times(keep) if keep else {}).items() if n not in per_method}
    if kept:
        print(f"# Kept from {keep}: methods this call did not run (the [CpuOnly] ones it leaves out), for FULL_SUITE=1's dealing.")
        for name, seconds in sorted(kept.items(), key=lambda kv: -kv[1]):
            print(f"{name}\t{seconds:.2f}")
    per_class = collections.Counter()
    for name, seconds in per_method.items():
        per_class[name.rsplit(".", 1)[0].split(".")[-1]] += seconds
    print("test seconds by class: " + ", ".join(f"{c} {s:.0f}" for c, s in per_class.most_common()), file=sys.stderr)
    for seconds, name in sorted(tests, reverse=True)[:8]:
        print(f"  {seconds:6.1f} s  {name[:150]}", file=sys.stderr)


def rerun(xml_files):
    for f in xml_files:
        faulted, again = None, []
        tests = sorted(shard_tests(f), key=lambda t: t.get("start-rtf", ""))  # the order they ran in
        for t in tests:
            if t.get("result") != "Fail":
                continue
            message = " ".join(e.text or "" for e in t.iter("message"))
            method = f'{t.get("type")}.{t.get("method")}'
            if faulted is None:
                if STICKY.search(message):
                    faulted = method
                    print(f"{f}: {method} lost the CUDA context; the methods that failed after it run again", file=sys.stderr)
            elif STICKY.search(message) and method != faulted and method not in again:
                again.append(method)
        for m in again:
            print(f"-method\n{m}")


mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "deal" and len(sys.argv) == 6:
    deal(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
elif mode == "times" and len(sys.argv) > 3 and sys.argv[2] == "--keep":
    times(sys.argv[4:], keep=sys.argv[3])
elif mode == "times":
    times(sys.argv[2:])
elif mode == "rerun":
    rerun(sys.argv[2:])
else:
    sys.exit(__doc__)
