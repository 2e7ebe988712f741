// Pass 5, tune (after fusion and pairing, before the memory plan, which sizes split-K's scratch for
// the choices): for each product shape the device has not tuned yet, launch every candidate SGEMM
// choice (MatMulKernels.Candidates) on random operands of that shape, check its result against a
// double sum, time it, and record the fastest on the device's kernel host (KernelHost.SetTuned).
// Auto then takes that choice for the shape, in this step and every later one, compiled or eager.
// - A product whose loss is summed in its launch only takes choices that keep the sum there.
// - Two paired products (Fuse.Pair.cs) share a launch only if their choices agree (one group shape,
//   or one team of warps). When their separate winners do not, the agreeing pairs of choices are
//   timed as one launch against the two winners one after the other, and the faster is recorded.
// The step's sums along a middle run get their chunk counts the same way (Tune.Sums.cs).
//
// Why: the seed's products are a few microseconds each, and which kernel wins them (split-K depth,
// a team of warps, a smaller tile) turns on latencies no rule here predicts; the big products turn on
// what ptxas made of each kernel. A measurement on the device is the only honest chooser.
// How it is timed: on CUDA each candidate runs `reps` times inside one CUDA graph (the cost inside a
// compiled step, without the driver's per-launch overhead), best of three replays; elsewhere, direct
// launches. A candidate that throws or computes a wrong sample is rejected, never chosen. A tie
// (within 3%) keeps the rule's choice, so a noisy timer does not move a shape for nothing.
using System.Diagnostics;
using System.Text;
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet;

/// <summary>One candidate's trial in a tuning run.</summary>
/// <param name="Candidate">The SGEMM choice tried.</param>
/// <param name="Microseconds">Time per product; NaN when rejected.</param>
/// <param name="Rejected">Why it was not eligible (an exception, a wrong sample), or null.</param>
public readonly record struct MatMulTrial(MatMulChoice Candidate, double Microseconds, string? Rejected);

/// <summary>What tuning one product shape on a device measured and chose.</summary>
/// <param name="M">Rows of C.</param>
/// <param name="N">Columns of C.</param>
/// <param name="K">Shared dimension.</param>
/// <param name="Choice">The choice the device now takes for this shape (recorded by this run or an earlier one).</param>
/// <param name="Trials">Each candidate's time or rejection, the rule's choice first.</param>
public sealed record MatMulTuning(int M, int N, int K, MatMulChoice Choice, IReadOnlyList<MatMulTrial> Trials)
{
    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder($"tuning {M}x{N}x{K}: {Choice}");
        foreach (var t in Trials)
            sb.Append($"\n  {(t.Candidate == Choice ? "*" : " ")} {t.Candidate,-44} "
                + (t.Rejected == null ? $"{t.Microseconds,9:F2} us" : $"rejected: {t.Rejected}"));
        return sb.ToString();
    }
}

internal static partial class Tune
{
    /// <summary>Test seam: when set, gives each accepted candidate's time for a shape (M, N, K) in place of the timer.</summary>
    internal static Func<(int M, int N, int K), MatMulChoice, double>? Clock { get; set; }

    /// <summary>Test seam: when set, gives the time of two products in one launch with these choices.</summary>
    internal static Func<MatMulChoice, MatMulChoice, double>? PairClock { get; set; }

    private const double TieMargin = 1.03;

    private readonly record struct Shape(int M, int N, int K, bool TransA, bool TransB)
    {
        public (int, int, int) Key => (M, N, K);

        public bool Empty => M == 0 || N == 0 || K == 0;
    }

    /// <summary>Tunes every product of the fused nodes whose shape the device has not tuned, where it follows a table.</summary>
    public static void Run(IEnumerable<Node> nodes, Device device)
    {
        var host = device.Host;
        if (!host.FollowsTuning) return;
        // The device's lock over the whole pass: another thread's compile or eager product neither
        // launches in the middle of a timing nor records a shape between our check and our record.
        lock (device.Sync) RunLocked(nodes, device);
    }

