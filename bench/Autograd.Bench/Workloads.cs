// The benchmark workloads. Each checks its result against a host reference (in double) first.
using System.Diagnostics;
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Bench;

/// <summary>One measured workload.</summary>
/// <param name="Name">What was run.</param>
/// <param name="MedianUs">Median time of one repetition, microseconds.</param>
/// <param name="TflopS">Arithmetic rate, when it applies.</param>
/// <param name="GbS">Memory rate (bytes read + written), when it applies.</param>
/// <param name="Check">The correctness check that passed before timing.</param>
public sealed record Result(string Name, double MedianUs, double? TflopS, double? GbS, string Check)
{
    /// <summary>A table row.</summary>
    public string ToRow()
    {
        string rate = TflopS is { } t ? $"{t,8:F3} TFLOP/s" : GbS is { } g ? $"{g,8:F0} GB/s" : "";
        return $"{Name,-40} {MedianUs,12:F1} us  {rate,-16}  check: {Check}";
    }
}

/// <summary>The workloads.</summary>
public static partial class Workloads
{
    /// <summary>Median of `batches` timings of `reps` calls of run (synchronised), per call in microseconds;
    /// fewer reps (3 at least) where `reps` calls would take over a second.</summary>
    private static double Median(Device d, Action run, int reps, int batches = 5)
    {
        // Warm up for 300 ms, not one run: the JIT compiles a method fully only after it has been
        // called 30 times and then no new method for 100 ms. A seed step's 500 eager runs take
        // ~90 ms on the CPU, so timing after one run measured unoptimised code (eager 166 or 303 µs
        // in two runs of the same build).
        // One run at a time, so that a slow workload's warm-up stays near 300 ms, not a batch.
        var warm = Stopwatch.StartNew();
        double lastMs;
        do
        {
            var one = Stopwatch.StartNew();
            run();
            d.Synchronize();
            lastMs = one.Elapsed.TotalMilliseconds;
        } while (warm.ElapsedMilliseconds < 300);
        // A batch of about a second at most (3 runs at least): reps sized by FLOPs for a GPU gave the
        // CPU simulator's tiled kernel (104 ms a product) 1,562 a batch, 13 of the CPU bench's 16 minutes.
        reps = Math.Min(reps, Math.Max(3, (int)(1000 / Math.Max(lastMs, 1e-3))));
        var times = new List<double>();
        for (int b = 0; b < batches; b++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) run();
            d.Synchronize();
            times.Add(sw.Elapsed.TotalMilliseconds * 1000 / reps);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    /// <summary>The seed's eager training step (forward, backward, SGD update, grad zeroing).</summary>
    public static Result SeedEager(Device d, int steps)
    {
        var (x, y, w1, w2) = SeedTensors(d);
        // Check: the first loss against the host in double.
        double hostLoss = HostSeedLoss(x.ToArray(), y.ToArray(), w1.ToArray(), w2.ToArray());
        float first = 0;
        void Step(bool read)
        {
            var loss = (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum();
            if (read) first = loss.Item();
            loss.Backward();
            using (Autograd.NoGrad())
            {
                w1.SubInPlace(w1.Grad!, 1e-6f);
                w2.SubInPlace(w2.Grad!, 1e-6f);
                w1.Grad!.ZeroInPlace();
                w2.Grad!.ZeroInPlace();
            }
        }
        Step(read: true);
        double rel = Math.Abs(first - hostLoss) / hostLoss;
        if (rel > 1e-4) throw new InvalidOperationException($"seed loss {first} vs host {hostLoss}");
        double us = Median(d, () => Step(read: false), steps / 5);
        return new Result("seed step eager (64,1000,100,10)", us, null, null, $"loss rel err {rel:E1}");
    }

    /// <summary>The seed's step compiled (Graph.Compile), replayed one Run per step or n steps per Run.</summary>
    /// <param name="d">The device.</param>
    /// <param name="steps">Steps timed in all.</param>
    /// <param name="cudaGraphs">Replay as CUDA graphs (CUDA only).</param>
    /// <param name="stepsPerRun">Steps per Run call.</param>
    /// <param name="variant">"" as shipped; "unfused" compiles with AUTOGRAD_FUSE=0; "split-K in two launches"
    /// sums split products in a second kernel (KernelHost.SplitKInOneLaunch = false); "warp products" runs
    /// every product on MatMulPath.Warp (teams of warps chosen by shape); "warp products, one warp a block" pins
    /// KernelHost.WarpTeam = 1 (the kernel as first written); "no launch bounds" is the shipped step with
    /// every kernel compiled without its launch bounds; "warp products, no launch bounds" compiles them
    /// without their launch bounds (KernelHost.LaunchBounds = false: ptxas keeps 64 registers and splits a
    /// trip's 32 loads into four waits); "warp below 16K outputs" sets KernelHost.WarpMaxOutputs = 16384 (the
    /// products of up to 16K outputs on Warp, the rest as Auto chooses); "8x8 tiles" gives the tiled kernel
    /// groups of 8x8; "loss in a second launch" sums the loss after its product instead of in the
    /// product's launch (KernelHost.SumTailInLaunch = false); "updates one after the other" launches the
    /// two SGD-update products apart (KernelHost.PairProducts = false); "rule, no autotuning" turns
    /// KernelHost.Autotune off (the kernels the rule picks, where the other rows follow the tuned table);
    /// "persistent kernel" replays each step as one persistent kernel (KernelHost.PersistentSteps), on the
    /// tuned kernels, and "persistent kernel, warp products" with every product on MatMulPath.Warp; "chain
    /// tails" runs the small products after h in h's launch (KernelHost.ChainTails), "chain tails, warp
    /// products" with every product on Warp, "persistent kernel, chain tails" both; "row chains" runs h, y
    /// with its loss and dH block of rows by block in one launch (KernelHost.RowChains), "row chains, chain
    /// tails" with w2's update in w1's launch too (2 launches), "persistent kernel, row chains, chain
    /// tails" all three; a row-chain variant ending ", one group a block" keeps each block of rows in one
    /// group (KernelHost.RowShares = 1) where the others share h's columns among a block's groups; a variant
    /// ending "one-thread fences" fences its tails' count-ins from thread 0 only (KernelHost.OneThreadFences).</param>
    public static Result SeedCompiled(Device d, int steps, bool cudaGraphs, int stepsPerRun, string variant = "")
    {
        var saved = d.Kernels.MatMulSettings;
        Environment.SetEnvironmentVariable("AUTOGRAD_FUSE", variant == "unfused" ? "0" : null);
        d.Kernels.SplitKInOneLaunch = variant != "split-K in two launches";
        bool bounds = d.Kernels.LaunchBounds;
        if (variant is "warp products" or "warp products, one warp a block" or "warp products, no launch bounds") d.Kernels.MatMulPath = MatMulPath.Warp;
        if (variant is "no launch bounds" or "warp products, no launch bounds") d.Kernels.LaunchBounds = false;
        if (variant == "warp products, one warp a block") d.Kernels.WarpTeam = 1;
        if (variant == "8x8 tiles") d.Kernels.TiledGroup = (8, 8);
        if (variant == "warp below 16K outputs") d.Kernels.WarpMaxOutputs = 16384;
        if (variant == "loss in a second launch") d.Kernels.SumTailInLaunch = false;
        if (variant == "updates one after the other") d.Kernels.PairProducts = false;
        if (variant == "rule, no autotuning") d.Kernels.Autotune = false;
        bool persistent = d.Kernels.PersistentSteps;
        if (variant.StartsWith("persistent kernel", StringComparison.Ordinal)) d.Kernels.PersistentSteps = true;
        if (variant is "persistent kernel, warp products" or "chain tails, warp products") d.Kernels.MatMulPath = MatMulPath.Warp;
        bool chains = d.Kernels.ChainTails;
        if (variant.Contains("chain tails", StringComparison.Ordinal)) d.Kernels.ChainTails = true;
        bool rows = d.Kernels.RowChains;
        if (variant.Contains("row chains", StringComparison.Ordinal)) d.Kernels.RowChains = true;
        int shares = d.Kernels.RowShares;
        if (variant.EndsWith("one group a block", StringComparison.Ordinal)) d.Kernels.RowShares = 1;
        var fence = d.Kernels.BarrierFence;
        if (variant.EndsWith("acquire-release barriers", StringComparison.Ordinal)) d.Kernels.BarrierFence = BarrierFence.AcquireRelease;
        bool oneFence = d.Kernels.OneThreadFences;
        if (variant.EndsWith("one-thread fences", StringComparison.Ordinal)) d.Kernels.OneThreadFences = true;
        try
        {
            // The kernel-choice variants print where their time goes, like the shipped step.
            var r = SeedCompiledAsShipped(d, steps, cudaGraphs, stepsPerRun, out bool refused, profile: variant is "no launch bounds" or "warp products" or "warp products, one warp a block" or "warp products, no launch bounds" or "warp below 16K outputs" or "8x8 tiles" or "rule, no autotuning"
                or "persistent kernel" or "persistent kernel, warp products" or "chain tails, warp products" or "persistent kernel, chain tails"
                or "row chains, chain tails" or "persistent kernel, row chains, chain tails" or "row chains, chain tails, one group a block"
                or "persistent kernel, acquire-release barriers" or "persistent kernel, row chains, chain tails, acquire-release barriers"
                or "one-thread fences" or "chain tails, one-thread fences");
            // A persistent variant the step refused (runs 13-14: the tuner's Tiled 8x8 is not the
            // persistent kernel's group of 256) timed the launches: its name says so.
            return variant == "" ? r : r with { Name = $"{r.Name}, {variant}{(refused ? " (refused: its launches)" : "")}" };
        }
        finally
        {
            Environment.SetEnvironmentVariable("AUTOGRAD_FUSE", null);
            d.Kernels.MatMulSettings = saved;
            d.Kernels.LaunchBounds = bounds;
            d.Kernels.PersistentSteps = persistent;
            d.Kernels.ChainTails = chains;
            d.Kernels.RowChains = rows;
            d.Kernels.RowShares = shares;
            d.Kernels.BarrierFence = fence;
            d.Kernels.OneThreadFences = oneFence;
        }
    }

    private static Result SeedCompiledAsShipped(Device d, int steps, bool cudaGraphs, int stepsPerRun, out bool persistentRefused, bool profile = false)
    {
        Environment.SetEnvironmentVariable("AUTOGRAD_CUDA_GRAPHS", cudaGraphs ? "1" : "0");
        var (x, y, w1, w2) = SeedTensors(d);
        double hostLoss = HostSeedLoss(x.ToArray(), y.ToArray(), w1.ToArray(), w2.ToArray());
        using var opt = new Optim.Sgd([w1, w2], 1e-6f);
        // What a user waits for before the first loss: the compile and the first Run, which loads the
        // step's kernels not yet loaded in this process (a persistent program is a kernel of its own).
        var clock = Stopwatch.StartNew();
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        double compileMs = clock.Elapsed.TotalMilliseconds;
        float first = step.Run().Item();
        double firstMs = clock.Elapsed.TotalMilliseconds - compileMs;
        double rel = Math.Abs(first - hostLoss) / hostLoss;
        if (rel > 1e-4) throw new InvalidOperationException($"compiled seed loss {first} vs host {hostLoss}");
        void Run()
        {
            if (stepsPerRun == 1) step.Run();
            else step.Run(stepsPerRun);
        }
        double us = Median(d, Run, Math.Max(1, steps / 5 / stepsPerRun)) / stepsPerRun;
        // A persistent step says its phases and grid, or why it was refused (then the row times its launches).
        persistentRefused = false;
        foreach (var line in step.Describe().Split('\n').Where(l => l.StartsWith("Persistent:", StringComparison.Ordinal)))
        {
            Console.WriteLine($"    {line}");
            persistentRefused |= line.StartsWith("Persistent: refused", StringComparison.Ordinal);
        }
        if ((stepsPerRun == 1 || profile) && (cudaGraphs || d.Kind != DeviceKind.Cuda))
        {
            // Where the time goes: each launch alone, repeated (this advances the weights; timing is done).
            double sum = 0;
            foreach (var (launch, t) in step.Profile(200))
            {
                Console.WriteLine($"    profile {t,9:F2} us  {launch}");
                sum += t;
            }
            Console.WriteLine($"    profile {sum,9:F2} us  sum of launches alone");
        }
        Environment.SetEnvironmentVariable("AUTOGRAD_CUDA_GRAPHS", null);
        string mode = stepsPerRun > 1 ? $"Run(steps: {stepsPerRun})" : "Run()";
        return new Result($"seed step compiled, {mode}{(step.UsesCudaGraphs ? ", CUDA graph" : "")}", us, null, null,
            $"loss rel err {rel:E1}; {step.LaunchesPerStep} launches/step; compile {compileMs:F0} ms, first Run {firstMs:F0} ms");
    }

    private static (Tensor X, Tensor Y, Tensor W1, Tensor W2) SeedTensors(Device d)
    {
        Tensor.ManualSeed(0);
        return (Tensor.Randn([64, 1000], d), Tensor.Randn([64, 10], d),
                Tensor.Randn([1000, 100], d, requiresGrad: true), Tensor.Randn([100, 10], d, requiresGrad: true));
    }

    private static double HostSeedLoss(float[] x, float[] y, float[] w1, float[] w2)
    {
        double loss = 0;
        var h = new double[100];
        for (int i = 0; i < 64; i++)
        {
            Array.Clear(h);
            for (int p = 0; p < 1000; p++)
            {
                double xv = x[i * 1000 + p];
                for (int j = 0; j < 100; j++) h[j] += xv * w1[p * 100 + j];
            }
            for (int j = 0; j < 10; j++)
            {
                double s = 0;
                for (int k = 0; k < 100; k++) s += Math.Max(h[k], 0) * w2[k * 10 + j];
                loss += (s - y[i * 10 + j]) * (s - y[i * 10 + j]);
            }
        }
        return loss;
    }

    /// <summary>
    /// C = op(A) op(B) through the SGEMM launcher into a preallocated C (tiledGroup pins the Tiled kernel's
    /// group; wholeTiles false keeps Wide16 on its edge-tested kernel, KernelHost.WholeTiles; asyncCopies
    /// true puts whole tiles on its cp.async kernel in every layout, false keeps them off it, null leaves
    /// the device's rule, KernelHost.AsyncCopies and AsyncCopiesAlongK; transposed true copies a large
    /// product's operands along k transposed first, false reads them in place, null leaves the device's
    /// KernelHost.TransposedCopies, on by default).
    /// </summary>
    public static Result MatMul(Device d, int m, int n, int k, bool ta, bool tb, string name, MatMulPath path = MatMulPath.Auto,
        (int X, int Y)? tiledGroup = null, bool wholeTiles = true, bool? asyncCopies = null, bool? transposed = null) =>
        OnPath(d, path, () => MatMulOnce(d, m, n, k, ta, tb, name), tiledGroup, wholeTiles, asyncCopies, transposed);

    // Runs a workload with the device's SGEMM pinned to path (and group, and Wide16's whole-tile and
    // async-copy kernels on or off, and the transposed copies), then puts the previous ones back.
    private static Result OnPath(Device d, MatMulPath path, Func<Result> run, (int X, int Y)? tiledGroup = null, bool wholeTiles = true,
        bool? asyncCopies = null, bool? transposed = null)
    {
        var saved = d.Kernels.MatMulSettings;
        bool savedWhole = d.Kernels.WholeTiles, savedAsync = d.Kernels.AsyncCopies, savedAlongK = d.Kernels.AsyncCopiesAlongK;
        bool savedTransposed = d.Kernels.TransposedCopies;
        d.Kernels.MatMulPath = path;
        if (tiledGroup is { } g) d.Kernels.TiledGroup = g;
        d.Kernels.WholeTiles = wholeTiles;
        if (asyncCopies is { } on) (d.Kernels.AsyncCopies, d.Kernels.AsyncCopiesAlongK) = (on, on);
        if (transposed is { } copy) d.Kernels.TransposedCopies = copy;
        try
        {
            return run();
        }
        finally
        {
            d.Kernels.MatMulSettings = saved;
            d.Kernels.WholeTiles = savedWhole;
            (d.Kernels.AsyncCopies, d.Kernels.AsyncCopiesAlongK) = (savedAsync, savedAlongK);
            d.Kernels.TransposedCopies = savedTransposed;
        }
    }

    private static Result MatMulOnce(Device d, int m, int n, int k, bool ta, bool tb, string name)
    {
        Tensor.ManualSeed(1);
        using var a = Tensor.Randn(ta ? [k, m] : [m, k], d);
        using var b = Tensor.Randn(tb ? [n, k] : [k, n], d);
        using var c = Tensor.Zeros([m, n], d);
        var h = d.Kernels;
        long need = MatMulKernels.SplitKScratch(h, m, n, k, ta, tb);
        using var scratch = Tensor.Zeros([(int)Math.Max(1, need)], d);
        void Run() => MatMulKernels.MatMul(h, View(a), ta, View(b), tb, View(c), m, n, k, scratch: View(scratch));
        Run();
        string check = CheckSamples(a.ToArray(), b.ToArray(), c.ToArray(), m, n, k, ta, tb);
        double flops = 2.0 * m * n * k;
        int reps = (int)Math.Clamp(2e10 / flops, 3, 2000);
        double us = Median(d, Run, reps);
        return new Result($"{name} ({MatMulKernels.Describe(h, m, n, k, transA: ta, transB: tb)})", us, flops / us / 1e6, null, check);
    }

    private static string CheckSamples(float[] a, float[] b, float[] c, int m, int n, int k, bool ta, bool tb)
    {
        var r = new Random(5);
        double worst = 0;
        for (int s = 0; s < 64; s++)
        {
            int i = r.Next(m), j = r.Next(n);
            double sum = 0, mag = 0;
            for (int p = 0; p < k; p++)
            {
                double av = ta ? a[p * m + i] : a[i * k + p];
                double bv = tb ? b[j * k + p] : b[p * n + j];
                sum += av * bv;
                mag += Math.Abs(av * bv);
            }
            worst = Math.Max(worst, Math.Abs(c[i * n + j] - sum) / mag);
        }
        if (worst > 1e-5) throw new InvalidOperationException($"matmul {m}x{n}x{k}: error {worst} of sum|a b|");
        return $"64 samples, err/sum|ab| {worst:E1}";
    }

    /// <summary>A big two-layer step (4096, 4096, 4096, 1024) in eager mode.</summary>
    public static Result BigStep(Device d)
    {
        using var data = BigStepTensors(d);
        var (x, y, w1, w2) = data;
        float first = 0;
        void Step()
        {
            using var loss = (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum();
            loss.Backward();
            first = first == 0 ? loss.Item() : first;
            using (Autograd.NoGrad())
            {
                w1.SubInPlace(w1.Grad!, 1e-12f);
                w2.SubInPlace(w2.Grad!, 1e-12f);
                w1.Grad!.ZeroInPlace();
                w2.Grad!.ZeroInPlace();
            }
        }
        Step();
        if (!float.IsFinite(first) || first <= 0) throw new InvalidOperationException($"big step loss {first}");
        double us = Median(d, Step, 3, 3);
        return new Result("big step eager (4096,4096,4096,1024)", us, BigStepFlops / us / 1e6, null, $"loss finite ({first:E2})");
    }

    // The big step's products: forward 4096x4096x4096 and 4096x1024x4096, each again for two gradients.
    private const double BigStepFlops = 3.0 * (2.0 * 4096 * 4096 * 4096 + 2.0 * 4096 * 4096 * 1024);

    private static BigStepData BigStepTensors(Device d)
    {
        Tensor.ManualSeed(2);
        return new(Tensor.Randn([4096, 4096], d), Tensor.Randn([4096, 1024], d),
            Tensor.Randn([4096, 4096], d, requiresGrad: true), Tensor.Randn([4096, 1024], d, requiresGrad: true));
    }

    private readonly record struct BigStepData(Tensor X, Tensor Y, Tensor W1, Tensor W2) : IDisposable
    {
        public void Dispose()
        {
            X.Dispose(); Y.Dispose(); W1.Dispose(); W2.Dispose();
        }
    }

    /// <summary>
    /// The big step compiled (fused, SGD folded into the gradient products), on the given SGEMM path;
    /// asyncCopies and transposed as MatMul takes them (null: the device's rules, cp.async where both
    /// operands go along m, and the operands along k of large products copied transposed first).
    /// </summary>
    public static Result BigStepCompiled(Device d, MatMulPath path, bool? asyncCopies = null, bool? transposed = null) => OnPath(d, path, () =>
    {
        using var data = BigStepTensors(d);
        var (x, y, w1, w2) = data;
        using var opt = new Optim.Sgd([w1, w2], 1e-12f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        float first = step.Run().Item();
        if (!float.IsFinite(first) || first <= 0) throw new InvalidOperationException($"big step loss {first}");
        double us = Median(d, () => step.Run(), 3, 3);
        // What each launch runs (the tuner's choice, split, copies): runs 13-14 timed Auto in 8 launches
        // against Wide16 pinned in 10, and only these lines say which product differs.
        foreach (var line in step.Describe().Split('\n').SkipWhile(l => l != "program:").Skip(1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal)))
            Console.WriteLine($"    program {line.Trim()}");
        return new Result($"big step compiled (4096,4096,4096,1024) ({path}{asyncCopies switch { true => ", async copies", false => ", no async copies", null => "" }}{transposed switch { true => ", transposed copies", false => ", operands in place", null => "" }})", us, BigStepFlops / us / 1e6, null,
            $"loss finite ({first:E2}); {step.LaunchesPerStep} launches/step");
    }, asyncCopies: asyncCopies, transposed: transposed);

    /// <summary>Sum of n floats (two-stage tree).</summary>
    public static Result Sum(Device d, int n)
    {
        Tensor.ManualSeed(3);
        using var x = Tensor.Randn([n], d);
        using var y = Tensor.Zeros([1], d);
        using var scratch = Tensor.Zeros([Reduce.SumAllScratch(d.Kernels)], d);
        var h = d.Kernels;
        void Run() => Reduce.SumAll(h, View(x), View(y), View(scratch));
        Run();
        double host = 0, mag = 0;
        foreach (var v in x.ToArray()) { host += v; mag += Math.Abs(v); }
        double err = Math.Abs(y.Item() - host) / mag;
        if (err > 1e-6) throw new InvalidOperationException($"sum of {n}: {y.Item()} vs {host}");
        int reps = (int)Math.Clamp(4e9 / (4.0 * n), 3, 2000);
        double us = Median(d, Run, reps);
        return new Result($"sum {n / (1 << 20)}M floats", us, null, 4.0 * n / us / 1e3, $"err/sum|x| {err:E1}");
    }

    /// <summary>
    /// A device-to-device copy of n floats (the driver's copy): the bandwidth a sum's read is judged
    /// against. GB/s counts the bytes read and written, 8n.
    /// </summary>
    public static Result Copy(Device d, int n)
    {
        Tensor.ManualSeed(5);
        using var x = Tensor.Randn([n], d);
        using var y = Tensor.Zeros([n], d);
        var h = d.Kernels;
        void Run() => View(x).CopyTo(h.Stream, View(y));
        Run();
        h.Synchronize();
        var xs = x.ToArray();
        var ys = y.ToArray();
        var r = new Random(7);
        for (int t = 0; t < 64; t++)
        {
            int i = r.Next(n);
            if (xs[i] != ys[i]) throw new InvalidOperationException($"copy of {n}: element {i} is {ys[i]}, not {xs[i]}");
        }
        int reps = (int)Math.Clamp(4e9 / (8.0 * n), 3, 2000);
        double us = Median(d, Run, reps);
        return new Result($"device copy {n / (1 << 20)}M floats (read + write)", us, null, 8.0 * n / us / 1e3, "64 samples equal");
    }

    /// <summary>Sum of a (rows, cols) matrix along one dim: 0 (a batch sum, cols outputs) or 1 (row sums).</summary>
    public static Result SumDim(Device d, int rows, int cols, int dim)
    {
        Tensor.ManualSeed(4);
        using var x = Tensor.Randn([rows, cols], d);
        int outN = dim == 0 ? cols : rows;
        using var y = Tensor.Zeros([outN], d);
        var h = d.Kernels;
        int[] shape = [rows, cols], axes = [dim];
        long need = Reduce.SumAxesScratch(h, shape, axes);
        using var scratch = Tensor.Zeros([(int)Math.Max(1, need)], d);
        void Run() => Reduce.SumAxes(h, View(x), shape, axes, View(y), scratch: View(scratch));
        Run();
        var xs = x.ToArray();
        var ys = y.ToArray();
        double worst = 0;
        var r = new Random(6);
        for (int t = 0; t < 16; t++)
        {
            int o = r.Next(outN);
            double host = 0, mag = 0;
            int count = dim == 0 ? rows : cols;
            for (int q = 0; q < count; q++)
            {
                double v = dim == 0 ? xs[(long)q * cols + o] : xs[(long)o * cols + q];
                host += v; mag += Math.Abs(v);
            }
            worst = Math.Max(worst, Math.Abs(ys[o] - host) / mag);
        }
        if (worst > 1e-6) throw new InvalidOperationException($"sum along dim {dim}: error {worst}");
        long n = (long)rows * cols;
        int reps = (int)Math.Clamp(4e9 / (4.0 * n), 3, 2000);
        double us = Median(d, Run, reps);
        string passes = need == 0 ? "one pass" : $"rows in {need / outN} chunks, then their sum";
        return new Result($"sum {rows}x{cols} along dim {dim}", us, null, 4.0 * n / us / 1e3, $"16 outputs, err/sum|x| {worst:E1}; {passes}");
    }

    private static ArrayView<float> View(Tensor t) => t.AsArrayView();
}
