// Two independent products in one launch of the tiled or the warp SGEMM. Why: the seed's step ends with two
// gradient products, dW1 = x^T dH (32 tiles) and dW2 = h^T dY (1 tile), each with the SGD update in
// its store. Neither reads what the other writes, but as two launches the second waits for the first,
// and a one-tile product is all latency (run 4 on an H200: 4.8 us for dW2 alone). In one launch the
// second product's groups run beside the first's.
// How: the grid is one line of groups, the first product's (tiles x K slices) then the second's. Each
// group finds its product, tile and slice from its index and runs the same per-tile code as
// TiledKernel (TiledTile), split-K fixup included; the second product's tiles count their arrivals
// after the first's. The shared slices are allocated once and serve whichever product the group has.
// On the warp kernel (MatMulKernels.Warp.cs) the same holds with blocks for tiles: the teams stride
// over the first product's 4x4 blocks, then the second's, when both products take the same team.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>One product C(M,N) = Epi(alpha op(A) op(B) + beta C, E), as MatMul takes it.</summary>
/// <param name="A">A: (M, K) row-major, or (K, M) when TransA.</param>
/// <param name="TransA">Use A transposed.</param>
/// <param name="B">B: (K, N) row-major, or (N, K) when TransB.</param>
/// <param name="TransB">Use B transposed.</param>
/// <param name="C">C: (M, N) row-major; must not alias A, B or the other product's operands.</param>
/// <param name="M">Rows of C.</param>
/// <param name="N">Columns of C.</param>
/// <param name="K">Shared dimension.</param>
/// <param name="Alpha">Scale of the product.</param>
/// <param name="Beta">Scale of the existing C (0: C is write-only).</param>
/// <param name="Operand">The epilogue operand E (C itself when the epilogue has none).</param>
/// <param name="OperandRowStride">E's stride between rows of C.</param>
/// <param name="OperandColStride">E's stride between columns of C.</param>
public readonly record struct GemmCall(ArrayView<float> A, bool TransA, ArrayView<float> B, bool TransB, ArrayView<float> C,
    int M, int N, int K, float Alpha, float Beta, ArrayView<float> Operand, int OperandRowStride, int OperandColStride);

/// <summary>
/// One product of a paired tiled launch (MatMulKernels.MatMulPair builds it): its operands, its grid
/// of tiles and K slices. Public because ILGPU's kernel loader must see a kernel argument's type.
/// </summary>
/// <typeparam name="TEpi">The product's epilogue op.</typeparam>
public readonly struct TiledJob<TEpi>
    where TEpi : struct, IBinaryOp
{
    /// <summary>A, B, C and the epilogue operand, as the tiled kernel reads them.</summary>
    public readonly ArrayView<float> A, B, C, E;

    /// <summary>(Split, M, N) raw slices when Fixup is 1.</summary>
    public readonly ArrayView<float> Partial;

    /// <summary>(TilesX * TilesY) this product's tile counters, zero between launches.</summary>
    public readonly ArrayView<int> Arrivals;

    /// <summary>Sizes, strides, scalars and slice depth.</summary>
    public readonly GemmArgs G;

    /// <summary>1 when the slices are summed by the last to finish; the grid of tiles; K slices.</summary>
    public readonly int Fixup, TilesX, TilesY, Split;

    /// <summary>The epilogue op.</summary>
    public readonly TEpi Epi;

    internal TiledJob(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, ArrayView<float> partial,
        ArrayView<int> arrivals, GemmArgs g, int fixup, int tilesX, int tilesY, int split, TEpi epi)
    {
        A = a; B = b; C = c; E = e; Partial = partial; Arrivals = arrivals; G = g;
        Fixup = fixup; TilesX = tilesX; TilesY = tilesY; Split = split; Epi = epi;
    }

    /// <summary>Groups this product takes in the launch.</summary>
    public int Groups => TilesX * TilesY * Split;

    /// <summary>What the product reads and writes, as a phase of the persistent kernel (nothing for a job of no groups).</summary>
    /// <param name="access">Collects the buffers.</param>
    internal void Touches(PhaseAccess access)
    {
        if (Groups == 0) return;
        access.Read(A);
        access.Read(B);
        access.Read(E);
        access.Write(C);
        if (Fixup == 0) return;
        access.Write(Partial);
        access.UsesCounters();
    }
}

