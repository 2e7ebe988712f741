// Sums over some axes of a rank <= 4 tensor (Reduce.cs has the sums over all elements). Axes that
// form one run are summed as (outer, r, inner): a thread per output walking down r when inner > 1,
// a group per row when the run is trailing and groups are wide (a GPU); any other set walks the
// reduced sub-box per output element. A thread per output leaves a GPU mostly idle when there are
// few outputs and a long r (8192 columns of an 8192x8192 batch sum: 8192 threads, each 8192 loads in
// a row), so then r is cut into chunks, a thread per (output, chunk), and a second pass sums the
// chunks in order. Every order is fixed, so the same input gives the same bits.
// The launchers take alpha and beta (y = alpha * sums + beta * y): a compiled SGD step updates a bias
// from its gradient's batch sum in the sum's own launch.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Geometry of a sum over axes: output extents and the input's strides and reduced extents.</summary>
public readonly struct ReduceArgs
{
    /// <summary>Output extents of dims 1..3 with reduced dims as 1 (rank padded to 4).</summary>
    public readonly int O1, O2, O3;

    /// <summary>Input element strides of dims 0..3.</summary>
    public readonly int S0, S1, S2, S3;

    /// <summary>Extents walked per output element: the input extent on reduced dims, else 1.</summary>
    public readonly int R1, R2, R3;

    /// <summary>Elements summed per output element.</summary>
    public readonly int RCount;

    /// <summary>Builds the geometry for summing a tensor of shape inShape over axes.</summary>
    /// <param name="inShape">Input shape (rank 0 to 4).</param>
    /// <param name="axes">Axes to sum, each in [0, rank).</param>
    public ReduceArgs(ReadOnlySpan<int> inShape, ReadOnlySpan<int> axes)
    {
        if (inShape.Length > 4) throw new ArgumentException($"Sum supports rank <= 4, got rank {inShape.Length}.");
        var ext = new[] { 1, 1, 1, 1 };
        for (int i = 0; i < inShape.Length; i++) ext[4 - inShape.Length + i] = inShape[i];
        var red = new bool[4];
        foreach (var ax in axes)
        {
            if (ax < 0 || ax >= inShape.Length) throw new ArgumentException($"Sum: axis {ax} out of range for rank {inShape.Length}.");
            red[4 - inShape.Length + ax] = true;
        }
        var s = new int[4];
        int st = 1;
        for (int d = 3; d >= 0; d--) { s[d] = st; st *= ext[d]; }
        S0 = s[0]; S1 = s[1]; S2 = s[2]; S3 = s[3];
        O1 = red[1] ? 1 : ext[1]; O2 = red[2] ? 1 : ext[2]; O3 = red[3] ? 1 : ext[3];
        int r0 = red[0] ? ext[0] : 1;
        R1 = red[1] ? ext[1] : 1; R2 = red[2] ? ext[2] : 1; R3 = red[3] ? ext[3] : 1;
        RCount = r0 * R1 * R2 * R3;
    }

    /// <summary>Input index of output element o's first summand (o's position, the reduced dims at 0).</summary>
    /// <param name="o">Linear index into the output.</param>
    public int Base(int o) => Index4.Offset(o, O1, O2, O3, S0, S1, S2, S3);

    /// <summary>Offset from Base of the q-th summand, q in [0, RCount), in the order the sums add them.</summary>
    /// <param name="q">The summand's number.</param>
    public int Offset(int q) => Index4.Offset(q, R1, R2, R3, S0, S1, S2, S3);
}

public static partial class Reduce
{
    // ---------------------------------------------------------------- kernels

