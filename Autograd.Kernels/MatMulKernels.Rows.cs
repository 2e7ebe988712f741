// A row chain: products that each need only the rows of C the one before stored, run block of rows by
// block of rows in one launch, each group taking its block through every stage.
//
// Why: the seed's forward and its backward down to dH are row-local. Row i of h = relu(x w1), of
// y = h w2 with its loss and dY = 2 (y - t), and of dH = (dY w2^T) masked by h > 0 needs only row i
// of x and the weights. As launches they were 9.3, 7.1 and 4.4 us on an H200 (runs 6-8), and as a
// chain tail (ProductChain.cs) the last two still run in one group after all of h. Here a group takes
// 4 rows from x to dH alone: no launch,
// no grid barrier and no single group between the stages; only the loss needs every block, so the
// group that counts in last adds the blocks' partial sums. The price: every group reads each stage's
// B whole (w1's 400 KB for the seed), from L2 after the first.
//
// How: each stage is a chain stage (GroupProduct, made here by RowProduct or RowProductSum) run over
// the block's rows from views shifted to its first row (RunRows); stages are composed as in a chain
// tail, Stages<S1, Stages<S2, NoStage>>, with a group barrier between them, so a stage reads the rows
// the one before stored. A stage with a sum adds its block's part into its own element of `parts`;
// after its last block each group fences and counts in, and the last sums the parts in block order
// (SumParts): the bits are the same every run. Which products may form a row chain is the graph's
// concern (Fuse.Rows.cs): the kernel computes each stage's rows, and reads a buffer another block
// writes only if the caller made it so.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>A row chain's split of C's rows (M) into blocks of RowsPer rows, one a group.</summary>
/// <param name="M">Rows of every stage's C.</param>
/// <param name="RowsPer">Rows of a block (a multiple of 4: GroupBlocks' 4x4 blocks).</param>
public readonly record struct RowSplit(int M, int RowsPer)
{
    /// <summary>Blocks of rows, the groups of the launch (and the partial sums a summing stage needs).</summary>
    public int Blocks => (M + RowsPer - 1) / RowsPer;
}

public static partial class MatMulKernels
{
    /// <summary>
    /// The most multiply-adds (rows of a block * N * K) one group does for one stage of a row chain.
    /// The seed's h on blocks of 4 rows is 400,000 (1,600 a thread of 256).
    /// </summary>
    public const long MaxRowMacs = 1 << 20;

    /// <summary>
    /// The most threads of a row chain's group. Twice the product kernels' 256: a block of the seed's h
    /// (25 4x4 blocks, K = 1000) then splits K over 16 lanes, 16 trips of 4 k, where 256 threads took
    /// 8 lanes and 32 trips; and the kernel's 94 registers leave room for 512 (not for 1024).
    /// </summary>
    public const int MaxRowThreads = 512;

    /// <summary>Threads of a row chain's group here: the largest power of two up to MaxRowThreads the accelerator allows, whole warps; 0 where none.</summary>
    /// <param name="host">The kernel host.</param>
    public static int RowThreads(KernelHost host)
    {
        int limit = Math.Min(MaxRowThreads, host.Accelerator.MaxNumThreadsPerGroup), threads = 1;
        while (threads * 2 <= limit) threads *= 2;
        return threads % host.Accelerator.WarpSize == 0 ? threads : 0;
    }

    /// <summary>
    /// How a row chain over M rows splits them on this host, or null where it cannot run: row chains
    /// allowed (KernelHost.RowChains), the product kernels ILGPU's (not the CPU accelerator's host
    /// SGEMM), and groups of whole warps (RowThreads). Blocks of
    /// 4 rows (one row of GroupBlocks' 4x4 blocks): the most groups, each reading every stage's B once;
    /// where there are more blocks than groups that fit at once, they run in waves (nothing in a row
    /// chain waits on another group but the loss's count-in).
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of every stage's C.</param>
    public static RowSplit? RowChainSplit(KernelHost host, int m)
    {
        if (!host.RowChains || m <= 0 || RowThreads(host) == 0) return null;
        if (host.MatMulPath == MatMulPath.Host || (host.MatMulPath == MatMulPath.Auto && host.IsCpu)) return null;
        return new RowSplit(m, 4);
    }

    /// <summary>Whether a product (m, n, k) can be a stage of a row chain split so: at most MaxRowMacs a block.</summary>
    /// <param name="split">The chain's split.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static bool RowStageFits(RowSplit split, int m, int n, int k) =>
        m == split.M && n > 0 && k > 0 && (long)Math.Min(split.RowsPer, m) * n * k <= MaxRowMacs;

