"""Ratio table (ours / theirs) from the logs that scripts/gpu-check.sh leaves in a folder."""
import json, re, sys, pathlib

out = pathlib.Path(sys.argv[1])
def read(name):
    p = out / name
    return p.read_text(errors="replace") if p.exists() else ""

ours = {}
try:
    for r in json.loads(read("bench.json") or "{}").get("results", []):
        ours[r["Name"]] = r
except json.JSONDecodeError:
    pass
torch, jax = read("torch.log"), read("jax.log")
def num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None

anchors = {
    "PyTorch eager CUDA (us/step)": num(r"seed eager cuda: ([\d.]+) us/step", torch),
    "PyTorch CUDA graph (us/step)": num(r"seed cudagraph cuda: ([\d.]+) us/step", torch),
    "JAX jit python loop (us/step)": num(r"seed jax jit precision=highest: ([\d.]+) us/step", jax),
    "JAX jit fori_loop (us/step)": num(r"seed jax jit precision=highest: [\d.]+ us/step \(python loop\), ([\d.]+)", jax),
}
seed = next((r["MedianUs"] for n, r in ours.items() if n.startswith("seed step eager")), None)
example = num(r"([\d.]+) us/step after the first", read("example.log"))
print(f"{'ours':<40} {'us':>10}")
print(f"{'seed step eager (bench median)':<40} {seed if seed else float('nan'):>10.1f}")
print(f"{'seed step eager (example, 499 steps)':<40} {example if example else float('nan'):>10.1f}")
print()
print(f"{'anchor':<34} {'theirs us':>10} {'ours/theirs':>12}")
for name, v in anchors.items():
    ratio = seed / v if (seed and v) else float("nan")
    print(f"{name:<34} {v if v else float('nan'):>10.1f} {ratio:>12.2f}")
big_t = num(r"big \(4096, 4096, 4096, 1024\) eager cuda tf32=False: ([\d.]+) ms/step", torch)
big = next((r["MedianUs"] for n, r in ours.items() if n.startswith("big step")), None)
if big and big_t:
    print(f"{'big step fp32 (ms) PyTorch':<34} {big_t:>10.3f} {big / 1000 / big_t:>12.2f}")
sg = num(r"sgemm 4096\^3 tf32=False: [\d.]+ ms = ([\d.]+) TFLOP/s", torch)
mm = ours.get("matmul 4096^3 NN")
if sg and mm:
    print(f"{'SGEMM 4096^3 TFLOP/s cuBLAS':<34} {sg:>10.1f} {mm['TflopS'] / sg:>12.2f}")