    private static void RunLocked(IEnumerable<Node> nodes, Device device)
    {
        var host = device.Host;
        ReadCache(host);
        foreach (var node in nodes)
        {
            if (TunesSum(node, host, out var run))
            {
                if (host.TunedSumChunks(run.Outer, run.R, run.Inner) == null) Sum(device, run.Outer, run.R, run.Inner);
                continue;
            }
            if (node.Op.Kind != Prim.MatMul) continue;
            if (node.Op.Payload is MatMulPairOp pair)
            {
                var first = ShapeOf(pair.FirstOp, node.Inputs[..pair.FirstInputs]);
                var second = ShapeOf(pair.SecondOp, node.Inputs[pair.FirstInputs..]);
                if (first.Empty || second.Empty) continue;
                Pair(device, first, second);
                continue;
            }
            var s = ShapeOf(node.Op, node.Inputs);
            if (s.Empty || host.Tuned(s.M, s.N, s.K) != null) continue;
            bool tail = node.Op.Payload is MatMulSumOp;
            Record(device, s, Measure(device, s, tail ? c => MatMulKernels.SumInSameLaunch(host.With(c), s.M, s.N, s.K) : null));
        }
    }

    /// <summary>Products of at least this many flops are tuned on their first eager use (a big product's
    /// tuning costs a few of its own runs; a small one's would cost thousands, and Graph.Compile tunes those).</summary>
    internal static double EagerMinFlops { get; set; } = 1e9;

    /// <summary>
    /// Before an eager product: where the device autotunes, tunes a big shape it has not tuned yet (as
    /// cuDNN's benchmark mode does on a first call). Not while tracing: Graph.Compile tunes its products.
    /// Malformed operands are left to the op's own checks.
    /// </summary>
    public static void BeforeEager(Tensor a, bool transA, Tensor b, bool transB)
    {
        if (Tracer.Current != null || a.IsSymbolic || b.IsSymbolic || a.IsDisposed || b.IsDisposed || !ReferenceEquals(a.Device, b.Device)) return;
        var host = a.Device.Host;
        if (!host.FollowsTuning || a.ShapeArray.Length != 2 || b.ShapeArray.Length != 2) return;
        int m = transA ? a.ShapeArray[1] : a.ShapeArray[0], k = transA ? a.ShapeArray[0] : a.ShapeArray[1];
        int kb = transB ? b.ShapeArray[1] : b.ShapeArray[0], n = transB ? b.ShapeArray[0] : b.ShapeArray[1];
        if (k != kb || m == 0 || n == 0 || k == 0 || 2.0 * m * n * k < EagerMinFlops || host.Tuned(m, n, k) != null) return;
        lock (a.Device.Sync)
        {
            ReadCache(host);
            if (host.Tuned(m, n, k) == null) Product(a.Device, m, n, k, transA, transB);
        }
    }

    /// <summary>Times every candidate for one shape; records the fastest unless the shape has a choice already.</summary>
    public static MatMulTuning Product(Device device, int m, int n, int k, bool transA, bool transB)
    {
        if (m <= 0 || n <= 0 || k <= 0)
            throw new ArgumentException($"TuneMatMul: sizes must be positive, got M={m}, N={n}, K={k}.");
        var s = new Shape(m, n, k, transA, transB);
        lock (device.Sync)
        {
            ReadCache(device.Host);
            return Record(device, s, Measure(device, s, null));
        }
    }

    private static MatMulTuning Record(Device device, Shape s, List<MatMulTrial> trials)
    {
        var host = device.Host;
        var rule = MatMulKernels.RuleChoice(host, s.M, s.N, s.K);
        var choice = Pick(trials, rule) ?? rule;
        if (host.Tuned(s.M, s.N, s.K) is { } earlier) choice = earlier;
        else if (trials.Any(t => t.Rejected == null)) Keep(host, s, choice);
        return new MatMulTuning(s.M, s.N, s.K, choice, trials);
    }

    // Records a shape's choice on the device and in the tuning cache file, if there is one.
    private static void Keep(KernelHost host, Shape s, MatMulChoice choice)
    {
        host.SetTuned(s.M, s.N, s.K, choice);
        WriteCache(host, s.M, s.N, s.K, choice);
    }

