// Autograd.Bench: the workloads of docs/PERF.md on one device. Each result is checked against a host
// reference before it is timed; times are medians of several timed batches after a warm-up.
//   dotnet run -c Release --project bench/Autograd.Bench -- [--device cpu|cuda] [--quick] [--sweep] [--json FILE]
//       [--headline] [--list] [--from N] [--progress FILE] [--unit-limit SECONDS]
// --headline runs only the figures the issues' targets name (the seed step eager and compiled, SGEMM
// 4096^3 in each layout, the big step, the 256M sum): a second device call's check after a default changed.
// The workloads run as numbered units (Units.cs): --from N starts at unit N and adds to the JSON file's
// rows, so gpu-check.sh can start the bench again after a unit that broke the CUDA context or overran.
// --sweep adds the split-K sweep of the seed's products (Workloads.Sweep.cs) and each seed product on
// every kernel as a direct launch, and the seed step's older variant rows (each fusion undone, launch
// bounds off, other kernels for the tiny products). Off by default since the eleventh session's H200 run answered
// them (the warp kernel's teams win four of the five products; the tuning tables below say it per run):
// they took a part of gpu-check.sh's 5 minutes.
using System.Runtime.CompilerServices;
using System.Text.Json;
using AutogradNet;
using AutogradNet.Bench;
using AutogradNet.Kernels;

string? deviceName = null, jsonPath = null, progressPath = null;
bool quick = false, sweep = false, list = false, headline = false;
int from = 0, breakAt = -1, hangAt = -1;
double unitLimit = 0;
const string Usage = "usage: Autograd.Bench [--device cpu|cuda|opencl] [--quick] [--sweep] [--json FILE] [--headline] [--list] [--from N] [--progress FILE] [--unit-limit SECONDS]";
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--device": deviceName = args[++i]; break;
        case "--json": jsonPath = args[++i]; break;
        case "--quick": quick = true; break;
        case "--sweep": sweep = true; break;
        case "--list": list = true; break;
        case "--headline": headline = true; break;
        case "--from": from = int.Parse(args[++i]); break;
        case "--progress": progressPath = args[++i]; break;
        case "--unit-limit": unitLimit = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
        // Checks of gpu-check.sh's restarts (scripts/bench-resume.sh): a unit that fails as if it had
        // broken the device, and one that never returns.
        case "--test-break-at": breakAt = int.Parse(args[++i]); break;
        case "--test-hang-at": hangAt = int.Parse(args[++i]); break;
        default: Console.Error.WriteLine(Usage); return 2;
    }
}
// --list names the units this device and these options run, and writes nothing.
if (list) jsonPath = progressPath = null;
var device = deviceName == null ? Device.Default : Device.Get(deviceName);
Device.Default = device;
bool gpu = device.Kind != DeviceKind.Cpu;
quick |= !gpu; // the CPU simulator runs the seed-sized workloads only
Console.WriteLine($"device: {device}  date: {DateTime.UtcNow:yyyy-MM-dd}  quick: {quick}" + (from > 0 ? $"  from unit {from}" : ""));

var results = new List<Result>();
// Filled by PrintResources: what each loaded kernel holds on the device.
var kernels = new List<KernelResource>();
// Started again from a unit (--from), the bench keeps the rows and kernels the earlier part wrote.
var earlier = from > 0 && jsonPath != null && File.Exists(jsonPath) ? BenchFile.Read(jsonPath) : BenchFile.Empty;
// The JSON is rewritten after every result: a run cut short by its time limit still leaves a file
// with every figure it reached.
void WriteJson()
{
    if (jsonPath == null) return;
    // Whole or not at all: a process stopped mid-write (its limit, the watchdog) leaves the last file.
    string partial = jsonPath + ".partial";
    File.WriteAllText(partial, JsonSerializer.Serialize(new
    {
        device = device.ToString(),
        date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
        results = earlier.Results.Concat(results),
        kernels = earlier.KernelsWith(kernels),
    }, new JsonSerializerOptions { WriteIndented = true }));
    File.Move(partial, jsonPath, overwrite: true);
}