    /// <summary>
    /// x viewed as (outer, r, inner): y[o * inner + i] = sum over k of x[(o * r + k) * inner + i]. One
    /// thread per output; neighbouring threads read neighbouring elements (coalesced), no index
    /// arithmetic in the loop. For contiguous reduced axes with inner > 1 (a bias gradient's batch sum).
    /// </summary>
    internal static void SumMiddleKernel(
        ArrayView<float> x,   // (outer, r, inner) contiguous
        ArrayView<float> y,   // (outer, inner)
        int outer,
        int r,
        int inner,
        float alpha,
        float beta)
    {
        int outN = outer * inner;
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < outN; idx += stride)
        {
            int o = idx / inner, i = idx - o * inner;
            int p = o * r * inner + i;
            float s = 0f;
            for (int k = 0; k < r; k++, p += inner) s += x[p];
            Put(y, idx, s, alpha, beta);
        }
    }

    /// <summary>
    /// x viewed as (outer, r, inner) with r cut into chunks rows deep (the last may be shorter):
    /// partial[(o * chunks + c) * inner + i] = the sum of chunk c of column (o, i), down the rows in
    /// order. SumMiddleKernel over partial as (outer, chunks, inner) then adds the chunks in order.
    /// </summary>
    internal static void SumMiddleChunksKernel(
        ArrayView<float> x,        // (outer, r, inner) contiguous
        ArrayView<float> partial,  // (outer, chunks, inner)
        int outer,
        int r,
        int inner,
        int chunk,
        int chunks)
    {
        int n = outer * chunks * inner;
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < n; idx += stride)
        {
            int t = idx / inner, i = idx - t * inner;
            int o = t / chunks, c = t - o * chunks;
            int k0 = c * chunk, k1 = k0 + chunk < r ? k0 + chunk : r;
            int p = (o * r + k0) * inner + i;
            float s = 0f;
            for (int k = k0; k < k1; k++, p += inner) s += x[p];
            partial[idx] = s;
        }
    }

    /// <summary>
    /// x viewed as (rows, r): y[row] = sum of the row, one group per row (grid-striding over rows), the
    /// group's threads striding along the row and meeting in a tree. For trailing reduced axes.
    /// </summary>
    internal static void SumRowsKernel(
        ArrayView<float> x,   // (rows, r) contiguous
        ArrayView<float> y,   // (rows)
        int rows,
        int r,
        float alpha,
        float beta)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        for (int row = Grid.IdxX; row < rows; row += Grid.DimX)
        {
            float s = 0f;
            int start = row * r, dim = Group.DimX, k = Group.IdxX;
            // Four loads in flight, added in the one-at-a-time order (SumMapKernel says why).
            for (; k < r - 3 * dim; k += 4 * dim)
            {
                float v0 = x[start + k], v1 = x[start + k + dim], v2 = x[start + k + 2 * dim], v3 = x[start + k + 3 * dim];
                s += v0;
                s += v1;
                s += v2;
                s += v3;
            }
            for (; k < r; k += dim) s += x[start + k];
            GroupSum(shared, y, row, s, alpha, beta);
        }
    }

    /// <summary>y[o] = sum of x over the reduced axes at output position o.</summary>
    internal static void SumAxesKernel(
        ArrayView<float> x,   // input, contiguous, rank <= 4
        ArrayView<float> y,   // (outN) output with reduced dims of extent 1
        int outN,
        ReduceArgs r,
        float alpha,
        float beta)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int o = Grid.GlobalIndex.X; o < outN; o += stride)
        {
            int baseIdx = r.Base(o);
            float s = 0f;
            for (int q = 0; q < r.RCount; q++) s += x[baseIdx + r.Offset(q)];
            Put(y, o, s, alpha, beta);
        }
    }

    // ---------------------------------------------------------------- launchers

    /// <summary>Scratch elements SumAxes needs for this sum (0 when it sums in one pass).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="xShape">Shape of x (rank 0 to 4).</param>
    /// <param name="axes">Axes to sum.</param>
    public static long SumAxesScratch(KernelHost host, ReadOnlySpan<int> xShape, ReadOnlySpan<int> axes)
    {
        if (!Contiguous(xShape, axes, out int outer, out int r, out int inner) || ByRows(host, r, inner))
            return 0;
        int chunks = MiddleChunks(host, outer, r, inner, out _);
        return chunks == 1 ? 0 : (long)outer * chunks * inner;
    }

    // Whether a run is summed a group per row (SumRowsKernel): a trailing run (inner 1) of 64 or more,
    // on wide groups.
    private static bool ByRows(KernelHost host, int r, int inner) => inner == 1 && r >= 64 && host.ReduceGroupSize >= 32;

    // How many chunks a middle run's r is cut into (1: a thread per output walks all of r), and their
    // depth. Cut when the outputs fill under half the device's resident threads and there is work
    // enough (a million elements, at least 64 rows) for a second launch to pay; a chunk is at least
    // 32 rows. KernelHost.SumChunks forces a count (tests, the tuner's trials); where the host follows
    // the tuned table, the count autotuning recorded for the shape.
    private static int MiddleChunks(KernelHost host, int outer, int r, int inner, out int chunk)
    {
        int chunks = host.SumChunks ?? (host.FollowsTuning ? host.TunedSumChunks(outer, r, inner) : null) ?? RuleChunks(host, outer, r, inner);
        chunks = Math.Clamp(chunks, 1, Math.Max(1, r));
        chunk = (r + chunks - 1) / chunks;
        return chunk == 0 ? 1 : (r + chunk - 1) / chunk;
    }

    private static int RuleChunks(KernelHost host, int outer, int r, int inner)
    {
        long outN = (long)outer * inner;
        long resident = (long)host.MaxGroups * host.GroupSize;
        int chunks = 1;
        if (outN * 2 <= resident && r >= 64 && outN * r >= 1 << 20)
            chunks = (int)Math.Clamp(resident / Math.Max(1, outN), 1, r / 32);
        return chunks;
    }

    /// <summary>
    /// Where SumAxes sums these axes of this shape a thread per output down a middle run (x as
    /// (outer, r, inner), summed over r), that run; else false (a row per group, or the general kernel).
    /// Those sums cut r into chunks, which autotuning may choose.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="xShape">Shape of x.</param>
    /// <param name="axes">Axes to sum.</param>
    /// <param name="outer">Product of the extents before the run.</param>
    /// <param name="r">Product of the summed extents.</param>
    /// <param name="inner">Product of the extents after the run.</param>
    public static bool MiddleRun(KernelHost host, ReadOnlySpan<int> xShape, ReadOnlySpan<int> axes, out int outer, out int r, out int inner) =>
        Contiguous(xShape, axes, out outer, out r, out inner) && !ByRows(host, r, inner);

    /// <summary>The chunk counts autotuning times for a middle-run sum: the rule's first, then 1, 2, 4, ... while a chunk keeps 32 rows.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="outer">Product of the extents before the run.</param>
    /// <param name="r">Product of the summed extents.</param>
    /// <param name="inner">Product of the extents after the run.</param>
    public static IReadOnlyList<int> SumChunkCandidates(KernelHost host, int outer, int r, int inner)
    {
        var list = new List<int> { MiddleChunks(host.WithSumChunks(RuleChunks(host, outer, r, inner)), outer, r, inner, out _) };
        for (int ask = 1; ask == 1 || r / ask >= 32; ask *= 2)
        {
            int chunks = MiddleChunks(host.WithSumChunks(ask), outer, r, inner, out _);
            if (!list.Contains(chunks)) list.Add(chunks);
        }
        return list;
    }

    // Whether the reduced axes are one run of neighbouring axes, and x's shape as (outer, r, inner) around them.
    private static bool Contiguous(ReadOnlySpan<int> shape, ReadOnlySpan<int> axes, out int outer, out int r, out int inner)
    {
        outer = r = inner = 1;
        if (axes.Length == 0) return false;
        var sorted = axes.ToArray();
        Array.Sort(sorted);
        for (int i = 1; i < sorted.Length; i++)
            if (sorted[i] != sorted[i - 1] + 1) return false;
        for (int d = 0; d < shape.Length; d++)
        {
            if (d < sorted[0]) outer *= shape[d];
            else if (d <= sorted[^1]) r *= shape[d];
            else inner *= shape[d];
        }
        return true;
    }

    /// <summary>y = sum of x over axes; y has x's shape with the reduced axes of extent 1.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input of shape xShape.</param>
    /// <param name="xShape">Shape of x (rank 0 to 4).</param>
    /// <param name="axes">Axes to sum.</param>
    /// <param name="y">Output with the product of the kept extents as length.</param>
    /// <param name="alpha">Scale of the sums.</param>
    /// <param name="beta">Scale of the existing y (0: y is write-only); y = alpha * sums + beta * y.</param>
    /// <param name="scratch">SumAxesScratch(host, xShape, axes) elements when that is not 0; else unused.</param>
    public static void SumAxes(KernelHost host, ArrayView<float> x, ReadOnlySpan<int> xShape,
        ReadOnlySpan<int> axes, ArrayView<float> y, float alpha = 1f, float beta = 0f, ArrayView<float> scratch = default)
    {
        Check.Length("SumAxes", "x", x, xShape);
        var r = new ReduceArgs(xShape, axes);
        long outN = Check.Elements(xShape) / Math.Max(1, r.RCount);
        if (r.RCount == 0) outN = 1;
        foreach (var ax in axes) if (xShape[ax] == 0) outN = y.Length; // empty reduced axis: sum is 0
        Check.Length("SumAxes", "y", y, outN);
        if (y.Length == 0) return;
        if (Contiguous(xShape, axes, out int outer, out int rr, out int inner))
        {
            // A group per row pays where groups are wide (a GPU); the CPU accelerator's groups of 2 would
            // spend more on barriers than on adds.
            if (ByRows(host, rr, inner))
            {
                if (host.HostLoops) { HostSumRows(host, x, y, outer, rr, alpha, beta); return; }
                if (host.Recorder is { } rowsRecorder)
                {
                    RecordReduceGroup(host, "SumRows");
                    rowsRecorder.Add(new SumRowsPhase(x, y, outer, rr, alpha, beta), "Sum of rows");
                    return;
                }
                var kr = host.Load("SumRows", null, acc =>
                    acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, float, float>(SumRowsKernel));
                int groups = (int)Math.Clamp(outer, 1, host.MaxGroups);
                kr(host.Stream, new KernelConfig(groups, host.ReduceGroupSize), x, y, outer, rr, alpha, beta);
                return;
            }
            int chunks = MiddleChunks(host, outer, rr, inner, out int chunk);
            Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, float, float> Middle() =>
                host.Load("SumMiddle", null, acc =>
                    acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int, float, float>(SumMiddleKernel));
            if (chunks == 1)
            {
                if (host.HostLoops) { HostSumMiddle(host, x, y, outer, rr, inner, chunk, 1, alpha, beta); return; }
                if (host.Recorder is { } middleRecorder)
                {
                    middleRecorder.Add(new SumMiddlePhase(x, y, outer, rr, inner, alpha, beta), "Sum down columns");
                    return;
                }
                Middle()(host.Stream, host.GridStride(y.Length), x, y, outer, rr, inner, alpha, beta);
                return;
            }
            long need = (long)outer * chunks * inner;
            if (scratch.Length < need)
                throw new ArgumentException($"SumAxes: summing {rr} rows in {chunks} chunks needs a scratch of {need} elements, got {scratch.Length}. Ask SumAxesScratch first.");
            if (host.HostLoops) { HostSumMiddle(host, x, y, outer, rr, inner, chunk, chunks, alpha, beta); return; }
            var partial = scratch.SubView(0, need);
            if (host.Recorder is { } chunkRecorder)
            {
                chunkRecorder.Add(new SumMiddleChunksPhase(x, partial, outer, rr, inner, chunk, chunks), "Sum down column chunks");
                chunkRecorder.Add(new SumMiddlePhase(partial, y, outer, chunks, inner, alpha, beta), "Sum of chunks");
                return;
            }
            var kc = host.Load("SumMiddleChunks", null, acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int, int, int>(SumMiddleChunksKernel));
            kc(host.Stream, host.GridStride(need), x, partial, outer, rr, inner, chunk, chunks);
            Middle()(host.Stream, host.GridStride(y.Length), partial, y, outer, chunks, inner, alpha, beta);
            return;
        }
        if (host.HostLoops) { HostSumAxes(host, x, y, r, alpha, beta); return; }
        if (host.Recorder is { } recorder)
        {
            recorder.Add(new SumAxesPhase(x, y, (int)y.Length, r, alpha, beta), "Sum over axes");
            return;
        }
        var k = host.Load("SumAxes", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, ReduceArgs, float, float>(SumAxesKernel));
        k(host.Stream, host.GridStride(y.Length), x, y, (int)y.Length, r, alpha, beta);
    }
}