public static partial class MatMulKernels
{
    // The pair's split-K build takes TiledKernel's bounds, for the same reason (its fixup's 32 loads
    // in flight, and the next slice's prefetch, which ptxas placed late at 72 registers unbounded).
    private static readonly KernelSpecialization TiledPairBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(TiledPairKernel));

    /// <summary>Two tiled products in one launch: groups [0, first.Groups) take the first, the rest the second.</summary>
    [LaunchBounds(256, 2)]
    internal static void TiledPairKernel<TShape, TEpi1, TEpi2>(
        TiledJob<TEpi1> first,
        TiledJob<TEpi2> second)
        where TShape : struct, ITileShape
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        var tA = SharedMemory.Allocate<float>(Depth * TiledRow(4 * default(TShape).ThreadsY)); // [k][m] slice of A
        var tB = SharedMemory.Allocate<float>(Depth * TiledRow(4 * default(TShape).ThreadsX)); // [k][n] slice of B
        // The whole group takes the same branch, so every barrier inside is reached by all its threads.
        int idx = Grid.IdxX;
        if (idx < first.Groups) Job<TShape, TEpi1>(tA, tB, first, idx, Group.IdxX, Group.IdxY, prefetch: true);
        else Job<TShape, TEpi2>(tA, tB, second, idx - first.Groups, Group.IdxX, Group.IdxY, prefetch: true);
    }

    // Group `local` of a product's (slice, tile row, tile) order, as TiledKernel's 3-D grid numbers them;
    // (tx, ty) is the thread's place in the group; prefetch as TiledTile's.
    internal static void Job<TShape, TEpi>(ArrayView<float> tA, ArrayView<float> tB, TiledJob<TEpi> j, int local, int tx, int ty, bool prefetch)
        where TShape : struct, ITileShape
        where TEpi : struct, IBinaryOp
    {
        int tiles = j.TilesX * j.TilesY;
        int slice = local / tiles, t = local - slice * tiles;
        int tileY = t / j.TilesX, tileX = t - tileY * j.TilesX;
        TiledTile<TShape, TEpi>(tA, tB, j.A, j.B, j.C, j.E, j.Partial, j.Arrivals, j.G, j.Fixup, j.Epi, tileX, tileY, slice, j.TilesX, j.Split, tx, ty, prefetch);
    }

    /// <summary>
    /// Two independent products, each as MatMul&lt;TEpi&gt; computes it: in one launch when both run on the
    /// tiled kernel or both on the warp kernel with one team (PairInOneLaunch), else one after the other. Neither C may alias an operand of the
    /// other product.
    /// </summary>
    /// <typeparam name="TEpi1">The first product's epilogue op.</typeparam>
    /// <typeparam name="TEpi2">The second product's epilogue op.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="first">The first product.</param>
    /// <param name="epi1">Its epilogue.</param>
    /// <param name="second">The second product.</param>
    /// <param name="epi2">Its epilogue.</param>
    /// <param name="scratch">MatMulPairScratch elements.</param>
    public static void MatMulPair<TEpi1, TEpi2>(KernelHost host, GemmCall first, TEpi1 epi1, GemmCall second, TEpi2 epi2,
        ArrayView<float> scratch)
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        var g1 = Checked("MatMulPair", first);
        var g2 = Checked("MatMulPair", second);
        long need1 = SplitKScratch(host, first.M, first.N, first.K), need2 = SplitKScratch(host, second.M, second.N, second.K);
        if (scratch.Length < need1 + need2)
            throw new ArgumentException($"MatMulPair: scratch has {scratch.Length} elements, needs {need1 + need2}. Ask MatMulPairScratch first.");
        if (!PairInOneLaunch(host, first.M, first.N, first.K, second.M, second.N, second.K))
        {
            Run(first, epi1, scratch);
            Run(second, epi2, scratch);
            return;
        }
        // One launch: both halves agree on the kernel, group and team, so the first's view speaks for both.
        var view = host.ForShape(first.M, first.N, first.K);
        if (Choose(view, first.M, first.N) == MatMulPath.Warp)
        {
            int team = WarpTeam(view, first.M, first.N, first.K);
            var j1 = new WarpJob<TEpi1>(first.A, first.B, first.C, first.Operand, g1, epi1);
            var j2 = new WarpJob<TEpi2>(second.A, second.B, second.C, second.Operand, g2, epi2);
            if (host.Recorder is { } recorder)
            {
                recorder.Add(new WarpPhase<TEpi1, TEpi2, NoTail>(j1, j2, team, default), "Warp pair");
                return;
            }
            var bounds = host.Bounds(WarpPairBounds);
            var kw = host.Load(KernelHost.HasBounds(bounds) ? "MatMulWarpPair/bounded" : "MatMulWarpPair", typeof((TEpi1, TEpi2)), acc =>
                acc.LoadKernel<WarpJob<TEpi1>, WarpJob<TEpi2>, int>(WarpPairKernel, bounds));
            kw(host.Stream, TeamGrid(host, (long)j1.Blocks + j2.Blocks, team), j1, j2, team);
            return;
        }
        WithTileShape(view.TiledGroup, new PairLaunch<TEpi1, TEpi2>(host, first, g1, epi1, second, g2, epi2, scratch, need1));

        void Run<TEpi>(GemmCall p, TEpi epi, ArrayView<float> s) where TEpi : struct, IBinaryOp =>
            MatMul(host, p.A, p.TransA, p.B, p.TransB, p.C, p.M, p.N, p.K, p.Alpha, p.Beta, s, epi, p.Operand, p.OperandRowStride, p.OperandColStride);
    }

    /// <summary>
    /// Whether MatMulPair runs both products in one launch: pairing allowed (KernelHost.PairProducts),
    /// and either both products on the tiled kernel, each either unsplit or summing its slices in its
    /// own launch, with their tiles together within the split-K counters; or both on the warp kernel
    /// with the same team (MatMulKernels.WarpTeam).
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m1">Rows of the first C.</param>
    /// <param name="n1">Columns of the first C.</param>
    /// <param name="k1">The first shared dimension.</param>
    /// <param name="m2">Rows of the second C.</param>
    /// <param name="n2">Columns of the second C.</param>
    /// <param name="k2">The second shared dimension.</param>
    public static bool PairInOneLaunch(KernelHost host, int m1, int n1, int k1, int m2, int n2, int k2)
    {
        if (!host.PairProducts || (long)m1 * n1 == 0 || (long)m2 * n2 == 0) return false;
        // Each half on its own view (its tuned choice, or the rule), which must agree with the other's.
        var (v1, v2) = (host.ForShape(m1, n1, k1), host.ForShape(m2, n2, k2));
        var (path1, path2) = (Choose(v1, m1, n1), Choose(v2, m2, n2));
        if (path1 == MatMulPath.Warp && path2 == MatMulPath.Warp)
            return host.GroupSize % host.Accelerator.WarpSize == 0 && WarpTeam(v1, m1, n1, k1) == WarpTeam(v2, m2, n2, k2)
                && Blocks4x4(m1, n1) + Blocks4x4(m2, n2) <= int.MaxValue;
        if (path1 != MatMulPath.Tiled || path2 != MatMulPath.Tiled || v1.TiledGroup != v2.TiledGroup) return false;
        // One set of slices serves both halves; each half's split-K fixup has its own flag.
        if (PairSharedBytes(v1.TiledGroup) > host.Accelerator.MaxSharedMemoryPerGroup) return false;
        var grid1 = TileGrid(v1.TiledGroup, m1, n1);
        var grid2 = TileGrid(v2.TiledGroup, m2, n2);
        static bool OneLaunch(KernelHost v, int m, int n, int k, (int X, int Y) grid) => SplitK(v, m, n, k) == 1 || SumsInSameLaunch(v, grid);
        return OneLaunch(v1, m1, n1, k1, grid1) && OneLaunch(v2, m2, n2, k2, grid2)
            && (long)grid1.X * grid1.Y + (long)grid2.X * grid2.Y <= KernelHost.MaxSplitKTiles;
    }

    /// <summary>Scratch elements MatMulPair needs: each product's split-K slices, side by side.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m1">Rows of the first C.</param>
    /// <param name="n1">Columns of the first C.</param>
    /// <param name="k1">The first shared dimension.</param>
    /// <param name="m2">Rows of the second C.</param>
    /// <param name="n2">Columns of the second C.</param>
    /// <param name="k2">The second shared dimension.</param>
    public static long MatMulPairScratch(KernelHost host, int m1, int n1, int k1, int m2, int n2, int k2) =>
        SplitKScratch(host, m1, n1, k1) + SplitKScratch(host, m2, n2, k2);

    /// <summary>Shared memory a paired launch of this tiled group uses: one set of slices, two split-K flags.</summary>
    /// <param name="group">Threads along x and along y.</param>
    public static int PairSharedBytes((int X, int Y) group) => TiledSharedBytes(group) + sizeof(int);

    private static GemmArgs Checked(string op, GemmCall p) =>
        Checked(op, p.A, p.TransA, p.B, p.TransB, p.C, p.M, p.N, p.K, p.Alpha, p.Beta, p.Operand, p.OperandRowStride, p.OperandColStride);

    private static void Pair<TShape, TEpi1, TEpi2>(KernelHost host, GemmCall p1, GemmArgs g1, TEpi1 epi1,
        GemmCall p2, GemmArgs g2, TEpi2 epi2, ArrayView<float> scratch, long need1)
        where TShape : struct, ITileShape
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        var group = new Index3D(default(TShape).ThreadsX, default(TShape).ThreadsY, 1);
        var grid1 = TileGrid((group.X, group.Y), p1.M, p1.N);
        var j1 = Job(host, p1, g1, epi1, grid1, scratch, host.SplitKArrivals);
        var j2 = Job(host, p2, g2, epi2, TileGrid((group.X, group.Y), p2.M, p2.N), scratch.Length > need1 ? scratch.SubView(need1) : default, // empty when the second does not split
            host.SplitKArrivals.SubView(grid1.X * grid1.Y));
        if (host.Recorder is { } recorder)
        {
            RecordTiled(host, group);
            recorder.Add(new TiledPhase<TShape, TEpi1, TEpi2, NoTail>(j1, j2, default), "Tiled pair");
            return;
        }
        var bounds = j1.Fixup != 0 || j2.Fixup != 0 ? host.Bounds(TiledPairBounds) : KernelSpecialization.Empty;
        var k = host.Load(KernelHost.HasBounds(bounds) ? "MatMulTiledPair/bounded" : "MatMulTiledPair", typeof(TShape), typeof((TEpi1, TEpi2)), acc =>
            acc.LoadKernel<TiledJob<TEpi1>, TiledJob<TEpi2>>(TiledPairKernel<TShape, TEpi1, TEpi2>, bounds));
        k(host.Stream, new KernelConfig(new Index3D(j1.Groups + j2.Groups, 1, 1), group), j1, j2);
    }

    private readonly record struct PairLaunch<TEpi1, TEpi2>(KernelHost Host, GemmCall P1, GemmArgs G1, TEpi1 Epi1,
        GemmCall P2, GemmArgs G2, TEpi2 Epi2, ArrayView<float> Scratch, long Need1) : ITileShapeAction
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        public void Run<TShape>() where TShape : struct, ITileShape =>
            Pair<TShape, TEpi1, TEpi2>(Host, P1, G1, Epi1, P2, G2, Epi2, Scratch, Need1);
    }

    // A product as one half of a pair: split-K slices summed in the launch (fixup), as Tiled does.
    private static TiledJob<TEpi> Job<TEpi>(KernelHost host, GemmCall p, GemmArgs g, TEpi epi, (int X, int Y) grid,
        ArrayView<float> partial, ArrayView<int> arrivals)
        where TEpi : struct, IBinaryOp =>
        OneLaunchJob(host, p.A, p.B, p.C, p.Operand, g, epi, grid, partial, arrivals);

    // The tiled kernel's work for one product in one launch: its tiles over the whole of K, or over
    // SplitK slices whose partial products go to the scratch and are summed by the last slice of
    // each tile (the pair's halves, and the product as a phase of the persistent kernel).
    private static TiledJob<TEpi> OneLaunchJob<TEpi>(KernelHost host, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> operand, GemmArgs g, TEpi epi, (int X, int Y) grid, ArrayView<float> scratch, ArrayView<int> arrivals)
        where TEpi : struct, IBinaryOp
    {
        int split = SplitK(host, g.M, g.N, g.K);
        if (split == 1) return new TiledJob<TEpi>(a, b, c, operand, c, arrivals, g, 0, grid.X, grid.Y, 1, epi);
        var sliced = g.WithSliceDepth(SliceDepth(g.K, split));
        return new TiledJob<TEpi>(a, b, c, operand, Partials(scratch, g, split), arrivals, sliced, 1, grid.X, grid.Y, split, epi);
    }
}