var failures = new List<string>();
// A workload that throws (a wrong result, a kernel that fails to launch) is reported and the rest
// still run: one device call must bring back every figure it can. One that leaves the device unable
// to run a kernel, or overruns --unit-limit, ends the process with the unit to start again from.
using var units = new Units(from, progressPath, unitLimit, DeviceWorks, SaveBeforeStopping, breakAt, hangAt, list, headlineOnly: headline);
void Failed(string what, Exception e)
{
    failures.Add(e.Message);
    Console.WriteLine($"FAILED: {what}{e.GetType().Name}: {e.Message}");
}
void Report(Func<Result> make, [CallerArgumentExpression(nameof(make))] string what = "", bool headline = false) =>
    units.Run(what.Replace("() => ", ""), () =>
    {
        var r = make();
        results.Add(r);
        Console.WriteLine(r.ToRow());
        WriteJson();
    }, e => Failed("", e), headline);
// What a part that stops early keeps: the kernels it loaded (where the device still says) and its rows.
void SaveBeforeStopping()
{
    try
    {
        LoadKernelResources();
    }
    catch (Exception e)
    {
        Console.WriteLine($"(the kernels' resources are lost with the device: {e.GetType().Name})");
    }
    WriteJson();
}
// After a unit failed: does the device still run a kernel and give back its result?
bool DeviceWorks()
{
    try
    {
        using var ones = Tensor.Ones([8], device);
        using var sum = ones.Sum();
        return sum.Item() == 8f;
    }
    catch (Exception)
    {
        return false;
    }
}

