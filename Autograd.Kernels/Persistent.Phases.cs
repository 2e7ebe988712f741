// The phases of the persistent step kernel besides the warp and tiled SGEMMs (Persistent.MatMul.cs):
// elementwise maps and zips, fills, the optimizer updates, the split-K sum, the Small SGEMM and
// transposes; the sums are in Persistent.Phases.Sums.cs.
// Each calls its kernel's own body: those kernels stride over their work by the grid
// (Grid.GlobalIndex, Grid.DimX), so on the persistent kernel's grid they compute the same elements
// with the same operations.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

// Groups a grid-stride phase over n elements finds work in (here and in Persistent.Phases.Sums.cs).
internal static class PhaseWork
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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups(_n, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups((long)_g.M * _g.N, groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups((long)((_g.M + 3) / 4) * ((_g.N + 3) / 4), groupSize);

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
    public int Groups(int groupSize, int warpSize) => PhaseWork.Groups((long)_m * _n, groupSize);

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        access.Read(_x);
        access.Write(_y);
    }
}
