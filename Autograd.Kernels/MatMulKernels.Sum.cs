// The product with a sum of its output taken in its own launch (a loss and its gradient where the
// product that feeds them is made): the launcher of the SumTail (ProductTail.cs). It picks where the
// sum runs: as the tail of the Tiled, Small and Warp kernels when one group can sum C, as host code
// after the host SGEMM, and otherwise as Reduce.SumAllMap in a second launch.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>The most elements of C a SumTail sums in the product's launch (the seed's loss has 640).</summary>
    public const int MaxTailElements = 4096;

    /// <summary>
    /// The product of MatMul&lt;TEpi&gt; followed by a sum of all of C (the tail): loss = Scale * sum of
    /// Map(C(i, j)), and with a side op C(i, j) = Side(C(i, j), S). A loss and its gradient, taken where
    /// the product that feeds them is made. The sum runs in the product's launch when C is small
    /// enough for one group (SumInSameLaunch), on the host after the host SGEMM, and otherwise as
    /// Reduce.SumAllMap in a second launch; each order is fixed, so the bits are the same every run.
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <typeparam name="TMap">The op summed.</typeparam>
    /// <typeparam name="TSide">The side op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major; holds Side(C, S) afterwards when the tail has a side op, else C.</param>
    /// <param name="m">Rows of C, at least 1.</param>
    /// <param name="n">Columns of C, at least 1.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C (0: C is write-only).</param>
    /// <param name="scratch">MatMulSumScratch(host, m, n, k) elements.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer (see MatMul&lt;TEpi&gt;).</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    /// <param name="tail">The sum: its loss element, map, scale and side op.</param>
    public static void MatMulSum<TEpi, TMap, TSide>(KernelHost host,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> scratch,
        TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride, SumTail<TMap, TSide> tail)
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var g = Checked("MatMulSum", a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if (m == 0 || n == 0)
            throw new ArgumentException($"MatMulSum: C is {m}x{n}, an empty product has nothing to sum; run MatMul and write the loss yourself.");
        int mn = m * n;
        Check.Length("MatMulSum", "loss", tail.Loss, 1);
        if (tail.HasSide) Check.Length("MatMulSum", "s", tail.S, tail.SStride == 0 ? 1 : mn);
        long need = MatMulSumScratch(host, m, n, k);
        if (scratch.Length < need)
            throw new ArgumentException($"MatMulSum: scratch has {scratch.Length} elements, needs {need}. Ask MatMulSumScratch first.");
        host = host.ForShape(m, n, k);
        var path = Choose(host, m, n);
        var cView = c.SubView(0, mn);
        if (path == MatMulPath.Host)
        {
            HostMatMul(host, a, b, c, operand, g, epilogue);
            Reduce.HostSumAllMap(host, cView, tail);
            return;
        }
        if (SumInSameLaunch(host, m, n, k))
        {
            Launch(host, path, a, b, c, operand, g, scratch, epilogue, tail.WithArrival(host.TailArrival, host.OneThreadFences));
            return;
        }
        Launch(host, path, a, b, c, operand, g, scratch, epilogue, default(NoTail));
        if (tail.HasSide) Reduce.SumAllMap(host, cView, tail.Loss, scratch, tail.Map, cView, tail.S, tail.SStride, tail.Side, tail.Scale);
        else Reduce.SumAllMap(host, cView, tail.Loss, scratch, tail.Map, tail.Scale);
    }

    /// <summary>
    /// Whether MatMulSum sums C in the product's own launch: allowed (KernelHost.SumTailInLaunch), a
    /// Tiled, Small or Warp product whose last kernel has groups of a power of two up to MaxTailThreads
    /// threads, and a C of at most MaxTailElements that Reduce's sum would take in one group. (On the host SGEMM the sum is host
    /// code; elsewhere it is a second launch.)
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static bool SumInSameLaunch(KernelHost host, int m, int n, int k)
    {
        if (!host.SumTailInLaunch) return false;
        // One group walks all of C: past MaxTailElements (16 a thread on a GPU's 256) a second launch,
        // whose groups share the walk, costs less than the wait.
        if ((long)m * n > MaxTailElements || !Reduce.OneGroup(host, m * n)) return false;
        return TailThreads(host, m, n, k) > 0;
    }

    // Threads of the group that runs a product's tail (the last group of the launch that stores C),
    // or 0 where the product has no tail: a Tiled, Small or Warp product whose storing kernel has
    // groups of a power of two up to MaxTailThreads (the group sum's tree).
    private static int TailThreads(KernelHost host, int m, int n, int k)
    {
        host = host.ForShape(m, n, k);
        var path = Choose(host, m, n);
        if (path is not (MatMulPath.Tiled or MatMulPath.Small or MatMulPath.Warp)) return 0;
        // The tiled group, or the grid-stride kernels' group (Small, Warp, and the kernel that sums
        // split-K's slices in a second launch).
        bool sumKernelStores = SplitK(host, m, n, k) > 1 && !SumsInSameLaunch(host, TileGrid(host.TiledGroup, m, n));
        int threads = path == MatMulPath.Tiled && !sumKernelStores ? host.TiledGroup.X * host.TiledGroup.Y : host.GroupSize;
        return threads <= MaxTailThreads && (threads & (threads - 1)) == 0 ? threads : 0;
    }

    /// <summary>Scratch elements MatMulSum needs for this shape: split-K's slices, or the second launch's partial sums.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static long MatMulSumScratch(KernelHost host, int m, int n, int k) =>
        Math.Max(SplitKScratch(host, m, n, k), Reduce.SumAllScratch(host));
}
