// The phases of the persistent step kernel besides the warp and tiled SGEMMs (Persistent.MatMul.cs):
// elementwise maps and zips, fills, the optimizer updates, the sums, the Small SGEMM and transposes.
// Each calls its kernel's own body: those kernels stride over their work by the grid
// (Grid.GlobalIndex, Grid.DimX), so on the persistent kernel's grid they compute the same elements
// with the same operations. The two whose groups are units of
// the sum's order (SumMap and SumPartials: a partial per group) run as many virtual groups as their
// launch would, striding them over the grid; the tree sums need groups of ReduceGroupSize threads,
// which their launchers check before they record.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

// Groups a grid-stride phase over n elements finds work in.
file static class Work
{
    public static int Groups(long n, int groupSize) => (int)Math.Clamp((n + groupSize - 1) / groupSize, 1, int.MaxValue);
}

/// <summary>Elementwise.MapKernel as a phase: y = op(x).</summary>
/// <typeparam name="TOp">The op.</typeparam>
public readonly struct MapPhase<TOp> : IPhase
    where TOp : struct, IUnaryOp
{
    private readonly ArrayView<float> _x, _y; // (n) each
    private readonly int _n;
    private readonly TOp _op;

    internal MapPhase(ArrayView<float> x, ArrayView<float> y, int n, TOp op) { _x = x; _y = y; _n = n; _op = op; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Elementwise.MapKernel(_x, _y, _n, _op);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}

/// <summary>Elementwise.MapBroadcastKernel as a phase: y = op(broadcast x).</summary>
/// <typeparam name="TOp">The op.</typeparam>
public readonly struct MapBroadcastPhase<TOp> : IPhase
    where TOp : struct, IUnaryOp
{
    private readonly ArrayView<float> _x, _y; // x broadcasts to y's (n)
    private readonly int _n;
    private readonly Broadcast4 _s;
    private readonly TOp _op;

    internal MapBroadcastPhase(ArrayView<float> x, ArrayView<float> y, int n, Broadcast4 s, TOp op) { _x = x; _y = y; _n = n; _s = s; _op = op; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Elementwise.MapBroadcastKernel(_x, _y, _n, _s, _op);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}

/// <summary>Elementwise.ZipKernel as a phase: c = op(a, b).</summary>
/// <typeparam name="TOp">The op.</typeparam>
public readonly struct ZipPhase<TOp> : IPhase
    where TOp : struct, IBinaryOp
{
    private readonly ArrayView<float> _a, _b, _c; // (n) each
    private readonly int _n;
    private readonly TOp _op;

    internal ZipPhase(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int n, TOp op) { _a = a; _b = b; _c = c; _n = n; _op = op; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Elementwise.ZipKernel(_a, _b, _c, _n, _op);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_a);
        access.Read(_b);
        access.Write(_c);
    }
}

/// <summary>Elementwise.ZipBroadcastKernel as a phase: c = op(broadcast a, broadcast b).</summary>
/// <typeparam name="TOp">The op.</typeparam>
public readonly struct ZipBroadcastPhase<TOp> : IPhase
    where TOp : struct, IBinaryOp
{
    private readonly ArrayView<float> _a, _b, _c; // a and b broadcast to c's (n)
    private readonly int _n;
    private readonly Broadcast4 _s;
    private readonly TOp _op;

    internal ZipBroadcastPhase(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int n, Broadcast4 s, TOp op)
    {
        _a = a; _b = b; _c = c; _n = n; _s = s; _op = op;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Elementwise.ZipBroadcastKernel(_a, _b, _c, _n, _s, _op);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_a);
        access.Read(_b);
        access.Write(_c);
    }
}

/// <summary>Elementwise.FillKernel as a phase.</summary>
public readonly struct FillPhase : IPhase
{
    private readonly ArrayView<float> _y; // (n)
    private readonly int _n;
    private readonly float _value;

    internal FillPhase(ArrayView<float> y, int n, float value) { _y = y; _n = n; _value = value; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Elementwise.FillKernel(_y, _n, _value);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Write(_y);
    }
}

/// <summary>OptimizerKernels.MomentumKernel as a phase.</summary>
public readonly struct MomentumPhase : IPhase
{
    private readonly ArrayView<float> _p, _g, _v; // (n) each
    private readonly int _n;
    private readonly float _lr, _mu;

    internal MomentumPhase(ArrayView<float> p, ArrayView<float> g, ArrayView<float> v, int n, float lr, float mu)
    {
        _p = p; _g = g; _v = v; _n = n; _lr = lr; _mu = mu;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => OptimizerKernels.MomentumKernel(_p, _g, _v, _n, _lr, _mu);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_g);
        access.Write(_p);
        access.Write(_v);
    }
}