    // Each candidate (those `allowed` passes) launched once and checked, then timed.
    private static List<MatMulTrial> Measure(Device device, Shape s, Func<MatMulChoice, bool>? allowed)
    {
        lock (device.Sync)
        {
            var host = device.Host;
            using var buffers = new Buffers(device);
            var p = new Problem(buffers, s);
            var trials = new List<MatMulTrial>();
            foreach (var candidate in MatMulKernels.Candidates(host, s.M, s.N, s.K))
            {
                if (allowed != null && !allowed(candidate)) continue;
                var trial = host.With(candidate);
                trials.Add(Trial(device, candidate, () => Clock?.Invoke(s.Key, candidate), buffers, [p], (h, scratch) => p.Launch(h, scratch),
                    trial, MatMulKernels.SplitKScratch(trial, s.M, s.N, s.K)));
            }
            return trials;
        }
    }

    // Two paired products: their winners if those share a launch; else the faster of the winners one
    // after the other and the best agreeing pair of choices in one launch.
    private static void Pair(Device device, Shape a, Shape b)
    {
        var host = device.Host;
        if (host.Tuned(a.M, a.N, a.K) != null || host.Tuned(b.M, b.N, b.K) != null || a.Key == b.Key)
        {
            foreach (var s in new[] { a, b })
                if (host.Tuned(s.M, s.N, s.K) == null) Record(device, s, Measure(device, s, null));
            return;
        }
        var ta = Measure(device, a, null);
        var tb = Measure(device, b, null);
        if (Pick(ta, MatMulKernels.RuleChoice(host, a.M, a.N, a.K)) is not { } ca || Pick(tb, MatMulKernels.RuleChoice(host, b.M, b.N, b.K)) is not { } cb)
        {
            Record(device, a, ta);
            Record(device, b, tb);
            return;
        }
        bool Together(MatMulChoice x, MatMulChoice y) =>
            MatMulKernels.PairInOneLaunch(host.WithChoices([new(a.Key, x), new(b.Key, y)]), a.M, a.N, a.K, b.M, b.N, b.K);
        if (!Together(ca, cb))
        {
            double apart = TimeOf(ta, ca) + TimeOf(tb, cb);
            var (best, bestUs) = ((ca, cb), apart);
            foreach (var (x, y) in Agreeing(ta, tb).Where(o => Together(o.X, o.Y)))
            {
                double us = TimePair(device, a, b, x, y);
                if (us < bestUs) (best, bestUs) = ((x, y), us);
            }
            (ca, cb) = best;
        }
        Keep(host, a, ca);
        Keep(host, b, cb);
    }

    private static double TimeOf(List<MatMulTrial> trials, MatMulChoice c) => trials.First(t => t.Candidate == c).Microseconds;

    // Pairs of accepted choices that may share a launch: the same team of warps, or for each tiled
    // group the fastest choice of each product on it whose slices are summed in its own launch.
    private static IEnumerable<(MatMulChoice X, MatMulChoice Y)> Agreeing(List<MatMulTrial> a, List<MatMulTrial> b)
    {
        var okA = a.Where(t => t.Rejected == null).ToList();
        var okB = b.Where(t => t.Rejected == null).ToList();
        foreach (var x in okA.Where(t => t.Candidate.Path == MatMulPath.Warp))
            foreach (var y in okB.Where(t => t.Candidate.Path == MatMulPath.Warp && t.Candidate.WarpTeam == x.Candidate.WarpTeam))
                yield return (x.Candidate, y.Candidate);
        static bool OneLaunch(MatMulChoice c) => c.Path == MatMulPath.Tiled && (c.SplitK == 1 || c.SplitKInOneLaunch);
        foreach (var group in okA.Where(t => OneLaunch(t.Candidate)).Select(t => t.Candidate.TiledGroup).Distinct())
        {
            var x = okA.Where(t => OneLaunch(t.Candidate) && t.Candidate.TiledGroup == group).MinBy(t => t.Microseconds);
            var y = okB.Where(t => OneLaunch(t.Candidate) && t.Candidate.TiledGroup == group).MinBy(t => t.Microseconds);
            if (y.Candidate.Path == MatMulPath.Tiled) yield return (x.Candidate, y.Candidate);
        }
    }

