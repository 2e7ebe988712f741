// A product's chain tail: the small products that follow a product, run by the last of its groups in
// the product's own launch.
//
// Why: the seed's forward and backward down to dH are three products that each wait on the one
// before: h = relu(x w1) (K = 1000, 400 4x4 blocks), then y = h w2 with its loss and dY = 2 (y - t)
// (640 outputs, K = 100), then dH = (dY w2^T) masked by h > 0 (6,400 outputs, K = 10). On an H200
// they were three launches of 9.3, 7.1 and 4.4 us (runs 6-8), each mostly its ramp, drain and the
// graph node: the last two are 64K multiply-adds each, under a microsecond of one multiprocessor's
// arithmetic. Here they run in h's launch, after every group has stored its part of h, by the group
// that counts in last: no launch, no grid barrier, no ramp. The cost is that one group does them
// alone, so the launcher takes a stage only while it is small (MatMulKernels.MaxChainMacs).
//
// How: the product's tail (IProductTail) fences, counts its group in, and the last group runs the
// stages one after another with a group barrier between them (a barrier orders global memory too,
// within a group, so a stage reads what the one before stored). A stage is GroupProduct: its 4x4
// blocks of C dealt over the group, each block's K split across `lanes` neighbouring lanes of a warp
// and added by shuffles; then, when it has one, the sum of C and the side op (a loss and its
// gradient: GroupSum, the SumTail's own code, so the loss has the SumTail's bits). Stages compose
// into one type, Stages<S1, Stages<S2, NoStage>>, as the persistent kernel's phases do. Every order
// of addition is fixed by the lane, the shuffle tree and the thread, so the bits are the same every
// run; with one lane a block, a stage has the Small kernel's bits.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Work one group does alone, as a stage of a chain tail (all its threads call Run).</summary>
public interface IGroupStage
{
    /// <summary>Does the stage's work with the calling group's threads.</summary>
    void Run();

    /// <summary>
    /// Does the stage's work over rows [row0, row0 + rows) of its C with the calling group's threads,
    /// as a stage of a row chain (MatMulKernels.MatMulRows); a sum's part over those rows goes to its
    /// partial sums at `part`.
    /// </summary>
    /// <param name="row0">The block's first row of C.</param>
    /// <param name="rows">Rows in the block.</param>
    /// <param name="part">The block's index among the row chain's blocks.</param>
    void RunRows(int row0, int rows, int part);

    /// <summary>
    /// A row chain's first stage over rows [row0, row0 + rows) and share `share` of its columns (of
    /// HeadShares), when the split shares it among a block's groups; in a composed chain, only the first.
    /// </summary>
    /// <param name="row0">The block's first row of C.</param>
    /// <param name="rows">Rows in the block.</param>
    /// <param name="share">Which share of the columns, from 0.</param>
    void RunShare(int row0, int rows, int share);

    /// <summary>The stages after the first over rows [row0, row0 + rows), as RunRows runs them (nothing for a lone stage).</summary>
    /// <param name="row0">The block's first row of C.</param>
    /// <param name="rows">Rows in the block.</param>
    /// <param name="part">The block's index among the row chain's blocks.</param>
    void RunRest(int row0, int rows, int part);

    /// <summary>Groups the first stage was made to share a block among (RowProduct's head; 1 otherwise; host side).</summary>
    int HeadShares { get; }

    /// <summary>By the row chain's last group, once every block is done: each sum's loss from its `parts` partial sums.</summary>
    /// <param name="parts">Blocks of the row chain.</param>
    void SumParts(int parts);

    /// <summary>Whether a stage sums (host side): a row chain then counts its blocks in.</summary>
    bool Sums { get; }

    /// <summary>Static shared memory the stage allocates (bytes; host side).</summary>
    int SharedBytes { get; }

    /// <summary>What the stage reads and writes (host side), for the persistent kernel's phases.</summary>
    /// <param name="access">Collects the buffers.</param>
    void Touches(PhaseAccess access);
}

/// <summary>The empty stage that ends a chain.</summary>
public readonly struct NoStage : IGroupStage
{
    /// <inheritdoc/>
    public void Run()
    {
    }

    /// <inheritdoc/>
    public void RunRows(int row0, int rows, int part)
    {
    }

    /// <inheritdoc/>
    public void RunShare(int row0, int rows, int share)
    {
    }

    /// <inheritdoc/>
    public void RunRest(int row0, int rows, int part)
    {
    }

    /// <inheritdoc/>
    public int HeadShares => 1;

    /// <inheritdoc/>
    public void SumParts(int parts)
    {
    }

    /// <inheritdoc/>
    public bool Sums => false;

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
    }
}