Report(() => Workloads.SeedEager(device, steps: 500), headline: true);
Report(() => Workloads.SeedCompiled(device, gpu ? 1000 : 500, cudaGraphs: false, stepsPerRun: 1), headline: !gpu);
if (device.Kind == DeviceKind.Cuda)
{
    Report(() => Workloads.SeedCompiled(device, 2000, cudaGraphs: true, stepsPerRun: 1));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500), headline: true);
    // What fusion, one-launch split-K, the loss tail, the paired updates, the launch bounds and the
    // kernel choices for the tiny products buy, on the same card: runs 6-8 answered each of these
    // (docs/PERF.md), so only --sweep times them again, to keep gpu-check under 5 minutes.
    if (sweep)
    {
        foreach (var variant in (string[])["unfused", "split-K in two launches", "loss in a second launch", "updates one after the other",
            "no launch bounds", "warp products, one warp a block", "warp products, no launch bounds", "warp below 16K outputs", "8x8 tiles"])
            Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: variant), $"seed step compiled, {variant}");
    }
    // The warp kernel for every seed product, the candidate the persistent and chain rows build on.
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "warp products"));
    // The whole step as one persistent kernel with grid barriers between its phases (Persistent.cs).
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel, warp products"));
    // y with its loss and dH in the last group of h's launch (ProductChain.cs): 2 launches a step, or 2 phases.
    Report(() => Workloads.SeedCompiled(device, 2000, cudaGraphs: true, stepsPerRun: 1, variant: "chain tails"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "chain tails"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "chain tails, warp products"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel, chain tails"));
    // h, y with its loss and dH block of rows by block in one launch (MatMulKernels.Rows.cs); with chain
    // tails too, w2's update in w1's launch: 2 launches a step, or 2 phases.
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "row chains"));
    Report(() => Workloads.SeedCompiled(device, 2000, cudaGraphs: true, stepsPerRun: 1, variant: "row chains, chain tails"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "row chains, chain tails"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel, row chains, chain tails"));
    // The two persistent forms above with their barriers fenced acquire-release (KernelHost.BarrierFence;
    // the floor rows time the barrier alone with each fence).
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel, acquire-release barriers"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "persistent kernel, row chains, chain tails, acquire-release barriers"));
    // The shipped step and the chain-tail step with their tails' count-ins fenced by thread 0 of each
    // group only (KernelHost.OneThreadFences; the floor rows time the count-in alone both ways).
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "one-thread fences"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "chain tails, one-thread fences"));
    // The rows above share h's columns among a block's groups (KernelHost.RowShares' rule: 8 a block
    // on an H200); these keep a block in one group, as the fifteenth session built it.
    Report(() => Workloads.SeedCompiled(device, 2000, cudaGraphs: true, stepsPerRun: 1, variant: "row chains, chain tails, one group a block"));
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "row chains, chain tails, one group a block"));
    // The rows above without a suffix follow the autotuned table (on by default on a GPU); this one, the rule.
    Report(() => Workloads.SeedCompiled(device, 2500, cudaGraphs: true, stepsPerRun: 500, variant: "rule, no autotuning"));
}
// What a launch, a memory round trip, a count-in and a grid barrier cost here, each alone: the
// floors the seed step's launches above are read against (Workloads.Floors.cs).
units.Run("floors", () =>
{
    var (floorRows, reading) = Workloads.Floors(device);
    foreach (var r in floorRows)
    {
        results.Add(r);
        Console.WriteLine(r.ToRow());
    }
    Console.WriteLine(reading);
    WriteJson();
}, e => Failed("floors: ", e));
Report(() => Workloads.MatMul(device, 64, 100, 1000, false, false, "seed layer-1 forward 64x1000x100 NN"));
Report(() => Workloads.MatMul(device, 1000, 100, 64, true, false, "seed dW1 = x^T dH (1000x64x100 TN)"));
if (!gpu)
{
    // The ILGPU kernels on the CPU accelerator, beside the host SGEMM that Auto picks there.
    Report(() => Workloads.MatMul(device, 64, 100, 1000, false, false, "seed layer-1 forward 64x1000x100 NN", MatMulPath.Tiled));
    Report(() => Workloads.MatMul(device, 64, 100, 1000, false, false, "seed layer-1 forward 64x1000x100 NN", MatMulPath.Small));
}
var seedProducts = new (int M, int N, int K, bool TA, bool TB, string Name)[]
{
    (64, 100, 1000, false, false, "seed h = x w1 64x100x1000 NN"),
    (64, 10, 100, false, false, "seed y = h w2 64x10x100 NN"),
    (64, 100, 10, false, true, "seed dH = dY w2^T 64x100x10 NT"),
    (100, 10, 64, true, false, "seed dW2 = h^T dY 100x10x64 TN"),
    (1000, 100, 64, true, false, "seed dW1 = x^T dH 1000x100x64 TN"),
};
if (gpu || sweep)
{
    // Autotuning's trials for each seed product (what Graph.Compile timed for the rows above), * the choice.
    var tuned = gpu ? seedProducts : [(33, 20, 130, false, false, "33x20x130 NN (CPU: checks the tuner runs)")];
    foreach (var p in tuned) Tuning(p.M, p.N, p.K, p.TA, p.TB);
    if (!gpu) SumTuning(1, 512, 512); // checks the sum's tuner runs
}
if (gpu)
{
    // All five seed products as chosen (direct launches; the tuning tables time them inside a CUDA
    // graph); with --sweep also on the register-blocked kernel without shared memory, on the
    // warp-split kernel, and on the tiled kernel with 8x8 and 4x4 groups.
    foreach (var p in seedProducts)
    {
        Report(() => Workloads.MatMul(device, p.M, p.N, p.K, p.TA, p.TB, p.Name), p.Name);
        if (!sweep) continue;
        Report(() => Workloads.MatMul(device, p.M, p.N, p.K, p.TA, p.TB, p.Name, MatMulPath.Small), $"{p.Name} (Small)");
        Report(() => Workloads.MatMul(device, p.M, p.N, p.K, p.TA, p.TB, p.Name, MatMulPath.Warp), $"{p.Name} (Warp)");
        // Smaller tiles give a tiny product more groups with less (or no) K splitting.
        Report(() => Workloads.MatMul(device, p.M, p.N, p.K, p.TA, p.TB, p.Name, MatMulPath.Tiled, (8, 8)), $"{p.Name} (Tiled 8x8)");
        Report(() => Workloads.MatMul(device, p.M, p.N, p.K, p.TA, p.TB, p.Name, MatMulPath.Tiled, (4, 4)), $"{p.Name} (Tiled 4x4)");
    }
}
if (sweep)
{
    // The seed's products on every tiled group and K split, timed as they run inside a compiled step.
    var swept = gpu ? seedProducts : [(33, 20, 130, false, false, "33x20x130 NN (CPU: checks the sweep runs)")];
    foreach (var p in swept)
    {
        units.Run($"split-K sweep of {p.Name}", () =>
        {
            var (cells, table) = Workloads.SplitSweep(device, p.M, p.N, p.K, p.TA, p.TB, p.Name);
            results.AddRange(cells);
            Console.WriteLine(table);
        }, e => Failed($"split-K sweep of {p.Name}: ", e));
    }
}
if (!quick)
{
    // The big products tuned first, so the Auto rows below run (and name) the choice.
    foreach (int n in new[] { 1024, 4096, 8192 }) Tuning(n, n, n, false, false, headline: n == 4096);
    foreach (int n in new[] { 1024, 4096, 8192 })
        foreach (var (ta, tb, name) in new[] { (false, false, "NN"), (false, true, "NT"), (true, false, "TN") })
        {
            Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}"), $"matmul {n}^3 {name}", headline: n == 4096);
            // Both double-buffered 128x128 kernels pinned beside the autotuned choice: Wide and Wide16 (16-deep slices, the rule's;
            // on whole tiles, "Wide16, whole tiles", its kernel without edge tests).
            if (n == 4096 || name == "NN")
            {
                Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}", MatMulPath.Wide), $"matmul {n}^3 {name} (Wide)");
                Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}", MatMulPath.Wide16, asyncCopies: false), $"matmul {n}^3 {name} (Wide16)");
                // Wide16 on its edge-tested kernel at 4096^3: the whole-tile kernel's gain in the same call;
                // and on its cp.async kernel (a ring of 3 stages) in every layout (by default TN only).
                if (n == 4096)
                {
                    Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}", MatMulPath.Wide16, wholeTiles: false, asyncCopies: false), $"matmul {n}^3 {name} (Wide16, edge tests)");
                    Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}", MatMulPath.Wide16, asyncCopies: true), $"matmul {n}^3 {name} (Wide16, async copies)");
                    // NN and NT as TN on the async kernel after their operands along k are copied transposed
                    // (KernelHost.TransposedCopies, on by default since run 12: the autotuned row above too).
                    if (name != "TN")
                        Report(() => Workloads.MatMul(device, n, n, n, ta, tb, $"matmul {n}^3 {name}", MatMulPath.Wide16, transposed: true), $"matmul {n}^3 {name} (Wide16, transposed copies)", headline: true);
                }
            }
        }
    // What ptxas made of the SGEMM kernels timed so far (registers, spills, shared memory, groups a
    // multiprocessor holds), printed before the rest of the bench so a cut-short call still has it.
    PrintResources("the kernels loaded so far");
    Report(() => Workloads.BigStep(device), headline: true);
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Auto), headline: true);
    // The default's gain in the same call: the big step with its operands along k read in place (run 11's default).
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Auto, transposed: false), "big step compiled (Auto, operands in place)", headline: true);
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Wide));
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Wide16));
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Wide16, asyncCopies: false));
    Report(() => Workloads.BigStepCompiled(device, MatMulPath.Wide16, asyncCopies: true));
    Report(() => Workloads.Sum(device, 16 << 20));
    Report(() => Workloads.Sum(device, 256 << 20), headline: true);
    Report(() => Workloads.Copy(device, 256 << 20));
    // The chunk counts autotuning times for the batch sum below (the eager sum would tune it on first use).
    SumTuning(1, 8192, 8192);
    Report(() => Workloads.SumDim(device, 8192, 8192, 0));
    Report(() => Workloads.SumDim(device, 8192, 8192, 1));
}
else
{
    Report(() => Workloads.MatMul(device, 256, 256, 256, false, false, "matmul 256^3 NN"));
    // Products larger than a core's L2, in each layout: the host SGEMM's slabs of B and strips of A.
    foreach (var (ta, tb, name) in new[] { (false, false, "NN"), (false, true, "NT"), (true, false, "TN") })
        Report(() => Workloads.MatMul(device, 1024, 1024, 1024, ta, tb, $"matmul 1024^3 {name}"));
    Report(() => Workloads.Sum(device, 1 << 20));
    Report(() => Workloads.Copy(device, 1 << 20));
    Report(() => Workloads.SumDim(device, 512, 512, 0));
    Report(() => Workloads.SumDim(device, 512, 512, 1));
}

