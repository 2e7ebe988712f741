// The warp-split SGEMM, for products with few outputs (the seed's: 64x100, 64x10, 100x10).
//
// Why: a tiled kernel gives such a product a handful of tiles, so it either leaves most of the GPU
// idle while each tile walks all of K, or splits K across groups and pays for the slices' scratch
// and their sum (MatMulKernels.cs, split-K). Here a team of warps owns a 4x4 block of C and its
// threads split K among themselves (thread r of the team takes k = r, r + T, ...); each warp adds its
// lanes' sums by a shuffle tree, a reduce-scatter (Block4x4.ScatterOverWarp: 16 shuffles on warps of
// 32, after which each lane holds an element of the block and stores it), and a team of more than one
// warp adds its warps' sums through shared memory, in warp order. No scratch, one launch, and the
// serial depth is K / T loads instead of K (Small) or a 16-deep slice per barrier (Tiled). The order
// of every sum is fixed by the thread, the tree and the warp order, so the result has the same bits
// every run for a given team size (the tree's bits are those of a shuffle-down sum per element, as
// before the reduce-scatter: KernelTests emulates it). The epilogue is the same Store as every path.
//
// The team: one warp (no barrier; the shared array goes unused) where a lane's share of K is
// already one trip (four k, their 32 loads in flight); up to a group's warps where K is long. The
// seed's first product (K = 1000) has 400 blocks: a warp a block walks 32 k a lane, 8 round trips
// to memory; a team of 8 warps walks 4 k a thread, one round trip, on 102K threads (a third of an
// H200's resident threads).
//
// Launch bounds (256 threads, 2 groups a multiprocessor, LaunchBounds.cs): without them ptxas fits
// the kernel in 64 registers by splitting a trip's 32 loads into four waits on memory, which SassTests
// found offline (ninth session). With them it takes ~104 registers and one wait a trip, and the team
// rule counts 2 resident groups a multiprocessor.
//
// Unmeasured on a GPU when written: MatMulPath.Warp is not chosen by Auto (KernelHost.WarpMaxOutputs
// is 0); the bench times it beside the tiled kernel for the seed's products.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>
/// One product of a warp-kernel launch: its operands, sizes and epilogue, and its 4x4 blocks of C.
/// Public because ILGPU's kernel loader must see a kernel argument's type.
/// </summary>
/// <typeparam name="TEpi">The product's epilogue op.</typeparam>
public readonly struct WarpJob<TEpi>
    where TEpi : struct, IBinaryOp
{
    /// <summary>A, B, C and the epilogue operand, as the warp kernel reads them.</summary>
    public readonly ArrayView<float> A, B, C, E;

    /// <summary>Sizes, strides and scalars.</summary>
    public readonly GemmArgs G;

    /// <summary>4x4 blocks of C (0 for a launch's absent second product), and blocks to a row of C.</summary>
    public readonly int Blocks, TilesN;

    /// <summary>The epilogue op.</summary>
    public readonly TEpi Epi;

    internal WarpJob(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi)
        : this(a, b, c, e, g, epi, ((g.M + 3) / 4) * ((g.N + 3) / 4))
    {
    }

    private WarpJob(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, int blocks)
    {
        A = a; B = b; C = c; E = e; G = g; Epi = epi;
        TilesN = (g.N + 3) / 4;
        Blocks = blocks;
    }

    // The same job with no blocks: the second of a launch that has one product.
    internal WarpJob<TEpi> Without() => new(A, B, C, E, G, Epi, 0);
}

public static partial class MatMulKernels
{
    /// <summary>Warps of a group whose sums a team's shared array holds: teams need groups of at most this many warps.</summary>
    public const int MaxTeamWarps = 64;