/// <summary>A stage, a group barrier, then the rest of the chain.</summary>
/// <typeparam name="TFirst">The first stage.</typeparam>
/// <typeparam name="TRest">The stages after it.</typeparam>
public readonly struct Stages<TFirst, TRest> : IGroupStage
    where TFirst : struct, IGroupStage
    where TRest : struct, IGroupStage
{
    private readonly TFirst _first;
    private readonly TRest _rest;

    /// <summary>Composes a stage and the rest of the chain.</summary>
    /// <param name="first">The first stage.</param>
    /// <param name="rest">The stages after it (NoStage ends the chain).</param>
    public Stages(TFirst first, TRest rest)
    {
        _first = first;
        _rest = rest;
    }

    /// <inheritdoc/>
    public void Run()
    {
        _first.Run();
        // The rest reads what this stage stored, possibly from other threads of the group.
        Group.Barrier();
        _rest.Run();
    }

    /// <inheritdoc/>
    public void RunRows(int row0, int rows, int part)
    {
        _first.RunRows(row0, rows, part);
        // The rest reads the rows this stage stored, possibly from other threads of the group.
        Group.Barrier();
        _rest.RunRows(row0, rows, part);
    }

    /// <inheritdoc/>
    public void RunShare(int row0, int rows, int share) => _first.RunShare(row0, rows, share);

    /// <inheritdoc/>
    public void RunRest(int row0, int rows, int part) => _rest.RunRows(row0, rows, part);

    /// <inheritdoc/>
    public int HeadShares => _first.HeadShares;

    /// <inheritdoc/>
    public void SumParts(int parts)
    {
        _first.SumParts(parts);
        _rest.SumParts(parts);
    }

    /// <inheritdoc/>
    public bool Sums => _first.Sums || _rest.Sums;

    /// <inheritdoc/>
    public int SharedBytes => _first.SharedBytes + _rest.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _first.Touches(access);
        _rest.Touches(access);
    }
}

/// <summary>
/// One product of a chain, by one group: C = Epi(alpha op(A) op(B) + beta C, E), then, when the
/// stage has a sum, loss = Scale * the sum of Map(C) and, with a side op, C = Side(C, S).
/// Made by MatMulKernels.GroupProduct, which checks its sizes and picks its lanes.
/// </summary>
/// <typeparam name="TEpi">The epilogue op.</typeparam>
/// <typeparam name="TMap">The op summed (IdentityOp when the stage has no sum).</typeparam>
/// <typeparam name="TSide">The side op (FirstOp when it has none).</typeparam>
public readonly struct GroupProduct<TEpi, TMap, TSide> : IGroupStage
    where TEpi : struct, IBinaryOp
    where TMap : struct, IUnaryOp
    where TSide : struct, IBinaryOp
{
    private readonly ArrayView<float> _a;    // (M, K) or (K, M) per G's strides
    private readonly ArrayView<float> _b;    // (K, N) or (N, K) per G's strides
    private readonly ArrayView<float> _c;    // (M, N) row-major
    private readonly ArrayView<float> _e;    // epilogue operand, E(i, j) = e[i * Em + j * En]
    private readonly ArrayView<float> _loss; // (1), when the stage sums
    private readonly ArrayView<float> _s;    // (M * N) with stride 1, or (1) with stride 0: the side op's operand
    private readonly ArrayView<float> _parts; // (blocks) a row chain's partial sums, one a block of rows
    private readonly GemmArgs _g;
    private readonly TEpi _epi;
    private readonly TMap _map;
    private readonly TSide _side;
    private readonly float _scale;
    private readonly int _lanes, _sums, _hasSide, _sStride;
    private readonly int _shares; // groups that share a block of rows of this stage (a row chain's first), else 1

    internal GroupProduct(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, int lanes,
        bool sums, ArrayView<float> loss, TMap map, float scale, bool hasSide, TSide side, ArrayView<float> s, int sStride,
        ArrayView<float> parts = default, int shares = 1)
    {
        _a = a; _b = b; _c = c; _e = e; _g = g; _epi = epi; _lanes = lanes;
        _sums = sums ? 1 : 0; _loss = loss; _map = map; _scale = scale;
        _hasSide = hasSide ? 1 : 0; _side = side; _s = s; _sStride = sStride; _parts = parts; _shares = shares;
    }

    /// <summary>Lanes of a warp that split each 4x4 block's K.</summary>
    public int Lanes => _lanes;

    /// <inheritdoc/>
    public void Run()
    {
        MatMulKernels.GroupBlocks(_a, _b, _c, _e, _g, _epi, _lanes);
        if (_sums == 0) return;
        Group.Barrier();
        GroupSum.Run(_c, 0, _g.M * _g.N, _loss, 0, _map, _scale, _hasSide != 0, _side, _s, _sStride);
    }

    /// <inheritdoc/>
    public void RunRows(int row0, int rows, int part)
    {
        // C's rows [row0, row0 + rows) as a product whose M ends there, from its first 4x4 block row
        // (row0 is a multiple of 4): every operand indexed where it is, as in Run, so the block's
        // loads and stores are the chain tail's, address for address.
        MatMulKernels.GroupBlocks(_a, _b, _c, _e, _g.WithRows(row0 + rows), _epi, _lanes, row0);
        if (_sums == 0) return;
        Group.Barrier();
        // The block's unscaled part; SumParts scales the total, so a scale of 1 leaves the bits of the sum.
        GroupSum.Run(_c, row0 * _g.N, (row0 + rows) * _g.N, _parts, part, _map, 1f, _hasSide != 0, _side, _s, _sStride);
    }

    /// <inheritdoc/>
    public void RunShare(int row0, int rows, int share)
    {
        // Share `share` of C's columns of 4x4 blocks, as even as they divide; the blocks and their
        // lanes are RunRows' own, so a block has the same bits in whichever share it falls.
        int tilesN = (_g.N + 3) / 4, from = share * tilesN / _shares, to = (share + 1) * tilesN / _shares;
        MatMulKernels.GroupBlocks(_a, _b, _c, _e, _g.WithRows(row0 + rows), _epi, _lanes, row0, from, to - from);
    }

    /// <inheritdoc/>
    public void RunRest(int row0, int rows, int part)
    {
    }

    /// <inheritdoc/>
    public int HeadShares => _shares;

    /// <inheritdoc/>
    public void SumParts(int parts)
    {
        if (_sums == 0) return;
        GroupSum.Run(_parts, 0, parts, _loss, 0, default(IdentityOp), _scale, false, default(FirstOp), _parts, 0);
    }

    /// <inheritdoc/>
    public bool Sums => _sums != 0;

    /// <inheritdoc/>
    public int SharedBytes => _sums != 0 ? MatMulKernels.MaxTailThreads * sizeof(float) : 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_a);
        access.Read(_b);
        access.Read(_e);
        access.Write(_c);
        if (_sums == 0) return;
        access.Write(_loss);
        if (_hasSide != 0) access.Read(_s);
        if (_parts.IsValid) access.Write(_parts);
    }
}