/// <summary>OptimizerKernels.CountKernel as a phase (Adam's step count).</summary>
public readonly struct CountPhase : IPhase
{
    private readonly ArrayView<float> _t; // (1)

    internal CountPhase(ArrayView<float> t) => _t = t;

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => OptimizerKernels.CountKernel(_t);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => 1;

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Write(_t);
    }
}

/// <summary>OptimizerKernels.AdamKernel as a phase.</summary>
public readonly struct AdamPhase : IPhase
{
    private readonly ArrayView<float> _p, _g, _m, _v; // (n) each
    private readonly ArrayView<float> _t;              // (1) the step count, counted in an earlier phase
    private readonly int _n;
    private readonly float _lr, _beta1, _beta2, _eps;

    internal AdamPhase(ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v, ArrayView<float> t, int n,
        float lr, float beta1, float beta2, float eps)
    {
        _p = p; _g = g; _m = m; _v = v; _t = t; _n = n; _lr = lr; _beta1 = beta1; _beta2 = beta2; _eps = eps;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => OptimizerKernels.AdamKernel(_p, _g, _m, _v, _t, _n, _lr, _beta1, _beta2, _eps);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups(_n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_g);
        access.Read(_t);
        access.Write(_p);
        access.Write(_m);
        access.Write(_v);
    }
}

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
    public int Groups(int groupSize, int warpSize) => Work.Groups((long)_outer * _inner, groupSize);

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
    public int Groups(int groupSize, int warpSize) => Work.Groups((long)_outer * _chunks * _inner, groupSize);

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
    public int Groups(int groupSize, int warpSize) => Work.Groups(_outN, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}

/// <summary>MatMulKernels.SplitKSumKernel as a phase: the slices of a split product summed in order, then its tail.</summary>
/// <typeparam name="TEpi">The product's epilogue.</typeparam>
/// <typeparam name="TTail">Its tail.</typeparam>
public readonly struct SplitKSumPhase<TEpi, TTail> : IPhase
    where TEpi : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly ArrayView<float> _partial, _c, _e; // (split, M, N), (M, N), the epilogue operand
    private readonly GemmArgs _g;
    private readonly int _split;
    private readonly TEpi _epi;
    private readonly TTail _tail;

    internal SplitKSumPhase(ArrayView<float> partial, ArrayView<float> c, ArrayView<float> e, GemmArgs g, int split, TEpi epi, TTail tail)
    {
        _partial = partial; _c = c; _e = e; _g = g; _split = split; _epi = epi; _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => MatMulKernels.SplitKSumKernel(_partial, _c, _e, _g, _split, _epi, _tail);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups((long)_g.M * _g.N, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_partial);
        access.Read(_e);
        access.Write(_c);
        _tail.Touches(access, _c);
    }
}

/// <summary>MatMulKernels.SmallKernel as a phase: a 4x4 block of C per thread, striding over the blocks, then the tail.</summary>
/// <typeparam name="TEpi">The product's epilogue.</typeparam>
/// <typeparam name="TTail">Its tail.</typeparam>
public readonly struct SmallPhase<TEpi, TTail> : IPhase
    where TEpi : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly ArrayView<float> _a, _b, _c, _e; // per _g's strides; C (M, N)
    private readonly GemmArgs _g;
    private readonly TEpi _epi;
    private readonly TTail _tail;

    internal SmallPhase(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, TTail tail)
    {
        _a = a; _b = b; _c = c; _e = e; _g = g; _epi = epi; _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => MatMulKernels.SmallKernel(_a, _b, _c, _e, _g, _epi, _tail);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups((long)((_g.M + 3) / 4) * ((_g.N + 3) / 4), groupSize);

    /// <inheritdoc/>
    public int SharedBytes => _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_a);
        access.Read(_b);
        access.Read(_e);
        access.Write(_c);
        _tail.Touches(access, _c);
    }
}

/// <summary>Layout.TransposeKernel as a phase.</summary>
public readonly struct TransposePhase : IPhase
{
    private readonly ArrayView<float> _x, _y; // (M, N), (N, M)
    private readonly int _m, _n;

    internal TransposePhase(ArrayView<float> x, ArrayView<float> y, int m, int n) { _x = x; _y = y; _m = m; _n = n; }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => Layout.TransposeKernel(_x, _y, _m, _n);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Work.Groups((long)_m * _n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}