    /// <summary>A stage of a row chain: C = Epi(alpha op(A) op(B) + beta C, E), each block's rows by its group.</summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="split">The chain's split (RowChainSplit).</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major.</param>
    /// <param name="m">Rows of C (the split's M).</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer.</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    public static GroupProduct<TEpi, IdentityOp, FirstOp> RowProduct<TEpi>(KernelHost host, RowSplit split,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride)
        where TEpi : struct, IBinaryOp
    {
        var (g, lanes) = RowStage(host, split, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        return new GroupProduct<TEpi, IdentityOp, FirstOp>(a, b, c, operand, g, epilogue, lanes, false, default, default, 1f, false, default, default, 0);
    }

    /// <summary>
    /// A stage of a row chain with a sum: the product as RowProduct, each block's part of
    /// Map(C) summed into parts[block] (and C = Side(C, S) on its rows), and once every block is done
    /// loss = Scale * the sum of the parts in block order.
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op.</typeparam>
    /// <typeparam name="TMap">The op summed.</typeparam>
    /// <typeparam name="TSide">The side op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="split">The chain's split (RowChainSplit).</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major.</param>
    /// <param name="m">Rows of C (the split's M).</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer.</param>
    /// <param name="operandRowStride">E's stride between rows of C.</param>
    /// <param name="operandColStride">E's stride between columns of C.</param>
    /// <param name="sum">The sum: its loss element, map, scale and side op.</param>
    /// <param name="parts">Split.Blocks elements: the blocks' partial sums (scratch).</param>
    public static GroupProduct<TEpi, TMap, TSide> RowProductSum<TEpi, TMap, TSide>(KernelHost host, RowSplit split,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride,
        SumTail<TMap, TSide> sum, ArrayView<float> parts)
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var (g, lanes) = RowStage(host, split, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        Check.Length("RowProductSum", "loss", sum.Loss, 1);
        if (sum.HasSide) Check.Length("RowProductSum", "s", sum.S, sum.SStride == 0 ? 1 : m * n);
        if (parts.Length < split.Blocks)
            throw new ArgumentException($"RowProductSum: parts has {parts.Length} elements; the {split.Blocks} blocks of {split.RowsPer} rows of {m} need one each. Ask RowChainSplit for the blocks.");
        return new GroupProduct<TEpi, TMap, TSide>(a, b, c, operand, g, epilogue, lanes, true, sum.Loss, sum.Map, sum.Scale,
            sum.HasSide, sum.Side, sum.S, sum.SStride, parts.SubView(0, split.Blocks));
    }

    // Checks a row stage's sizes against the split and picks its lanes for a block's rows.
    private static (GemmArgs G, int Lanes) RowStage(KernelHost host, RowSplit split,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> operand, int operandRowStride, int operandColStride)
    {
        const string op = "RowProduct";
        var g = Checked(op, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if (RowChainSplit(host, split.M) is not { } allowed || allowed != split)
            throw new InvalidOperationException($"{op}: a row chain over {split.M} rows in blocks of {split.RowsPer} cannot run here "
                + $"(KernelHost.RowChains {host.RowChains}, groups of {RowThreads(host)}, path {host.MatMulPath}); ask RowChainSplit and launch the stages as products of their own where it says null.");
        if (!RowStageFits(split, m, n, k))
            throw new ArgumentException($"{op}: {m}x{n}x{k} cannot be a stage of a row chain over {split.M} rows in blocks of {split.RowsPer}: "
                + $"its C must have the chain's {split.M} rows, and a block's {(long)Math.Min(split.RowsPer, m) * n * k} multiply-adds at most {MaxRowMacs}; launch it as a product of its own.");
        return (g, ChainLanes(RowThreads(host), host.Accelerator.WarpSize, Math.Min(split.RowsPer, m), n, k));
    }

    /// <summary>
    /// Runs a row chain: each block of the split's rows through every stage (made by RowProduct or
    /// RowProductSum for this split), in one launch of Blocks groups; then each sum's loss.
    /// </summary>
    /// <typeparam name="TStages">The stages, Stages&lt;S1, Stages&lt;S2, NoStage&gt;&gt;.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="split">The split the stages were made for.</param>
    /// <param name="stages">The stages, in order.</param>
    public static void MatMulRows<TStages>(KernelHost host, RowSplit split, TStages stages)
        where TStages : struct, IGroupStage
    {
        if (RowChainSplit(host, split.M) is not { } allowed || allowed != split)
            throw new InvalidOperationException($"MatMulRows: a row chain over {split.M} rows in blocks of {split.RowsPer} cannot run here "
                + $"(KernelHost.RowChains {host.RowChains}, groups of {RowThreads(host)}, path {host.MatMulPath}); ask RowChainSplit first and launch the stages as products of their own.");
        int sums = stages.Sums ? 1 : 0;
        if (host.Recorder is { } recorder)
        {
            recorder.Add(new RowsPhase<TStages>(stages, host.TailArrival, split, sums), "Rows");
            return;
        }
        var bounds = host.Bounds(RowsBounds);
        var kernel = host.Load(KernelHost.HasBounds(bounds) ? "MatMulRows/bounded" : "MatMulRows", null, typeof(TStages), acc =>
            acc.LoadKernel<TStages, ArrayView<int>, int, int, int>(RowsKernel, bounds));
        kernel(host.Stream, new KernelConfig(split.Blocks, RowThreads(host)), stages, host.TailArrival, split.M, split.RowsPer, sums);
    }

    private static readonly KernelSpecialization RowsBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(RowsKernel));

    // One block of rows a group (the launch has Blocks groups of RowThreads; its stages' lanes were
    // picked for that many, and a persistent phase's groups of GroupSize run them too, in more rounds).
    [LaunchBounds(MaxRowThreads, 1)]
    private static void RowsKernel<TStages>(TStages stages, ArrayView<int> arrival, int m, int rowsPer, int sums)
        where TStages : struct, IGroupStage =>
        RowBlocks(stages, arrival, m, rowsPer, sums);

    // Every block of rows, strided over the grid's groups (one each in a launch; a persistent phase's
    // grid may be smaller), each through every stage; a chain that sums counts each block in, and
    // the block that counts last sums the parts.
    internal static void RowBlocks<TStages>(TStages stages, ArrayView<int> arrival, int m, int rowsPer, int sums)
        where TStages : struct, IGroupStage
    {
        var last = SharedMemory.Allocate<int>(1);
        int tid = Group.LinearIndex, blocks = (m + rowsPer - 1) / rowsPer;
        for (int block = Grid.IdxX; block < blocks; block += Grid.DimX)
        {
            int row0 = block * rowsPer;
            stages.RunRows(row0, IntrinsicMath.Min(rowsPer, m - row0), block);
            if (sums == 0) continue;
            // The count-in of SumTail and ChainTail, by blocks (see SumTail.Finish for why it is written out).
            MemoryFence.DeviceLevel();
            Group.Barrier();
            if (tid == 0) last[0] = Atomic.Add(ref arrival[0], 1) == blocks - 1 ? 1 : 0;
            Group.Barrier();
            if (last[0] != 0)
            {
                MemoryFence.DeviceLevel();
                stages.SumParts(blocks);
                if (tid == 0) arrival[0] = 0;
            }
            // The next block's count-in rewrites `last`.
            Group.Barrier();
        }
    }
}

/// <summary>A row chain (MatMulKernels.MatMulRows) as a phase of the persistent kernel: its blocks strided over the grid.</summary>
/// <typeparam name="TStages">The stages.</typeparam>
public readonly struct RowsPhase<TStages> : IPhase
    where TStages : struct, IGroupStage
{
    private readonly TStages _stages;
    private readonly ArrayView<int> _arrival; // (1) blocks done, 0 between launches
    private readonly int _m, _rowsPer, _sums;

    internal RowsPhase(TStages stages, ArrayView<int> arrival, RowSplit split, int sums)
    {
        _stages = stages; _arrival = arrival; _m = split.M; _rowsPer = split.RowsPer; _sums = sums;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => MatMulKernels.RowBlocks(_stages, _arrival, _m, _rowsPer, _sums);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => (_m + _rowsPer - 1) / _rowsPer;

    /// <inheritdoc/>
    public int SharedBytes => sizeof(int) + 2 * _stages.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _stages.Touches(access);
        if (_sums != 0) access.UsesCounters();
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that sets <see cref="RowChains"/>: 1 on, 0 off (unset: off).</summary>
    public const string RowsVariable = "AUTOGRAD_ROWS";

    /// <summary>
    /// Whether a compiled step may run products that each need only the rows the one before stored as
    /// one row chain (MatMulKernels.MatMulRows; the seed's h, y with its loss, and dH in one launch,
    /// each group a block of rows). Off by default: unmeasured on a GPU when written. Read when a step
    /// is compiled (Describe shows the chain) and checked at each launch.
    /// </summary>
    public bool RowChains { get; set; } = SwitchFromEnvironment(RowsVariable, unset: false, "each product its own launch, the default", "row chains", "");
}
