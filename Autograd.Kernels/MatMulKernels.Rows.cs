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
// B whole (w1's 400 KB for the seed), from L2 after the first. So the first stage, the largest, may be
// shared out (RowSplit.Shares): a block's groups each take a share of its columns (a share of B),
// count in on the block's counter, and the last of them runs the later stages for the block.
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

/// <summary>A row chain's split of C's rows (M) into blocks of RowsPer rows, each taken by Shares groups.</summary>
/// <param name="M">Rows of every stage's C.</param>
/// <param name="RowsPer">Rows of a block (a multiple of 4: GroupBlocks' 4x4 blocks).</param>
/// <param name="Shares">
/// Groups a block takes for the chain's first stage, each a share of that stage's columns; the one
/// that counts in last for the block runs the later stages. 1: one group takes a block through
/// every stage.
/// </param>
public readonly record struct RowSplit(int M, int RowsPer, int Shares = 1)
{
    /// <summary>Blocks of rows (and the partial sums a summing stage needs).</summary>
    public int Blocks => (M + RowsPer - 1) / RowsPer;

    /// <summary>Groups of the launch: Shares a block.</summary>
    public int Units => Blocks * Shares;
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
    /// chain waits on another group: a block's and the loss's count-ins only pick who goes on).
    /// Given the first stage's columns (headColumns; 0 when that stage sums, as a block's part of a sum
    /// needs all of them), a block's first stage is shared out among RowShares groups.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of every stage's C.</param>
    /// <param name="headColumns">Columns of the first stage's C, or 0 to keep one group a block.</param>
    public static RowSplit? RowChainSplit(KernelHost host, int m, int headColumns = 0)
    {
        if (!host.RowChains || m <= 0 || RowThreads(host) == 0) return null;
        if (host.MatMulPath == MatMulPath.Host || (host.MatMulPath == MatMulPath.Auto && host.IsCpu)) return null;
        var split = new RowSplit(m, 4);
        return split with { Shares = RowShares(host, split.Blocks, headColumns) };
    }

    /// <summary>The most groups RowShares gives a block of rows by its rule.</summary>
    public const int MaxRowShares = 8;

    /// <summary>
    /// Groups that share a block's first stage: KernelHost.RowShares where set, else as many as spread
    /// the blocks over the multiprocessors (the seed's 16 blocks on an H200's 132: 8), at most
    /// MaxRowShares; never more than the stage's columns of 4x4 blocks, and 1 where the blocks
    /// outnumber the host's counters (KernelHost.MaxSplitKTiles).
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="blocks">Blocks of rows.</param>
    /// <param name="headColumns">Columns of the first stage's C (0: no sharing).</param>
    public static int RowShares(KernelHost host, int blocks, int headColumns)
    {
        int columnBlocks = (headColumns + 3) / 4;
        if (columnBlocks <= 1 || blocks <= 0 || blocks > KernelHost.MaxSplitKTiles) return 1;
        int want = host.RowShares > 0 ? host.RowShares : Math.Min(MaxRowShares, host.Accelerator.NumMultiprocessors / blocks);
        return Math.Clamp(want, 1, columnBlocks);
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
    /// <param name="head">Whether the stage is the chain's first: it then takes the split's Shares (its columns shared out among a block's groups).</param>
    public static GroupProduct<TEpi, IdentityOp, FirstOp> RowProduct<TEpi>(KernelHost host, RowSplit split,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride,
        bool head = false)
        where TEpi : struct, IBinaryOp
    {
        var (g, lanes, shares) = RowStage(host, split, head, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        return new GroupProduct<TEpi, IdentityOp, FirstOp>(a, b, c, operand, g, epilogue, lanes, false, default, default, 1f, false, default, default, 0,
            default, shares);
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
    /// <param name="head">Whether the stage is the chain's first (then the split must not share it: a block's part of the sum needs all its columns).</param>
    public static GroupProduct<TEpi, TMap, TSide> RowProductSum<TEpi, TMap, TSide>(KernelHost host, RowSplit split,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride,
        SumTail<TMap, TSide> sum, ArrayView<float> parts, bool head = false)
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (head && split.Shares > 1)
            throw new ArgumentException($"RowProductSum: the split shares each block's first stage among {split.Shares} groups, but a stage that sums needs all of a block's "
                + $"{n} columns for its part; split with RowChainSplit(host, {m}) (no head columns) when the first stage sums.");
        var (g, lanes, _) = RowStage(host, split, head, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        Check.Length("RowProductSum", "loss", sum.Loss, 1);
        if (sum.HasSide) Check.Length("RowProductSum", "s", sum.S, sum.SStride == 0 ? 1 : m * n);
        if (parts.Length < split.Blocks)
            throw new ArgumentException($"RowProductSum: parts has {parts.Length} elements; the {split.Blocks} blocks of {split.RowsPer} rows of {m} need one each. Ask RowChainSplit for the blocks.");
        return new GroupProduct<TEpi, TMap, TSide>(a, b, c, operand, g, epilogue, lanes, true, sum.Loss, sum.Map, sum.Scale,
            sum.HasSide, sum.Side, sum.S, sum.SStride, parts.SubView(0, split.Blocks));
    }

    // Checks a row stage's sizes against the split and picks its lanes for a block's rows (for a
    // shared first stage, for a share's columns) and its shares.
    private static (GemmArgs G, int Lanes, int Shares) RowStage(KernelHost host, RowSplit split, bool head,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> operand, int operandRowStride, int operandColStride)
    {
        const string op = "RowProduct";
        var g = Checked(op, a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        CheckSplit(op, host, split);
        if (!RowStageFits(split, m, n, k))
            throw new ArgumentException($"{op}: {m}x{n}x{k} cannot be a stage of a row chain over {split.M} rows in blocks of {split.RowsPer}: "
                + $"its C must have the chain's {split.M} rows, and a block's {(long)Math.Min(split.RowsPer, m) * n * k} multiply-adds at most {MaxRowMacs}; launch it as a product of its own.");
        int shares = head ? split.Shares : 1, columnBlocks = (n + 3) / 4;
        if (shares > columnBlocks)
            throw new ArgumentException($"{op}: the split shares each block's first stage among {shares} groups, but its {n} columns make {columnBlocks} blocks of 4; "
                + $"split with RowChainSplit(host, {m}, {n}).");
        int widest = 4 * ((columnBlocks + shares - 1) / shares);
        return (g, ChainLanes(RowThreads(host), host.Accelerator.WarpSize, Math.Min(split.RowsPer, m), Math.Min(n, widest), k), shares);
    }

    // Whether the split is one this host would make: its rows cut as RowChainSplit cuts them, and the
    // first stage's shares within the host's counters.
    private static void CheckSplit(string op, KernelHost host, RowSplit split)
    {
        if (RowChainSplit(host, split.M) is not { } allowed || allowed != split with { Shares = 1 }
            || split.Shares < 1 || (split.Shares > 1 && split.Blocks > KernelHost.MaxSplitKTiles))
            throw new InvalidOperationException($"{op}: a row chain over {split.M} rows in blocks of {split.RowsPer}, {split.Shares} groups a block, cannot run here "
                + $"(KernelHost.RowChains {host.RowChains}, groups of {RowThreads(host)}, path {host.MatMulPath}); ask RowChainSplit and launch the stages as products of their own where it says null.");
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
        CheckSplit("MatMulRows", host, split);
        if (stages.HeadShares != split.Shares)
            throw new ArgumentException($"MatMulRows: the split shares each block's first stage among {split.Shares} groups, but that stage was made for {stages.HeadShares}; "
                + "make it with RowProduct(..., head: true) for this split.");
        int sums = stages.Sums ? 1 : 0;
        if (host.Recorder is { } recorder)
        {
            recorder.Add(new RowsPhase<TStages>(stages, host.TailArrival, host.SplitKArrivals, split, sums), "Rows");
            return;
        }
        var bounds = host.Bounds(RowsBounds);
        var kernel = host.Load(KernelHost.HasBounds(bounds) ? "MatMulRows/bounded" : "MatMulRows", null, typeof(TStages), acc =>
            acc.LoadKernel<TStages, ArrayView<int>, ArrayView<int>, RowSplit, int>(RowsKernel, bounds));
        kernel(host.Stream, new KernelConfig(split.Units, RowThreads(host)), stages, host.TailArrival, host.SplitKArrivals, split, sums);
    }

    private static readonly KernelSpecialization RowsBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(RowsKernel));

    // One unit a group: a block of rows, or a share of one (the launch has Units groups of
    // RowThreads; its stages' lanes were picked for that many, and a persistent phase's groups of
    // GroupSize run them too, in more rounds).
    [LaunchBounds(MaxRowThreads, 1)]
    private static void RowsKernel<TStages>(TStages stages, ArrayView<int> arrival, ArrayView<int> blockArrivals, RowSplit split, int sums)
        where TStages : struct, IGroupStage =>
        RowBlocks(stages, arrival, blockArrivals, split, sums);

    // Every unit, strided over the grid's groups (one each in a launch; a persistent phase's grid may
    // be smaller). With one share a block, the unit's group takes its block through every stage. With
    // more, it runs its share of the first stage's columns and counts in on the block's counter; the
    // last of the block's groups runs the later stages over the block's rows (a count-in, not a wait:
    // no group waits on another, so the groups need not all fit at once). A chain that sums counts
    // each block in, and the block that counts last sums the parts.
    internal static void RowBlocks<TStages>(TStages stages, ArrayView<int> arrival, ArrayView<int> blockArrivals, RowSplit split, int sums)
        where TStages : struct, IGroupStage
    {
        var last = SharedMemory.Allocate<int>(1);
        int tid = Group.LinearIndex, blocks = split.Blocks, shares = split.Shares;
        for (int unit = Grid.IdxX; unit < blocks * shares; unit += Grid.DimX)
        {
            int block = unit / shares, row0 = block * split.RowsPer;
            int rows = IntrinsicMath.Min(split.RowsPer, split.M - row0);
            if (shares == 1)
            {
                stages.RunRows(row0, rows, block);
            }
            else
            {
                stages.RunShare(row0, rows, unit % shares);
                // The block's count-in, as the loss's below.
                MemoryFence.DeviceLevel();
                Group.Barrier();
                if (tid == 0) last[0] = Atomic.Add(ref blockArrivals[block], 1) == shares - 1 ? 1 : 0;
                Group.Barrier();
                int mine = last[0];
                // The loss's count-in or the next unit's rewrites `last`.
                Group.Barrier();
                if (mine == 0) continue;
                MemoryFence.DeviceLevel();
                if (tid == 0) blockArrivals[block] = 0;
                stages.RunRest(row0, rows, block);
            }
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
    private readonly ArrayView<int> _arrival;       // (1) blocks done, 0 between launches
    private readonly ArrayView<int> _blockArrivals; // (blocks) a block's groups done, 0 between launches
    private readonly RowSplit _split;
    private readonly int _sums;

    internal RowsPhase(TStages stages, ArrayView<int> arrival, ArrayView<int> blockArrivals, RowSplit split, int sums)
    {
        _stages = stages; _arrival = arrival; _blockArrivals = blockArrivals; _split = split; _sums = sums;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => MatMulKernels.RowBlocks(_stages, _arrival, _blockArrivals, _split, _sums);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => _split.Units;

    /// <inheritdoc/>
    public int SharedBytes => sizeof(int) + 2 * _stages.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _stages.Touches(access);
        if (_sums != 0 || _split.Shares > 1) access.UsesCounters();
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

    /// <summary>The environment variable that sets <see cref="RowShares"/>: a count of groups, or unset for the rule.</summary>
    public const string RowSharesVariable = "AUTOGRAD_ROW_SHARES";

    private int _rowShares = CountFromEnvironment(RowSharesVariable, "groups that share a block of a row chain's first stage");

    /// <summary>
    /// Groups that share each block of rows of a row chain's first stage (each a share of its columns;
    /// MatMulKernels.RowShares): 0 for the rule (as many as spread the blocks over the multiprocessors,
    /// at most MatMulKernels.MaxRowShares), 1 for one group a block through every stage. Read when a
    /// step is compiled.
    /// </summary>
    public int RowShares
    {
        get => _rowShares;
        set => _rowShares = value >= 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(RowShares), $"KernelHost.RowShares: {value} groups; use 0 (the rule) or a positive count.");
    }

    // A count read from the environment: unset (or empty) gives 0; anything but a whole number >= 0 throws.
    private static int CountFromEnvironment(string variable, string what) =>
        Environment.GetEnvironmentVariable(variable)?.Trim() is { Length: > 0 } v
            ? int.TryParse(v, out int n) && n >= 0 ? n
                : throw new ArgumentException($"{variable}={v}: use a whole number of {what} (0 or unset: the rule).")
            : 0;
}