PrintResources("every kernel the bench loaded");
if (jsonPath != null) Console.WriteLine($"wrote {jsonPath}");

// Times every SGEMM candidate for one shape (Device.TuneMatMul), prints the trials and keeps each as a result.
void Tuning(int m, int n, int k, bool ta, bool tb, bool headline = false) => units.Run($"tuning {m}x{n}x{k}", () =>
    {
        var t = device.TuneMatMul(m, n, k, ta, tb);
        var rule = MatMulKernels.RuleChoice(device.Kernels, m, n, k);
        Console.WriteLine(t);
        foreach (var trial in t.Trials.Where(x => x.Rejected == null))
            results.Add(new Result($"tune {m}x{n}x{k} {trial.Candidate}{(trial.Candidate == t.Choice ? " (chosen)" : "")}{(trial.Candidate == rule ? " (rule)" : "")}",
                trial.Microseconds, 2.0 * m * n * k / trial.Microseconds / 1e6, null, "64 samples against a double sum"));
        foreach (var trial in t.Trials.Where(x => x.Rejected != null))
            failures.Add($"tuning {m}x{n}x{k}: {trial.Candidate} rejected: {trial.Rejected}");
        WriteJson();
    }, e => Failed($"tuning {m}x{n}x{k}: ", e), headline);

