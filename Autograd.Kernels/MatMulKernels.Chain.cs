// The chain's launcher and its stage (ProductChain.cs says what a chain tail is and why): a product,
// then small products run by its last group in the same launch. The launcher checks every stage's
// sizes when the stage is made (GroupProduct) and the product's when it launches; the stage's kernel
// code is GroupBlocks, beside the Small and Warp kernels' Block4x4 that it uses.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>
    /// The most multiply-adds (M * N * K) of one chain stage. One group does a stage alone: the seed's
    /// two (64K each) take 256 threads ~250 each; a stage 8x larger is better as a launch of its own.
    /// </summary>
    public const long MaxChainMacs = 1 << 18;

    /// <summary>The most stages a chain tail takes.</summary>
    public const int MaxChainStages = 4;

    /// <summary>
    /// Whether a product of this shape can end its launch with a chain tail: allowed
    /// (KernelHost.ChainTails) and a Tiled, Small or Warp product whose storing kernel's groups are a
    /// power of two up to MaxTailThreads (as for the sum tail, whose code a stage's sum is).
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static bool ChainInSameLaunch(KernelHost host, int m, int n, int k) =>
        host.ChainTails && m > 0 && n > 0 && TailThreads(host, m, n, k) > 0;

    /// <summary>
    /// A stage of a chain tail: C = Epi(alpha op(A) op(B) + beta C, E), run by the last group of the
    /// launch of the product (m0, n0, k0) that heads the chain, so its lanes suit that group.
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="head">The chain's first product (M, N, K): its launch's group runs the stage.</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer.</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    public static GroupProduct<TEpi, IdentityOp, FirstOp> GroupProduct<TEpi>(KernelHost host, (int M, int N, int K) head,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride)
        where TEpi : struct, IBinaryOp
    {
        var (g, lanes) = Stage(host, head, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        return new GroupProduct<TEpi, IdentityOp, FirstOp>(a, b, c, operand, g, epilogue, lanes, false, default, default, 1f, false, default, default, 0);
    }

    /// <summary>
    /// A stage of a chain tail with a sum: the product as GroupProduct&lt;TEpi&gt;, then the sum's
    /// loss = Scale * the sum of Map(C) and, with a side op, C = Side(C, S), as MatMulSum's tail.
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <typeparam name="TMap">The op summed.</typeparam>
    /// <typeparam name="TSide">The side op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="head">The chain's first product (M, N, K).</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer.</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    /// <param name="sum">The sum: its loss element, map, scale and side op.</param>
    public static GroupProduct<TEpi, TMap, TSide> GroupProductSum<TEpi, TMap, TSide>(KernelHost host, (int M, int N, int K) head,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride,
        SumTail<TMap, TSide> sum)
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var (g, lanes) = Stage(host, head, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if ((long)m * n > MaxTailElements)
            throw new ArgumentException($"GroupProductSum: C is {m}x{n}, over the {MaxTailElements} elements one group sums; run MatMulSum as a launch of its own.");
        Check.Length("GroupProductSum", "loss", sum.Loss, 1);
        if (sum.HasSide) Check.Length("GroupProductSum", "s", sum.S, sum.SStride == 0 ? 1 : m * n);
        return new GroupProduct<TEpi, TMap, TSide>(a, b, c, operand, g, epilogue, lanes, true, sum.Loss, sum.Map, sum.Scale,
            sum.HasSide, sum.Side, sum.S, sum.SStride);
    }

    // Checks a stage's sizes against the chain's head and picks its lanes.
    private static (GemmArgs G, int Lanes) Stage(KernelHost host, (int M, int N, int K) head,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> operand, int operandRowStride, int operandColStride)
    {
        const string op = "GroupProduct";
        var g = Checked(op, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if (m == 0 || n == 0 || k == 0)
            throw new ArgumentException($"{op}: C is {m}x{n} with K = {k}; a chain stage needs a non-empty product.");
        if ((long)m * n * k > MaxChainMacs)
            throw new ArgumentException($"{op}: {m}x{n}x{k} is {(long)m * n * k} multiply-adds, over the {MaxChainMacs} one group takes in a chain; launch it as a product of its own.");
        int threads = TailThreads(host, head.M, head.N, head.K);
        if (!host.ChainTails || threads == 0)
            throw new InvalidOperationException($"{op}: the product {head.M}x{head.N}x{head.K} that heads the chain cannot end its launch with a chain tail here (ChainInSameLaunch is false); launch the stages as products of their own.");
        return (g, ChainLanes(threads, host.Accelerator.WarpSize, m, n, k));
    }

    /// <summary>
    /// Lanes that split each 4x4 block's K in a chain stage run by a group of `threads`: the power of
    /// two up to a warp that makes the fewest round trips, counting a round of blocks as its trips of
    /// four k a lane plus a shuffle a halving. The seed's y = h w2 (48 blocks, K = 100) takes 4 lanes on
    /// groups of 256, one round of 7 trips; dH (400 blocks, K = 10) takes 1, two rounds of 3.
    /// </summary>
    /// <param name="threads">Threads of the group that runs the stage.</param>
    /// <param name="warpSize">Threads of a warp.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static int ChainLanes(int threads, int warpSize, int m, int n, int k)
    {
        long blocks = (long)((m + 3) / 4) * ((n + 3) / 4);
        int best = 1;
        long bestCost = long.MaxValue;
        for (int lanes = 1, halvings = 0; lanes <= warpSize && lanes <= threads; lanes *= 2, halvings++)
        {
            long slots = threads / lanes;
            long rounds = (blocks + slots - 1) / slots;
            long trips = (k + 4L * lanes - 1) / (4L * lanes);
            long cost = rounds * (trips + halvings);
            if (cost < bestCost) (best, bestCost) = (lanes, cost);
        }
        return best;
    }

    /// <summary>
    /// The product MatMul&lt;TEpi&gt; with a chain tail: once every group has stored C, the last one
    /// runs the tail's stages (each made by GroupProduct or GroupProductSum for this product) in the
    /// same launch. Only where ChainInSameLaunch says so; elsewhere run the product and each stage as
    /// launches of their own.
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <typeparam name="TStages">The stages.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="scratch">MatMulScratch(host, m, n, k) elements (split-K's slices).</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer.</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    /// <param name="tail">The stages.</param>
    public static void MatMulChain<TEpi, TStages>(KernelHost host,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> scratch,
        TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride, ChainTail<TStages> tail)
        where TEpi : struct, IBinaryOp
        where TStages : struct, IGroupStage
    {
        var g = Checked("MatMulChain", a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if (!ChainInSameLaunch(host, m, n, k))
            throw new InvalidOperationException($"MatMulChain: the product {m}x{n}x{k} cannot end its launch with a chain tail here "
                + $"(KernelHost.ChainTails {host.ChainTails}, kernel {Choose(host, m, n, k)}); ask ChainInSameLaunch first and launch the stages as products of their own.");
        long need = SplitKScratch(host, m, n, k);
        if (scratch.Length < need)
            throw new ArgumentException($"MatMulChain: scratch has {scratch.Length} elements, needs {need}. Ask MatMulScratch first.");
        host = host.ForShape(m, n, k);
        Launch(host, Choose(host, m, n), a, b, c, operand, g, scratch, epilogue, tail.WithArrival(host.TailArrival, host.OneThreadFences));
    }

    // A chain stage's blocks by the calling group: `lanes` neighbouring threads a block, each walking
    // k = lane, lane + lanes, ... (four a trip, their loads first), added by a shuffle tree; the
    // block's first lane stores it. Every thread takes the same trips, so all reach each shuffle.
    // A row chain's block starts at row0 (a multiple of 4), its g.M the block's last row + 1.
    internal static void GroupBlocks<TEpi>(
        ArrayView<float> a,   // (M, K) or (K, M) per g's strides
        ArrayView<float> b,   // (K, N) or (N, K) per g's strides
        ArrayView<float> c,   // (M, N) row-major
        ArrayView<float> e,   // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        TEpi epi,
        int lanes,            // a power of two dividing the warp
        int row0 = 0,         // the first row of C to compute, a multiple of 4
        int col0 = 0,         // the first column of 4x4 blocks to compute
        int cols = 0)         // columns of 4x4 blocks from col0 (0: all)
        where TEpi : struct, IBinaryOp
    {
        int tilesN = (g.N + 3) / 4, width = cols > 0 ? cols : tilesN, firstRow = row0 / 4;
        int first = firstRow * tilesN + col0, total = ((g.M + 3) / 4 - firstRow) * width;
        int tid = Group.LinearIndex, lane = tid % lanes, slots = Group.Dimension.Size / lanes;
        for (int u0 = 0; u0 < total; u0 += slots)
        {
            // The u-th block of the range, row by row; with every column, t = first + u.
            int u = u0 + tid / lanes, t = (firstRow + u / width) * tilesN + col0 + u % width;
            bool active = u < total;
            var block = new Block4x4(g, active ? t : first, tilesN);
            if (active) block.Walk(a, b, g, lane, lanes);
            if (lanes > 1) block.SumOverLanes(lanes);
            if (active && lane == 0) block.Store(c, e, g, epi);
        }
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that sets <see cref="ChainTails"/>: 1 on, 0 off (unset: off).</summary>
    public const string ChainVariable = "AUTOGRAD_CHAIN";

    /// <summary>
    /// Whether a compiled step may run the small products that follow a product in that product's
    /// launch, as its chain tail (MatMulKernels.MatMulChain; the seed's y, its loss and dH in h's
    /// launch: 2 launches a step instead of 4). Off by default: unmeasured on a GPU when written.
    /// Read when a step is compiled (Describe shows the chain) and checked at each launch.
    /// </summary>
    public bool ChainTails { get; set; } = SwitchFromEnvironment(ChainVariable, unset: false, "each product its own launch, the default", "chain tails", "");

    /// <summary>The environment variable that sets <see cref="OneThreadFences"/>: 1 on, 0 off (unset: off).</summary>
    public const string OneThreadFencesVariable = "AUTOGRAD_ONE_THREAD_FENCES";

    /// <summary>
    /// Whether the count-in that ends a launch with a tail (a loss's SumTail, a ChainTail) fences
    /// memory from thread 0 of each group only, after the group's barrier, as CUDA's grid sync does,
    /// rather than from every thread (the default). The same values either way; off by default until
    /// a GPU has timed it (the bench's floor rows time both count-ins, its seed rows both steps). Read
    /// at each launch, so a compiled step takes the value it was compiled (captured) under.
    /// </summary>
    public bool OneThreadFences { get; set; } = SwitchFromEnvironment(OneThreadFencesVariable, unset: false, "every thread's fences, the default", "thread 0's fences", "");
}