/// <summary>
/// The chain tail: once every group of the launch has stored its part of C, the last group runs the
/// stages (MatMulKernels.MatMulChain binds the counter).
/// </summary>
/// <typeparam name="TStages">The stages, Stages&lt;S1, Stages&lt;S2, NoStage&gt;&gt;.</typeparam>
public readonly struct ChainTail<TStages> : IProductTail
    where TStages : struct, IGroupStage
{
    private readonly TStages _stages;
    private readonly ArrayView<int> _arrival; // (1) groups done, 0 between launches
    private readonly int _oneFence;           // 1: the count-in's fences by thread 0 only (KernelHost.OneThreadFences)

    /// <summary>A tail that runs these stages.</summary>
    /// <param name="stages">The stages, in order.</param>
    public ChainTail(TStages stages)
        : this(stages, default, 0)
    {
    }

    private ChainTail(TStages stages, ArrayView<int> arrival, int oneFence)
    {
        _stages = stages;
        _arrival = arrival;
        _oneFence = oneFence;
    }

    /// <summary>The stages.</summary>
    public TStages Stages => _stages;

    // The launcher binds the host's counter and its count-in fences (KernelHost.OneThreadFences).
    internal ChainTail<TStages> WithArrival(ArrayView<int> arrival, bool oneThreadFences) => new(_stages, arrival, oneThreadFences ? 1 : 0);

    /// <inheritdoc/>
    public int SharedBytes => sizeof(int) + _stages.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access, ArrayView<float> c)
    {
        access.Read(c);
        access.UsesCounters();
        _stages.Touches(access);
    }

    /// <inheritdoc/>
    public void Finish(ArrayView<float> c, int count)
    {
        // SumTail's count-in (written out in both: see SumTail.Finish).
        var last = SharedMemory.Allocate<int>(1);
        int tid = Group.LinearIndex;
        if (_oneFence == 0) MemoryFence.DeviceLevel();
        Group.Barrier();
        if (tid == 0)
        {
            if (_oneFence != 0) MemoryFence.DeviceLevel();
            int isLast = Atomic.Add(ref _arrival[0], 1) == Grid.Dimension.Size - 1 ? 1 : 0;
            if (_oneFence != 0 && isLast != 0) MemoryFence.DeviceLevel();
            last[0] = isLast;
        }
        Group.Barrier();
        if (last[0] == 0) return;
        if (_oneFence == 0) MemoryFence.DeviceLevel();
        _stages.Run();
        if (tid == 0) _arrival[0] = 0;
    }
}