// Times each chunk count of a sum along a middle run (x as (outer, r, inner), summed over r), prints them, keeps each as a result.
void SumTuning(int outer, int r, int inner) => units.Run($"tuning sum ({outer}, {r}, {inner})", () =>
    {
        var trials = Tune.Sum(device, outer, r, inner);
        int? chosen = device.Kernels.TunedSumChunks(outer, r, inner);
        Console.WriteLine($"tuning sum of ({outer}, {r}, {inner}) over r: {chosen} chunks");
        foreach (var (chunks, us, rejected) in trials)
        {
            Console.WriteLine($"  {(chunks == chosen ? "*" : " ")} {chunks,5} chunks  " + (rejected == null ? $"{us,9:F2} us" : $"rejected: {rejected}"));
            if (rejected == null)
                results.Add(new Result($"tune sum ({outer},{r},{inner}) {chunks} chunks{(chunks == chosen ? " (chosen)" : "")}", us, null,
                    (double)outer * r * inner * sizeof(float) / us / 1e3, "32 outputs against double sums"));
            else failures.Add($"tuning sum ({outer}, {r}, {inner}): {chunks} chunks rejected: {rejected}");
        }
        WriteJson();
    }, e => Failed($"tuning sum ({outer}, {r}, {inner}): ", e));

// What each kernel loaded so far holds on the device, into `kernels` (and so into the JSON).
void LoadKernelResources()
{
    var loaded = device.Kernels.KernelResources();
    kernels.Clear();
    kernels.AddRange(loaded);
}

void PrintResources(string what)
{
    if (list) return;
    Console.WriteLine($"kernel resources on {device.Name}, {what} (-1: the accelerator does not say):");
    LoadKernelResources();
    foreach (var r in kernels) Console.WriteLine($"    {r}");
    WriteJson();
}
if (failures.Count > 0) Console.WriteLine($"{failures.Count} workload(s) FAILED; see the FAILED lines above.");
return failures.Count > 0 ? 1 : 0;
