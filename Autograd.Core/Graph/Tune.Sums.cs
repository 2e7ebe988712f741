// Tuning sums along a dim: a sum that SumAxes takes a thread per output down a middle run
// (x as (outer, r, inner), summed over r) cuts r into chunks when the outputs are too few to fill the
// device, and sums the chunks' partials in a second launch. How many chunks pays turns on the
// device's memory latency and resident threads, so on a device that autotunes, each such shape's
// chunk counts are timed like the products' candidates (a CUDA graph on CUDA, each result checked
// against double sums) and the fastest is recorded (KernelHost.SetTunedSumChunks).
// Graph.Compile tunes every such sum of its step (its scratch is planned for the choice); an eager
// sum of at least a million elements is tuned on its first use.
using System.Diagnostics;
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime.Cuda;

namespace AutogradNet;

internal static partial class Tune
{
    /// <summary>Test seam: when set, gives the time of a chunk count in place of the timer.</summary>
    internal static Func<int, double>? SumClock { get; set; }

    /// <summary>Eager sums of at least this many elements are tuned on first use.</summary>
    internal static long EagerSumMinElements { get; set; } = 1 << 20;

    // A sum node of a compiled step whose chunks autotuning decides: a plain sum (or one folded into an
    // update) along a middle run, not over all axes.
    private static bool TunesSum(Node node, KernelHost host, out (int Outer, int R, int Inner) run)
    {
        run = default;
        if (node.Op.Kind != Prim.Sum || node.Op.Payload is not (null or SumInto)) return false;
        var shape = node.Inputs[0].ShapeArray;
        if (Executor.IsSumAll(node.Op, shape) || Tensor.Elements(shape) == 0) return false;
        if (!Reduce.MiddleRun(host, shape, node.Op.Ints!, out int outer, out int r, out int inner)) return false;
        run = (outer, r, inner);
        return true;
    }

    /// <summary>Before an eager sum along dims: where the device autotunes, tunes a big middle-run sum it has not tuned.</summary>
    public static void BeforeEagerSum(Tensor x, int[] axes)
    {
        if (Tracer.Current != null || x.IsSymbolic || x.IsDisposed || x.NumElements < EagerSumMinElements) return;
        var host = x.Device.Host;
        if (!host.FollowsTuning || axes.Length == x.ShapeArray.Length) return;
        if (!Reduce.MiddleRun(host, x.ShapeArray, axes, out int outer, out int r, out int inner) || host.TunedSumChunks(outer, r, inner) != null) return;
        lock (x.Device.Sync)
            if (host.TunedSumChunks(outer, r, inner) == null) Sum(x.Device, outer, r, inner);
    }

    /// <summary>Times each chunk count for a sum of (outer, r, inner) over r and records the fastest
    /// (the rule's within 3%) unless the shape has a count already; returns (chunks, microseconds or NaN, rejection) per candidate.</summary>
    public static IReadOnlyList<(int Chunks, double Microseconds, string? Rejected)> Sum(Device device, int outer, int r, int inner)
    {
        lock (device.Sync)
        {
            var host = device.Host;
            var candidates = Reduce.SumChunkCandidates(host, outer, r, inner);
            var trials = new List<(int Chunks, double Microseconds, string? Rejected)>();
            using var buffers = new Buffers(device);
            var rng = new Random(HashCode.Combine(outer, r, inner));
            var hx = Uniform(rng, (long)outer * r * inner);
            var x = buffers.Upload(hx);
            var y = buffers.Take((long)outer * inner);
            int[] shape = [outer, r, inner];
            int[] axes = [1];
            // One scratch for every candidate: the most chunks' partials.
            var partials = buffers.Take(Math.Max(1, (long)outer * candidates.Max() * inner));
            foreach (int chunks in candidates)
            {
                var (us, rejected) = Try(device, host.WithSumChunks(chunks),
                    () => partials,
                    _ => Elementwise.Fill(host, y, float.NaN),
                    (h, scratch) => Reduce.SumAxes(h, x, shape, axes, y, scratch: scratch),
                    () => WrongSums(hx, buffers.Download(y), outer, r, inner),
                    () => SumClock?.Invoke(chunks), SumRepetitions(device, (long)outer * r * inner));
                trials.Add((chunks, us, rejected));
            }
            if (Pick(trials, candidates[0]) is { } choice && host.TunedSumChunks(outer, r, inner) == null)
            {
                host.SetTunedSumChunks(outer, r, inner, choice);
                WriteCache(host, outer, r, inner, choice);
            }
            return trials;
        }
    }

    private static int SumRepetitions(Device device, long elements) =>
        device.Accelerator is CudaAccelerator ? (int)Math.Clamp(2e7 / Math.Max(1, elements), 1, 50) : 1;

    // 32 sampled outputs against double sums: null when each is within 1e-4 of its sum of |x|.
    internal static string? WrongSums(float[] x, float[] y, int outer, int r, int inner)
    {
        var rng = new Random(11);
        for (int s = 0; s < 32; s++)
        {
            int o = rng.Next(outer), i = rng.Next(inner);
            double sum = 0, mag = 0;
            for (int p = 0; p < r; p++)
            {
                double v = x[((long)o * r + p) * inner + i];
                sum += v;
                mag += Math.Abs(v);
            }
            double got = y[(long)o * inner + i];
            if (!(Math.Abs(got - sum) <= 1e-4 * mag + 1e-6)) return $"y[{o}, {i}] = {got}, expected {sum:G6}";
        }
        return null;
    }
}
