// Sums: over all elements (two-stage tree: per-group partials, then one group) and over any set of
// axes of a rank <= 4 tensor. Axes that form one run are summed as (outer, r, inner): a thread per
// output walking down r when inner > 1, a group per row when the run is trailing; any other set walks
// the reduced sub-box per output element. A thread per output leaves a GPU mostly idle when there are
// few outputs and a long r (8192 columns of an 8192x8192 batch sum: 8192 threads, each 8192 loads in
// a row), so then r is cut into chunks, a thread per (output, chunk), and a second pass sums the
// chunks in order (SumMiddleChunksKernel, then SumMiddleKernel over the partials).
// Both are deterministic: a fixed grid sums in a fixed order, so the same input gives the same bits.
// SumAllMap is the fused form the compiled graph uses for a loss: it sums Map(x) without writing
// Map(x) anywhere, and can write a sibling elementwise result of x in the same pass (the loss's
// gradient, which needs x but not the sum), so loss and gradient cost one read of x.
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
}

/// <summary>Sum kernels and their launchers.</summary>
public static partial class Reduce
{
    private const int MaxGroup = 1024;

    // ---------------------------------------------------------------- kernels

    /// <summary>partial[group] = scale * the sum of this group's grid-stride share of x.</summary>
    internal static void SumPartialsKernel(
        ArrayView<float> x,        // (n)
        ArrayView<float> partial,  // (gridDim) one sum per group
        int n,
        float scale)               // 1, or a mean's 1/n on the final pass
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        int stride = Grid.DimX * Group.DimX;
        float s = 0f;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride) s += x[i];
        GroupSum(shared, partial, Grid.IdxX, s, scale, 0f);
    }

    // y[at] = alpha * (the sum of every thread's s) + beta * y[at], by a fixed tree (the same bits
    // every run; alpha 1 and beta 0 change no bit).
    private static void GroupSum(
        ArrayView<float> shared,   // (MaxGroup) the group's shared scratch
        ArrayView<float> y,        // the output
        int at,
        float s,
        float alpha,
        float beta)
    {
        int tid = Group.IdxX;
        shared[tid] = s;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (tid < half) shared[tid] += shared[tid + half];
            Group.Barrier();
        }
        if (tid == 0) Put(y, at, shared[0], alpha, beta);
        // The next use of shared (another row) must not overwrite shared[0] before thread 0 read it.
        Group.Barrier();
    }

    /// <summary>
    /// partial[group] = scale * the sum of Map(x[i]) over this group's grid-stride share; when hasSide
    /// is 1, also side[i] = Side(x[i], s[i * sStride]) for each i visited.
    /// </summary>
    internal static void SumMapKernel<TMap, TSide>(
        ArrayView<float> x,        // (n)
        ArrayView<float> partial,  // (gridDim) one sum per group
        ArrayView<float> side,     // (n) sibling output, when hasSide
        ArrayView<float> s,        // (n), or (1) with sStride 0: the sibling's second operand
        int n,
        int sStride,
        int hasSide,
        float scale,
        TMap map,
        TSide sideOp)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        int stride = Grid.DimX * Group.DimX;
        float acc = 0f;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            float v = x[i];
            acc += map.Apply(v);
            if (hasSide != 0) side[i] = sideOp.Apply(v, s[i * sStride]);
        }
        GroupSum(shared, partial, Grid.IdxX, acc, scale, 0f);
    }

    // y[at] = alpha * s + beta * y[at]; beta 0 never reads y. The axis sums take alpha and beta so that a
    // compiled SGD step can update a bias from its gradient's sum in the sum's own launch.
    private static void Put(ArrayView<float> y, int at, float s, float alpha, float beta) =>
        y[at] = beta == 0f ? alpha * s : alpha * s + beta * y[at];

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
            int start = row * r;
            for (int k = Group.IdxX; k < r; k += Group.DimX) s += x[start + k];
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
            int o3 = o % r.O3; int t = o / r.O3;
            int o2 = t % r.O2; t /= r.O2;
            int o1 = t % r.O1; int o0 = t / r.O1;
            int baseIdx = o0 * r.S0 + o1 * r.S1 + o2 * r.S2 + o3 * r.S3;
            float s = 0f;
            for (int q = 0; q < r.RCount; q++)
            {
                int q3 = q % r.R3; int u = q / r.R3;
                int q2 = u % r.R2; u /= r.R2;
                int q1 = u % r.R1; int q0 = u / r.R1;
                s += x[baseIdx + q0 * r.S0 + q1 * r.S1 + q2 * r.S2 + q3 * r.S3];
            }
            Put(y, o, s, alpha, beta);
        }
    }

    // ---------------------------------------------------------------- launchers

    /// <summary>Scratch elements SumAll needs on this host.</summary>
    /// <param name="host">The kernel host.</param>
    public static int SumAllScratch(KernelHost host) => host.MaxGroups;

    /// <summary>y[0] = sum of all elements of x.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    public static void SumAll(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch) =>
        // The identity map adds the same elements in the same order as a plain sum.
        SumAllMap("SumAll", host, x, y, scratch, default(IdentityOp), x, x, 0, default(FirstOp), hasSide: false, 1f);

    /// <summary>y[0] = sum of map(x[i]) over all i.</summary>
    /// <typeparam name="TMap">The op applied to each element before summing.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    /// <param name="map">The op.</param>
    /// <param name="scale">Multiplies the sum (a mean's 1/n); 1 changes no bit.</param>
    public static void SumAllMap<TMap>(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch, TMap map,
        float scale = 1f)
        where TMap : struct, IUnaryOp =>
        SumAllMap("SumAllMap", host, x, y, scratch, map, x, x, 0, default(FirstOp), hasSide: false, scale);

    /// <summary>
    /// y[0] = sum of map(x[i]) over all i, and in the same pass side[i] = sideOp(x[i], s[i * sStride]).
    /// </summary>
    /// <typeparam name="TMap">The op applied to each element before summing.</typeparam>
    /// <typeparam name="TSide">The sibling op: (x element, s element) -> side element.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    /// <param name="map">The op summed.</param>
    /// <param name="side">Sibling output, n elements; must not alias x or y.</param>
    /// <param name="s">The sibling's second operand: n elements (sStride 1) or 1 (sStride 0).</param>
    /// <param name="sStride">1, or 0 to broadcast s[0].</param>
    /// <param name="sideOp">The sibling op.</param>
    /// <param name="scale">Multiplies the sum (a mean's 1/n); 1 changes no bit.</param>
    public static void SumAllMap<TMap, TSide>(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch,
        TMap map, ArrayView<float> side, ArrayView<float> s, int sStride, TSide sideOp, float scale = 1f)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (sStride is not (0 or 1)) throw new ArgumentException($"SumAllMap: sStride must be 0 or 1, got {sStride}.");
        Check.Length("SumAllMap", "side", side, x.Length);
        Check.Length("SumAllMap", "s", s, sStride == 0 ? 1 : x.Length);
        SumAllMap("SumAllMap", host, x, y, scratch, map, side, s, sStride, sideOp, hasSide: true, scale);
    }

    // The two-pass sum behind SumAll and SumAllMap; op names the caller in error messages.
    private static void SumAllMap<TMap, TSide>(string op, KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch,
        TMap map, ArrayView<float> side, ArrayView<float> s, int sStride, TSide sideOp, bool hasSide, float scale)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        Check.Length(op, "y", y, 1);
        CheckScratch(op, host, scratch);
        int n = (int)x.Length;
        var k = host.Load("SumMap", typeof((TMap, TSide)), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float, TMap, TSide>(SumMapKernel));
        int groups = SumGroups(host, n);
        int gs = host.ReduceGroupSize;
        // The scale applies once, to the final sum: in this pass when it is the only one.
        k(host.Stream, new KernelConfig(groups, gs), x, groups == 1 ? y : scratch, side, s, n, sStride, hasSide ? 1 : 0,
            groups == 1 ? scale : 1f, map, sideOp);
        if (groups == 1) return;
        var sum = host.Load("SumPartials", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, float>(SumPartialsKernel));
        sum(host.Stream, new KernelConfig(1, gs), scratch.SubView(0, groups), y, groups, scale);
    }

    private static void CheckScratch(string op, KernelHost host, ArrayView<float> scratch)
    {
        if (scratch.Length < SumAllScratch(host))
            throw new ArgumentException($"{op}: scratch has {scratch.Length} elements, needs {SumAllScratch(host)}.");
    }

    // Up to 64 elements per thread, one group is cheaper than a second launch. On the CPU accelerator
    // a launch costs ~60 us of thread wake-ups, so one group takes up to 64K elements (~30 us of adds).
    private static int SumGroups(KernelHost host, int n)
    {
        int gs = host.ReduceGroupSize;
        if (n <= gs * 64 || (host.IsCpu && n <= 1 << 16)) return 1;
        return (int)Math.Clamp((n + gs - 1) / gs, 1, host.MaxGroups);
    }

    /// <summary>Scratch elements SumAxes needs for this sum (0 when it sums in one pass).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="xShape">Shape of x (rank 0 to 4).</param>
    /// <param name="axes">Axes to sum.</param>
    public static long SumAxesScratch(KernelHost host, ReadOnlySpan<int> xShape, ReadOnlySpan<int> axes)
    {
        if (!Contiguous(xShape, axes, out int outer, out int r, out int inner) || (inner == 1 && r >= 64 && host.ReduceGroupSize >= 32))
            return 0;
        int chunks = MiddleChunks(host, outer, r, inner, out _);
        return chunks == 1 ? 0 : (long)outer * chunks * inner;
    }

    // How many chunks a middle run's r is cut into (1: a thread per output walks all of r), and their
    // depth. Cut when the outputs fill under half the device's resident threads and there is work
    // enough (a million elements, at least 64 rows) for a second launch to pay; a chunk is at least
    // 32 rows. KernelHost.SumChunks forces a count (tests).
    private static int MiddleChunks(KernelHost host, int outer, int r, int inner, out int chunk)
    {
        long outN = (long)outer * inner;
        long resident = (long)host.MaxGroups * host.GroupSize;
        int chunks = 1;
        if (host.SumChunks is { } forced) chunks = forced;
        else if (outN * 2 <= resident && r >= 64 && outN * r >= 1 << 20)
            chunks = (int)Math.Clamp(resident / Math.Max(1, outN), 1, r / 32);
        chunks = Math.Clamp(chunks, 1, Math.Max(1, r));
        chunk = (r + chunks - 1) / chunks;
        return chunk == 0 ? 1 : (r + chunk - 1) / chunk;
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
            if (inner == 1 && rr >= 64 && host.ReduceGroupSize >= 32)
            {
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
                Middle()(host.Stream, host.GridStride(y.Length), x, y, outer, rr, inner, alpha, beta);
                return;
            }
            long need = (long)outer * chunks * inner;
            if (scratch.Length < need)
                throw new ArgumentException($"SumAxes: summing {rr} rows in {chunks} chunks needs a scratch of {need} elements, got {scratch.Length}. Ask SumAxesScratch first.");
            var partial = scratch.SubView(0, need);
            var kc = host.Load("SumMiddleChunks", null, acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int, int, int>(SumMiddleChunksKernel));
            kc(host.Stream, host.GridStride(need), x, partial, outer, rr, inner, chunk, chunks);
            Middle()(host.Stream, host.GridStride(y.Length), partial, y, outer, chunks, inner, alpha, beta);
            return;
        }
        var k = host.Load("SumAxes", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, ReduceArgs, float, float>(SumAxesKernel));
        k(host.Stream, host.GridStride(y.Length), x, y, (int)y.Length, r, alpha, beta);
    }
}
