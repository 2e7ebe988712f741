// The warp and tiled SGEMMs as phases of the persistent step kernel (Persistent.cs): each holds its
// launcher's arguments and runs the kernel's own body over the persistent grid, so a product, a pair
// or a split-K slice computes the bits of its launch.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>The warp SGEMM as a phase: one product (the second job empty) or two, then the first's tail.</summary>
/// <typeparam name="TEpi1">The first product's epilogue.</typeparam>
/// <typeparam name="TEpi2">The second product's epilogue.</typeparam>
/// <typeparam name="TTail">The first product's tail (NoTail for a pair).</typeparam>
public readonly struct WarpPhase<TEpi1, TEpi2, TTail> : IPhase
    where TEpi1 : struct, IBinaryOp
    where TEpi2 : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly WarpJob<TEpi1> _first;
    private readonly WarpJob<TEpi2> _second;
    private readonly int _team;
    private readonly TTail _tail;

    internal WarpPhase(WarpJob<TEpi1> first, WarpJob<TEpi2> second, int team, TTail tail)
    {
        _first = first;
        _second = second;
        _team = team;
        _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        MatMulKernels.WarpBlocks(_first, _second, _team);
        _tail.Finish(_first.C, _first.G.M * _first.G.N);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize)
    {
        long teams = Math.Max(1, groupSize / warpSize / _team);
        return (int)Math.Min(int.MaxValue, ((long)_first.Blocks + _second.Blocks + teams - 1) / teams);
    }

    /// <inheritdoc/>
    public int SharedBytes => MatMulKernels.WarpSharedBytes + _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        foreach (var (a, b, c, e) in new[] { (_first.A, _first.B, _first.C, _first.E), (_second.A, _second.B, _second.C, _second.E) })
        {
            access.Read(a);
            access.Read(b);
            access.Read(e);
            access.Write(c);
        }
        _tail.Touches(access, _first.C);
    }
}

/// <summary>
/// The tiled SGEMM as a phase: one product (the second job has no groups) or two, each with its
/// split-K fixup, then the first's tail. Needs groups of exactly TShape's threads.
/// </summary>
/// <typeparam name="TShape">The tiled group's shape.</typeparam>
/// <typeparam name="TEpi1">The first product's epilogue.</typeparam>
/// <typeparam name="TEpi2">The second product's epilogue.</typeparam>
/// <typeparam name="TTail">The first product's tail (NoTail for a pair).</typeparam>
public readonly struct TiledPhase<TShape, TEpi1, TEpi2, TTail> : IPhase
    where TShape : struct, ITileShape
    where TEpi1 : struct, IBinaryOp
    where TEpi2 : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly TiledJob<TEpi1> _first;
    private readonly TiledJob<TEpi2> _second;
    private readonly TTail _tail;

    internal TiledPhase(TiledJob<TEpi1> first, TiledJob<TEpi2> second, TTail tail)
    {
        _first = first;
        _second = second;
        _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        int sx = default(TShape).ThreadsX, sy = default(TShape).ThreadsY;
        var tA = SharedMemory.Allocate<float>(MatMulKernels.TiledSliceFloats(default(TShape).ThreadsY)); // [k][m] slice of A
        var tB = SharedMemory.Allocate<float>(MatMulKernels.TiledSliceFloats(default(TShape).ThreadsX)); // [k][n] slice of B
        int t = Group.LinearIndex, tx = t % sx, ty = t / sx;
        int total = _first.Groups + _second.Groups;
        // A whole group takes each trip and branch together, so it reaches every barrier inside.
        for (int idx = Grid.IdxX; idx < total; idx += Grid.DimX)
        {
            if (idx < _first.Groups) MatMulKernels.Job<TShape, TEpi1>(tA, tB, _first, idx, tx, ty, prefetch: false);
            else MatMulKernels.Job<TShape, TEpi2>(tA, tB, _second, idx - _first.Groups, tx, ty, prefetch: false);
        }
        _tail.Finish(_first.C, _first.G.M * _first.G.N);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => _first.Groups + _second.Groups;

    /// <inheritdoc/>
    public int SharedBytes =>
        MatMulKernels.TiledPhaseSharedBytes((default(TShape).ThreadsX, default(TShape).ThreadsY)) + _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _first.Touches(access);
        _second.Touches(access);
        _tail.Touches(access, _first.C);
    }
}
