// The sums as host code on the CPU accelerator: the same adds in the same order as the kernels on
// that accelerator's grid, so the bits are the kernels'.
// - Sums over all elements (SumMapKernel, then SumPartialsKernel): for SumAll and SumAllMap where
//   KernelHost.HostLoops is on, and for a product's SumTail in the host SGEMM (MatMulKernels.Sum.cs),
//   whose product is host code already.
// - Sums over axes (SumMiddleKernel and its chunks, SumRowsKernel, SumAxesKernel) where HostLoops is on.
// Why: an ILGPU launch on the CPU accelerator costs 150-300 us of thread wake-ups, more than summing
// a loss's few thousand elements (HostLoops.cs). Never used on a GPU.
using System.Buffers;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class Reduce
{
    /// <summary>The tail's sum over x (n elements, host memory): loss, and x = side(x, s) in place.</summary>
    internal static unsafe void HostSumAllMap<TMap, TSide>(KernelHost host, ArrayView<float> x, SumTail<TMap, TSide> tail)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (!host.IsCpu) throw new InvalidOperationException("Reduce: the host sum reads host memory and runs only on the CPU accelerator.");
        float* v = HostLoop.Ptr(x);
        SumOnHost(host, v, (float*)tail.Loss.LoadEffectiveAddressAsPtr(), v, (float*)tail.S.LoadEffectiveAddressAsPtr(), tail.SStride,
            tail.HasSide, (int)x.Length, tail.Map, tail.Side, tail.Scale);
    }

    // SumAll and SumAllMap where HostLoops is on (the launcher checked the sizes).
    private static unsafe void HostSumAllMap<TMap, TSide>(KernelHost host, ArrayView<float> x, ArrayView<float> y,
        TMap map, ArrayView<float> side, ArrayView<float> s, int sStride, TSide sideOp, bool hasSide, float scale)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        HostLoop.Begin(host, "Reduce.SumAllMap");
        SumOnHost(host, HostLoop.Ptr(x), HostLoop.Ptr(y), HostLoop.Ptr(side), HostLoop.Ptr(s), sStride, hasSide, (int)x.Length,
            map, sideOp, scale);
    }

    // y[0] = scale * the sum of map(v[i]) and, with a side, side[i] = sideOp(v[i], s[i * sStride]) (side may be v).
    private static unsafe void SumOnHost<TMap, TSide>(KernelHost host, float* v, float* y, float* side, float* s, int sStride, bool hasSide,
        int n, TMap map, TSide sideOp, float scale)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        int gs = host.ReduceGroupSize, groups = SumGroups(host, n);
        if (groups == 1)
        {
            *y = scale * GroupOnHost(v, side, s, sStride, hasSide, n, 0, gs, gs, map, sideOp);
            return;
        }
        // No allocation: a compiled step runs this every replay.
        float[] partial = ArrayPool<float>.Shared.Rent(groups);
        try
        {
            // Pass 1 (SumMapKernel): thread t of group g takes g * gs + t, then every stride-th element.
            HostLoop.Split(groups, new SumGroupsJob<TMap, TSide>(v, side, s, sStride, hasSide, n, gs, groups * gs, map, sideOp, partial), n);
            // Pass 2 (SumPartialsKernel): one group over the partials, as plain adds, scaled once.
            fixed (float* p = partial)
                *y = scale * GroupOnHost(p, null, null, 0, false, groups, 0, gs, gs, default(IdentityOp), default(FirstOp));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(partial);
        }
    }

    // One group's share of SumMapKernel: its gs threads' grid-stride sums, then GroupSum's tree.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float GroupOnHost<TMap, TSide>(float* v, float* side, float* s, int sStride, bool hasSide, int n,
        int first, int gs, int stride, TMap map, TSide sideOp)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (gs == 2)
        {
            // The cpu device's groups of 2: both lanes side by side, two independent chains of adds.
            float a0 = 0f, a1 = 0f;
            for (int i = first; i < n; i += stride)
            {
                float e0 = v[i];
                a0 += map.Apply(e0);
                if (hasSide) side[i] = sideOp.Apply(e0, s[i * sStride]);
                if (i + 1 >= n) break;
                float e1 = v[i + 1];
                a1 += map.Apply(e1);
                if (hasSide) side[i + 1] = sideOp.Apply(e1, s[(i + 1) * sStride]);
            }
            return a0 + a1;
        }
        Span<float> lanes = stackalloc float[gs];
        for (int t = 0; t < gs; t++)
        {
            float acc = 0f;
            for (int i = first + t; i < n; i += stride)
            {
                float e = v[i];
                acc += map.Apply(e);
                if (hasSide) side[i] = sideOp.Apply(e, s[i * sStride]);
            }
            lanes[t] = acc;
        }
        return Tree(lanes);
    }

    private readonly unsafe struct SumGroupsJob<TMap, TSide>(float* v, float* side, float* s, int sStride, bool hasSide, int n, int gs,
        int stride, TMap map, TSide sideOp, float[] partial) : IHostJob
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int g = from; g < to; g++)
                partial[g] = 1f * GroupOnHost(v, side, s, sStride, hasSide, n, g * gs, gs, stride, map, sideOp);
        }
    }

    // GroupSum's tree: lane t adds lane t + half, halving.
    private static float Tree(Span<float> lanes)
    {
        for (int half = lanes.Length / 2; half > 0; half /= 2)
            for (int t = 0; t < half; t++) lanes[t] += lanes[t + half];
        return lanes[0];
    }

    /// <summary>Whether the sum of all n elements takes one group (no second pass).</summary>
    internal static bool OneGroup(KernelHost host, int n) => SumGroups(host, n) == 1;

    // ---------------------------------------------------------------- sums over axes

    // SumMiddleKernel, with SumMiddleChunksKernel first when r is cut into chunks: each chunk summed
    // down its rows, then the chunks in order from 0 (the second pass starts its sum at 0 too).
    private static unsafe void HostSumMiddle(KernelHost host, ArrayView<float> x, ArrayView<float> y, int outer, int r, int inner,
        int chunk, int chunks, float alpha, float beta) =>
        HostLoop.For(host, y.Length, new SumMiddleJob(HostLoop.Ptr(x), HostLoop.Ptr(y), r, inner, chunk, chunks, alpha, beta), x.Length);

    private readonly unsafe struct SumMiddleJob(float* x, float* y, int r, int inner, int chunk, int chunks, float alpha, float beta) : IHostJob
    {
        // Outputs summed side by side: a row of the block's inputs is read at once (one cache line
        // where inner is wide), and the block's sums are independent chains of adds. Each output still
        // adds its rows in the kernel's order.
        private const int Block = 32;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            Span<float> acc = stackalloc float[Block];
            Span<float> total = stackalloc float[Block];
            Span<int> start = stackalloc int[Block];
            for (int b0 = from; b0 < to; b0 += Block)
            {
                int len = Math.Min(Block, to - b0);
                for (int j = 0; j < len; j++)
                {
                    int idx = b0 + j, o = idx / inner;
                    start[j] = o * r * inner + (idx - o * inner);
                    total[j] = 0f;
                }
                for (int c = 0; c < chunks; c++)
                {
                    int k0 = c * chunk, k1 = Math.Min(k0 + chunk, r);
                    acc[..len].Clear();
                    for (int k = k0; k < k1; k++)
                    {
                        float* row = x + (long)k * inner;
                        for (int j = 0; j < len; j++) acc[j] += row[start[j]];
                    }
                    // One chunk: the sum itself (0 + s is s, bit for bit, as no sum of adds from +0 is -0).
                    for (int j = 0; j < len; j++) total[j] += acc[j];
                }
                for (int j = 0; j < len; j++)
                {
                    float s = total[j];
                    y[b0 + j] = beta == 0f ? alpha * s : alpha * s + beta * y[b0 + j];
                }
            }
        }
    }

    // SumRowsKernel: a group of gs threads per row, lane t taking t, t + gs, ..., then GroupSum's tree.
    private static unsafe void HostSumRows(KernelHost host, ArrayView<float> x, ArrayView<float> y, int rows, int r, float alpha, float beta) =>
        HostLoop.For(host, rows, new SumRowsJob(HostLoop.Ptr(x), HostLoop.Ptr(y), r, host.ReduceGroupSize, alpha, beta), x.Length);

    private readonly unsafe struct SumRowsJob(float* x, float* y, int r, int gs, float alpha, float beta) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            Span<float> lanes = stackalloc float[gs];
            for (int row = from; row < to; row++)
            {
                float* start = x + (long)row * r;
                for (int t = 0; t < gs; t++)
                {
                    float s = 0f;
                    for (int k = t; k < r; k += gs) s += start[k];
                    lanes[t] = s;
                }
                float sum = Tree(lanes);
                y[row] = beta == 0f ? alpha * sum : alpha * sum + beta * y[row];
            }
        }
    }

    // SumAxesKernel: each output walks its reduced sub-box in the kernel's order.
    private static unsafe void HostSumAxes(KernelHost host, ArrayView<float> x, ArrayView<float> y, ReduceArgs args, float alpha, float beta) =>
        HostLoop.For(host, y.Length, new SumAxesJob(HostLoop.Ptr(x), HostLoop.Ptr(y), args, alpha, beta), x.Length);

    // The summands in the kernel's order (q = ((q0 R1 + q1) R2 + q2) R3 + q3, q3 fastest) as four
    // nested loops, so no summand's offset is divided out of q: a sum over dims 0 and 2 of 8x50x100
    // took 352 us with three divisions a summand.
    private readonly unsafe struct SumAxesJob(float* x, float* y, ReduceArgs r, float alpha, float beta) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            int r0 = r.RCount / (r.R1 * r.R2 * r.R3);
            for (int o = from; o < to; o++)
            {
                float* p = x + r.Base(o);
                float s = 0f;
                for (int q0 = 0; q0 < r0; q0++)
                    for (int q1 = 0; q1 < r.R1; q1++)
                        for (int q2 = 0; q2 < r.R2; q2++)
                        {
                            float* run = p + q0 * r.S0 + q1 * r.S1 + q2 * r.S2;
                            for (int q3 = 0; q3 < r.R3; q3++) s += run[q3 * r.S3];
                        }
                y[o] = beta == 0f ? alpha * s : alpha * s + beta * y[o];
            }
        }
    }
}