    // Groups of 256 (KernelHost.GroupSize on a GPU), two to a multiprocessor: up to 128 registers, so
    // ptxas keeps a trip's 32 loads in flight (LaunchBounds.cs says why; SassTests checks it).
    internal static readonly KernelSpecialization WarpBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(WarpKernel));
    internal static readonly KernelSpecialization WarpPairBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(WarpPairKernel));

    /// <summary>A team of warps per 4x4 block of C, K split across the team's threads, summed by shuffles and in warp order.</summary>
    [LaunchBounds(256, 2)]
    internal static void WarpKernel<TEpi, TTail>(
        ArrayView<float> a,   // (M, K) or (K, M) per g's strides
        ArrayView<float> b,   // (K, N) or (N, K) per g's strides
        ArrayView<float> c,   // (M, N) row-major
        ArrayView<float> e,   // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        int team,             // warps per block: 1, or a power of two dividing the group's warps (<= MaxTeamWarps)
        TEpi epi,
        TTail tail)           // run once C is stored
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        var job = new WarpJob<TEpi>(a, b, c, e, g, epi);
        WarpBlocks(job, job.Without(), team);
        tail.Finish(c, g.M * g.N);
    }

    /// <summary>Two products in one launch of the warp kernel: the first's blocks, then the second's, a team each.</summary>
    [LaunchBounds(256, 2)]
    internal static void WarpPairKernel<TEpi1, TEpi2>(
        WarpJob<TEpi1> first,
        WarpJob<TEpi2> second,
        int team)             // warps per block, as WarpKernel
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        WarpBlocks(first, second, team);
    }

    // The blocks of both jobs (the second may have none), a team of warps each.
    internal static void WarpBlocks<TEpi1, TEpi2>(WarpJob<TEpi1> j1, WarpJob<TEpi2> j2, int team)
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        var sums = SharedMemory.Allocate<float>(16 * MaxTeamWarps); // (warps of the group, 16): each warp's block
        // Shifts and masks: the warp's size and the team are powers of two (Block4x4.ScatterOverWarp
        // halves the warp, KernelHost.WarpTeam takes only powers of two), and ptxas assembles `/` and
        // `%` by a value it does not know (or by WarpSize, which ILGPU does not fold) as a division
        // routine each.
        int w = Warp.WarpSize, lane = Warp.LaneIdx;
        int warpShift = IntrinsicMath.BitOperations.TrailingZeroCount(w), teamShift = IntrinsicMath.BitOperations.TrailingZeroCount(team);
        int warp = Group.IdxX >> warpShift, teamsPerGroup = Group.DimX >> (warpShift + teamShift);
        int member = warp & (team - 1), rank = member * w + lane, span = team * w;
        int total = j1.Blocks + j2.Blocks;
        var share = new WarpShare(lane, w, warpShift);
        // Whole groups stride over the blocks, a block per team, so every thread of a group takes the
        // same trips through the loop and all of them reach each shuffle and barrier.
        int teams = Grid.DimX * teamsPerGroup;
        for (int t0 = Grid.IdxX * teamsPerGroup; t0 < total; t0 += teams)
        {
            int t = t0 + (warp >> teamShift);
            bool active = t < total, first = t < j1.Blocks;
            var block = first ? new Block4x4(j1.G, t, j1.TilesN) : new Block4x4(j2.G, active ? t - j1.Blocks : 0, j2.TilesN);
            if (active)
            {
                if (first) block.Walk(j1.A, j1.B, j1.G, rank, span);
                else block.Walk(j2.A, j2.B, j2.G, rank, span);
            }
            block.ScatterOverWarp(lane);
            if (team == 1)
            {
                // Each holding lane stores its share: on warps of 32, 16 lanes an element each.
                if (active && share.Holder)
                {
                    if (first) block.StoreShare(j1.C, j1.E, j1.G, j1.Epi, share);
                    else block.StoreShare(j2.C, j2.E, j2.G, j2.Epi, share);
                }
                continue;
            }
            if (share.Holder) block.ShareToShared(sums, warp * 16, share);
            Group.Barrier();
            // The team's first 16 threads store an element each: its sums added over the team's warps in order.
            int at = (warp - member) * 16;
            if (active)
                for (int v = rank; v < 16; v += span)
                {
                    if (first) block.StoreOfTeam(j1.C, j1.E, j1.G, j1.Epi, sums, at, team, v);
                    else block.StoreOfTeam(j2.C, j2.E, j2.G, j2.Epi, sums, at, team, v);
                }
            Group.Barrier();
        }
    }

    // What a lane holds after Block4x4.ScatterOverWarp on warps of w lanes: Count sums, of the block's
    // elements First, First + 1, ... (row-major in the block). Up to 16 lanes each holds 16 / w of them;
    // on more, w / 16 neighbouring lanes hold the same one, and the first of them is its Holder.
    private readonly struct WarpShare
    {
        public readonly int First, Count;
        public readonly bool Holder;

        public WarpShare(int lane, int w, int warpShift)
        {
            First = (lane << 4) >> warpShift;
            Count = w >= 16 ? 1 : 16 >> warpShift;
            Holder = w <= 16 || (lane & ((w >> 4) - 1)) == 0;
        }
    }
}
