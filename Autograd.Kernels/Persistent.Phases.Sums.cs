// The sums as phases of the persistent step kernel (Persistent.Phases.cs has the rest): each calls
// its kernel's own body on the persistent kernel's grid. SumMap and SumPartials are units of the
// sum's order (a partial per group), so they run as many virtual groups as their launch would,
// striding them over the grid; the tree sums need groups of ReduceGroupSize threads, which their
// launchers check before they record.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Reduce.SumMapKernel as a phase: `groups` virtual groups, each a partial (or the sum, for one).</summary>
/// <typeparam name="TMap">The op summed.</typeparam>
/// <typeparam name="TSide">The side op.</typeparam>
public readonly struct SumMapPhase<TMap, TSide> : IPhase
    where TMap : struct, IUnaryOp
    where TSide : struct, IBinaryOp
{
    private readonly ArrayView<float> _x;       // (n)
    private readonly ArrayView<float> _partial; // (groups), or the sum when groups is 1
    private readonly ArrayView<float> _side, _s;
    private readonly int _n, _sStride, _hasSide, _groups;
    private readonly float _scale;
    private readonly TMap _map;
    private readonly TSide _sideOp;

    internal SumMapPhase(ArrayView<float> x, ArrayView<float> partial, ArrayView<float> side, ArrayView<float> s, int n, int sStride,
        int hasSide, float scale, TMap map, TSide sideOp, int groups)
    {
        _x = x; _partial = partial; _side = side; _s = s; _n = n; _sStride = sStride; _hasSide = hasSide; _scale = scale;
        _map = map; _sideOp = sideOp; _groups = groups;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        for (int g = Grid.IdxX; g < _groups; g += Grid.DimX)
            Reduce.SumMapGroup(_x, _partial, _side, _s, _n, _sStride, _hasSide, _scale, _map, _sideOp, g, _groups);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => _groups;

    /// <inheritdoc/>
    public int SharedBytes => Reduce.GroupSumBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_partial);
        if (_hasSide == 0) return;
        access.Read(_s);
        access.Write(_side);
    }
}

/// <summary>Reduce.SumPartialsKernel's one group as a phase: the partials' sum.</summary>
public readonly struct SumPartialsPhase : IPhase
{
    private readonly ArrayView<float> _partial, _y; // (n), (1)
    private readonly int _n;
    private readonly float _scale;

    internal SumPartialsPhase(ArrayView<float> partial, ArrayView<float> y, int n, float scale) { _partial = partial; _y = y; _n = n; _scale = scale; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        if (Grid.IdxX == 0) Reduce.SumPartialsGroup(_partial, _y, _n, _scale, 0, 1);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => 1;

    /// <inheritdoc/>
    public int SharedBytes => Reduce.GroupSumBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_partial);
        access.Write(_y);
    }
}

/// <summary>Reduce.SumRowsKernel as a phase: a group per row, striding over rows.</summary>
public readonly struct SumRowsPhase : IPhase
{
    private readonly ArrayView<float> _x, _y; // (rows, r), (rows)
    private readonly int _rows, _r;
    private readonly float _alpha, _beta;

    internal SumRowsPhase(ArrayView<float> x, ArrayView<float> y, int rows, int r, float alpha, float beta)
    {
        _x = x; _y = y; _rows = rows; _r = r; _alpha = alpha; _beta = beta;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Reduce.SumRowsKernel(_x, _y, _rows, _r, _alpha, _beta);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Math.Max(1, _rows);

    /// <inheritdoc/>
    public int SharedBytes => Reduce.GroupSumBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}

/// <summary>Reduce.SumMiddleKernel as a phase: a thread per output down the reduced rows.</summary>
public readonly struct SumMiddlePhase : IPhase
{
    private readonly ArrayView<float> _x, _y; // (outer, r, inner), (outer, inner)
    private readonly int _outer, _r, _inner;
    private readonly float _alpha, _beta;

    internal SumMiddlePhase(ArrayView<float> x, ArrayView<float> y, int outer, int r, int inner, float alpha, float beta)
    {
        _x = x; _y = y; _outer = outer; _r = r; _inner = inner; _alpha = alpha; _beta = beta;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Reduce.SumMiddleKernel(_x, _y, _outer, _r, _inner, _alpha, _beta);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups((long)_outer * _inner, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}

/// <summary>Reduce.SumMiddleChunksKernel as a phase: chunks of the reduced rows, each summed in order.</summary>
public readonly struct SumMiddleChunksPhase : IPhase
{
    private readonly ArrayView<float> _x, _partial; // (outer, r, inner), (outer, chunks, inner)
    private readonly int _outer, _r, _inner, _chunk, _chunks;

    internal SumMiddleChunksPhase(ArrayView<float> x, ArrayView<float> partial, int outer, int r, int inner, int chunk, int chunks)
    {
        _x = x; _partial = partial; _outer = outer; _r = r; _inner = inner; _chunk = chunk; _chunks = chunks;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Reduce.SumMiddleChunksKernel(_x, _partial, _outer, _r, _inner, _chunk, _chunks);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups((long)_outer * _chunks * _inner, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_partial);
    }
}

/// <summary>Reduce.SumAxesKernel as a phase: a thread per output over any reduced axes.</summary>
public readonly struct SumAxesPhase : IPhase
{
    private readonly ArrayView<float> _x, _y; // rank <= 4, (outN)
    private readonly int _outN;
    private readonly ReduceArgs _r;
    private readonly float _alpha, _beta;

    internal SumAxesPhase(ArrayView<float> x, ArrayView<float> y, int outN, ReduceArgs r, float alpha, float beta)
    {
        _x = x; _y = y; _outN = outN; _r = r; _alpha = alpha; _beta = beta;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Reduce.SumAxesKernel(_x, _y, _outN, _r, _alpha, _beta);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_outN, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}