    // Both products in one MatMulPair launch with these choices; infinity when it fails its check.
    private static double TimePair(Device device, Shape a, Shape b, MatMulChoice x, MatMulChoice y)
    {
        lock (device.Sync)
        {
            var host = device.Host;
            using var buffers = new Buffers(device);
            var pa = new Problem(buffers, a);
            var pb = new Problem(buffers, b);
            var trial = host.WithChoices([new(a.Key, x), new(b.Key, y)]);
            var t = Trial(device, x, () => PairClock?.Invoke(x, y), buffers, [pa, pb],
                (h, scratch) => MatMulKernels.MatMulPair(h, pa.Call, new FirstOp(), pb.Call, new FirstOp(), scratch),
                trial, MatMulKernels.MatMulPairScratch(trial, a.M, a.N, a.K, b.M, b.N, b.K));
            return t.Rejected == null ? t.Microseconds : double.PositiveInfinity;
        }
    }

    // The products' candidate: every product it writes checked against its double sums, then timed.
    private static MatMulTrial Trial(Device device, MatMulChoice candidate, Func<double?> clock, Buffers buffers, Problem[] problems,
        Action<KernelHost, ArrayView<float>> launch, KernelHost trial, long scratchLength)
    {
        var shape = problems[0].Shape;
        var (us, rejected) = Try(device, trial,
            () => scratchLength > 0 ? buffers.Take(scratchLength) : default,
            scratch => { foreach (var p in problems) Elementwise.Fill(device.Host, p.C, float.NaN); },
            launch,
            () => problems.Select(p => p.Wrong(buffers)).FirstOrDefault(w => w != null),
            clock, Repetitions(device, shape.M, shape.N, shape.K));
        return new(candidate, us, rejected);
    }

    // One candidate of any tuning (a product's kernel, a sum's chunk count): its scratch taken, its output
    // poisoned, launched once and checked (check: null, or what is wrong), then timed (the clock's
    // figure where a test gives one). (NaN, why) when it is wrong or throws.
    private static (double Microseconds, string? Rejected) Try(Device device, KernelHost trial, Func<ArrayView<float>> takeScratch,
        Action<ArrayView<float>> poison, Action<KernelHost, ArrayView<float>> launch, Func<string?> check, Func<double?> clock, int reps)
    {
        var host = device.Host;
        try
        {
            var scratch = takeScratch();
            poison(scratch);
            launch(trial, scratch);
            host.Synchronize();
            if (check() is { } wrong) return (double.NaN, wrong);
            return (clock() ?? Time(device, trial, h => launch(h, scratch), reps), null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            host.Synchronize();
            return (double.NaN, $"{e.GetType().Name}: {e.Message}");
        }
    }

    // The fastest accepted candidate of a tuning (a product's choice, a sum's chunk count); the rule's
    // where it was tried and is within the tie margin; null when none was accepted.
    private static T? Pick<T>(IEnumerable<(T Choice, double Microseconds, string? Rejected)> trials, T rule)
        where T : struct, IEquatable<T>
    {
        var ok = trials.Where(t => t.Rejected == null).ToList();
        if (ok.Count == 0) return null;
        var best = ok.MinBy(t => t.Microseconds);
        return ok.Any(t => t.Choice.Equals(rule) && t.Microseconds <= best.Microseconds * TieMargin) ? rule : best.Choice;
    }

    private static MatMulChoice? Pick(List<MatMulTrial> trials, MatMulChoice rule) =>
        Pick(trials.Select(t => (t.Candidate, t.Microseconds, t.Rejected)), rule);

    // Enough launches in one graph that a seed-sized product's few microseconds are measured, not the graph's launch.
    private static int Repetitions(Device device, int m, int n, int k) =>
        device.Accelerator is CudaAccelerator ? (int)Math.Clamp(4e8 / (2.0 * m * n * k), 1, 50) : 1;

    private static double Time(Device device, KernelHost trial, Action<KernelHost> launch, int reps)
    {
        var host = device.Host;
        double best = double.PositiveInfinity;
        if (device.Accelerator is CudaAccelerator acc)
        {
            host.Synchronize();
            using var graph = CudaGraph.Capture(acc, stream =>
            {
                var captured = trial.WithStream(stream);
                for (int r = 0; r < reps; r++) launch(captured);
            });
            graph.Launch(acc);
            host.Synchronize();
            for (int pass = 0; pass < 3; pass++)
            {
                var sw = Stopwatch.StartNew();
                graph.Launch(acc);
                host.Synchronize();
                best = Math.Min(best, sw.Elapsed.TotalMicroseconds / reps);
            }
            return best;
        }
        for (int pass = 0; pass < 2; pass++)
        {
            var sw = Stopwatch.StartNew();
            for (int r = 0; r < reps; r++) launch(trial);
            host.Synchronize();
            best = Math.Min(best, sw.Elapsed.TotalMicroseconds / reps);
        }
        return best;
    }

    // One product's random operands (uniform in [-1, 1), seeded by the shape) and its output.
    private sealed class Problem
    {
        private readonly float[] _a, _b;
        public readonly Shape Shape;
        public readonly ArrayView<float> A, B, C;

        public Problem(Buffers buffers, Shape s)
        {
            Shape = s;
            var rng = new Random(HashCode.Combine(s.M, s.N, s.K));
            _a = Uniform(rng, (long)s.M * s.K);
            _b = Uniform(rng, (long)s.K * s.N);
            A = buffers.Upload(_a);
            B = buffers.Upload(_b);
            C = buffers.Take((long)s.M * s.N);
        }

        public GemmCall Call => new(A, Shape.TransA, B, Shape.TransB, C, Shape.M, Shape.N, Shape.K, 1f, 0f, C, 0, 0);

        public void Launch(KernelHost h, ArrayView<float> scratch) =>
            MatMulKernels.MatMul(h, A, Shape.TransA, B, Shape.TransB, C, Shape.M, Shape.N, Shape.K, scratch: scratch);

        public string? Wrong(Buffers buffers) =>
            Tune.Wrong(_a, _b, buffers.Download(C), Shape.M, Shape.N, Shape.K, Shape.TransA, Shape.TransB);
    }

    private static Shape ShapeOf(OpSpec op, Tensor[] inputs)
    {
        int[][] shapes = [inputs[0].ShapeArray, inputs[1].ShapeArray];
        return new(Executor.ProductRows(op, shapes), Executor.ProductCols(op, shapes), Executor.ProductDepth(op, shapes), op.Flag1, op.Flag2);
    }

    // 64 sampled entries against a double sum: null when each is within 1e-4 of sum|a b|.
    internal static string? Wrong(float[] a, float[] b, float[] c, int m, int n, int k, bool ta, bool tb)
    {
        var r = new Random(7);
        for (int s = 0; s < 64; s++)
        {
            int i = r.Next(m), j = r.Next(n);
            double sum = 0, mag = 0;
            for (int p = 0; p < k; p++)
            {
                double av = ta ? a[(long)p * m + i] : a[(long)i * k + p];
                double bv = tb ? b[(long)j * k + p] : b[(long)p * n + j];
                sum += av * bv;
                mag += Math.Abs(av * bv);
            }
            double got = c[(long)i * n + j];
            if (!(Math.Abs(got - sum) <= 1e-4 * mag + 1e-6))
                return $"C[{i}, {j}] = {got}, expected {sum:G6}";
        }
        return null;
    }

    private static float[] Uniform(Random rng, long count)
    {
        var v = new float[count];
        for (long i = 0; i < count; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }

    // The trial's device buffers, from the device's allocator, given back together.
    private sealed class Buffers(Device device) : IDisposable
    {
        private readonly List<Storage> _taken = [];

        public ArrayView<float> Take(long length)
        {
            var s = device.Allocator.Take(length);
            _taken.Add(s);
            return s.View;
        }

        public ArrayView<float> Upload(float[] data)
        {
            var view = Take(data.Length);
            view.CopyFromCPU(device.Host.Stream, data);
            return view;
        }

        public float[] Download(ArrayView<float> view)
        {
            var data = new float[view.Length];
            view.CopyToCPU(device.Host.Stream, data);
            device.Host.Synchronize();
            return data;
        }

        public void Dispose()
        {
            device.Host.Synchronize();
            foreach (var s in _taken) s.Release();
        }
    }
}
