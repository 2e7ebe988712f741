// The SGEMM launcher: the only entry to the kernels of MatMulKernels*.cs. It checks sizes, picks
// the kernel for the device and shape (the tuned table's choice where the host follows one, else the
// rule: Choose), splits K where the output has too few tiles to fill the device (SplitK), and
// launches. Pinning a path (KernelHost.MatMulPath, AUTOGRAD_MATMUL) is for tests and benchmarks.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>The kernel MatMul takes for this shape on this host by the rule (or, on a tuned view, its choice); Choose(host, m, n, k) includes the tuned table.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    public static MatMulPath Choose(KernelHost host, int m, int n)
    {
        // A tuned view (KernelHost.ForShape) pins its choice as settings, so the forced branch answers for it.
        if (host.MatMulPath != MatMulPath.Auto)
        {
            if (host.MatMulPath == MatMulPath.Host && !host.IsCpu)
                throw new InvalidOperationException(
                    $"MatMul: the Host path computes on host memory and runs only on the CPU accelerator, not on {host.Accelerator.Name}; use Auto.");
            if (Has128Tiles(host.MatMulPath) && !host.CanUseLargeMatMul)
                throw new InvalidOperationException(
                    $"MatMul: the {host.MatMulPath} kernel needs groups of {LargeThreads} threads; this accelerator allows {host.Accelerator.MaxNumThreadsPerGroup}. Use Tiled, whose group fits the accelerator.");
            return host.MatMulPath;
        }
        if (host.IsCpu) return MatMulPath.Host;
        if ((long)m * n <= host.WarpMaxOutputs) return MatMulPath.Warp;
        if (!host.CanUseLargeMatMul) return MatMulPath.Tiled;
        // 128x128 tiles once there are enough of them to give every multiprocessor one: Wide16. On the
        // H200 (eleventh session, runs 6 and 7) Wide beat Large 3.3x at 1024^3, 4096^3 and 8192^3, and
        // Wide16 beat Wide at every size and layout timed (4096^3 NN 40.8 against 40.0 TFLOP/s, TN
        // 42.6 against 40.4, 8192^3 NN 42.0 against 40.6; the big step 9.23 against 9.54 ms). A tie
        // in autotuning keeps the rule's choice, so the rule must name the better kernel.
        long large = (long)((m + LargeTile - 1) / LargeTile) * ((n + LargeTile - 1) / LargeTile);
        return large >= host.Accelerator.NumMultiprocessors ? MatMulPath.Wide16 : MatMulPath.Tiled;
    }

    /// <summary>The kernel MatMul takes for this product on this host: the tuned choice where the host follows one, else the rule.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static MatMulPath Choose(KernelHost host, int m, int n, int k) => Choose(host.ForShape(m, n, k), m, n);

    /// <summary>The kernel MatMul runs for this shape on this host, as text: "Host", "Large", or e.g.
    /// "Tiled 16x16, split-K 32 in one launch"; with withSum, where MatMulSum sums C, e.g. "Warp, sum in
    /// the same launch".</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="withSum">Describe MatMulSum rather than MatMul.</param>
    /// <param name="transA">A stored (K, M) (the layout decides where Wide16 copies its slices with cp.async).</param>
    /// <param name="transB">B stored (N, K).</param>
    public static string Describe(KernelHost host, int m, int n, int k, bool withSum = false, bool transA = false, bool transB = false)
    {
        host = host.ForShape(m, n, k);
        var path = Choose(host, m, n);
        string text = path.ToString();
        if (path == MatMulPath.Tiled)
        {
            var (x, y) = host.TiledGroup;
            int split = SplitK(host, m, n, k);
            bool one = SumsInSameLaunch(host, TileGrid(host.TiledGroup, m, n));
            text = split == 1 ? $"Tiled {x}x{y}" : $"Tiled {x}x{y}, split-K {split} in {(one ? "one launch" : "two launches")}";
        }
        if (Has128Tiles(path))
        {
            int layers = SplitK(host, m, n, k);
            if (layers > 1) text = $"{path}, split-K {layers} in two launches";
            if (path == MatMulPath.Wide16 && WholeTiles(host, m, n, k, layers))
                text += TransposedCopies(host, m, n, k, layers, transA, transB) switch
                {
                    (true, true) => ", A and B transposed first, whole tiles, async copies",
                    (true, false) => ", A transposed first, whole tiles, async copies",
                    (false, true) => ", B transposed first, whole tiles, async copies",
                    _ => AsyncCopies(host, m, n, k, layers, transA, transB) ? ", whole tiles, async copies" : ", whole tiles",
                };
        }
        if (path == MatMulPath.Warp && WarpTeam(host, m, n, k) is > 1 and var team) text = $"Warp, teams of {team} warps";
        if (host.IsTunedView) text += ", autotuned";
        if (!withSum) return text;
        return text + (path == MatMulPath.Host ? ", sum on the host"
            : SumInSameLaunch(host, m, n, k) ? ", sum in the same launch" : ", sum in a second launch");
    }

    /// <summary>Number of K slices MatMul uses for this shape (1: no split, no scratch needed).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static int SplitK(KernelHost host, int m, int n, int k)
    {
        host = host.ForShape(m, n, k);
        if (m == 0 || n == 0 || k == 0) return 1;
        var path = Choose(host, m, n);
        // Large, Wide and Wide16 split only where asked (a tuned choice, a test); the rule never splits them.
        bool big = Has128Tiles(path) && host.MatMulSplitK is > 1;
        if (path != MatMulPath.Tiled && !big) return 1;
        int split;
        if (host.MatMulSplitK is { } forced) split = forced;
        else
        {
            // Aim for two groups per multiprocessor. A slice may be a single 16-deep step: measured on an
            // H200, a one-tile product looping over K is latency-bound (~16 us for K = 100).
            var grid = TileGrid(host.TiledGroup, m, n);
            int tiles = grid.X * grid.Y;
            int target = 2 * host.Accelerator.NumMultiprocessors;
            split = Math.Min((target + tiles - 1) / tiles, k / Depth);
        }
        if (split < 2) return 1;
        int kPer = SliceDepth(k, split);
        return (k + kPer - 1) / kPer;
    }

    // The tiled kernel's grid for C (M, N): groups of (x, y) threads each compute a (4y, 4x) tile.
    private static (int X, int Y) TileGrid((int X, int Y) group, int m, int n) =>
        ((n + 4 * group.X - 1) / (4 * group.X), (m + 4 * group.Y - 1) / (4 * group.Y));

    // Whether a split product's slices are summed in its own launch: asked for, and each tile has an
    // arrival counter.
    private static bool SumsInSameLaunch(KernelHost host, (int X, int Y) grid) =>
        host.SplitKInOneLaunch && (long)grid.X * grid.Y <= KernelHost.MaxSplitKTiles;

    /// <summary>
    /// Warps the Warp kernel gives each 4x4 block of C for this shape (KernelHost.WarpTeam, or by the
    /// shape): the smallest power of two that brings a thread's share of K to its fewest round trips
    /// to memory (four k a trip), within the group's warps and the device's resident threads.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static int WarpTeam(KernelHost host, int m, int n, int k)
    {
        host = host.ForShape(m, n, k);
        int w = host.Accelerator.WarpSize, warps = host.GroupSize / w;
        if (host.WarpTeam is { } forced)
            return forced <= warps && warps % forced == 0 && (forced == 1 || warps <= MaxTeamWarps) ? forced
                : throw new NotSupportedException(
                    $"MatMul: a Warp team of {forced} warps does not fit {host.Accelerator.Name}'s groups of {warps} warps " +
                    $"(a team divides the group's warps, and teams need groups of at most {MaxTeamWarps} warps). Set KernelHost.WarpTeam to a divisor, or null.");
        if (warps > MaxTeamWarps) return 1;
        // Resident threads as the kernel's launch bounds leave them (2 groups a multiprocessor on a GPU).
        int groups = Math.Min(host.MaxGroups, host.Accelerator.NumMultiprocessors * host.GroupsPerMultiprocessor(host.Bounds(WarpBounds)));
        long resident = (long)groups * host.GroupSize, blocks = Blocks4x4(m, n);
        static int Trips(int k, int threads) => ((k + threads - 1) / threads + 3) / 4;
        int team = 1;
        while (team * 2 <= warps && Trips(k, w * team * 2) < Trips(k, w * team) && blocks * w * team * 2 <= resident) team *= 2;
        return team;
    }

    // The warp kernel's grid: a team of `team` warps for each of `blocks` 4x4 blocks, grid-strided.
    private static KernelConfig TeamGrid(KernelHost host, long blocks, int team) =>
        host.GridStride(blocks * team * host.Accelerator.WarpSize);

    // 4x4 blocks of C (M, N), the Small and Warp kernels' unit of work.
    private static long Blocks4x4(int m, int n) => (long)((m + 3) / 4) * ((n + 3) / 4);

    private static int SliceDepth(int k, int split) => ((k + split - 1) / split + Depth - 1) / Depth * Depth;

    /// <summary>
    /// Scratch elements MatMul needs for this product: the split-K partials where K is split, and the
    /// operands it copies transposed (KernelHost.TransposedCopies); 0 for neither. Without the layout it
    /// answers for NN (A copied); give NT's or TT's layout, whose B is copied too.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="transA">A stored (K, M).</param>
    /// <param name="transB">B stored (N, K).</param>
    public static long SplitKScratch(KernelHost host, int m, int n, int k, bool transA = false, bool transB = false)
    {
        int split = SplitK(host, m, n, k);
        long partials = split == 1 ? 0 : (long)split * m * n;
        var (copyA, copyB) = TransposedCopies(host.ForShape(m, n, k), m, n, k, split, transA, transB);
        return partials + (copyA ? (long)m * k : 0) + (copyB ? (long)n * k : 0);
    }

    /// <summary>C(M,N) = alpha * op(A) op(B) + beta * C.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major; must not alias A or B.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C (0: C is write-only).</param>
    /// <param name="scratch">SplitKScratch(host, m, n, k) elements when that is not 0; else unused.</param>
    public static void MatMul(KernelHost host,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha = 1f, float beta = 0f, ArrayView<float> scratch = default) =>
        MatMul(host, a, transA, b, transB, c, m, n, k, alpha, beta, scratch, default(FirstOp), c, 0, 0);

    /// <summary>
    /// C(i, j) = epilogue(alpha * (op(A) op(B))(i, j) + beta * C(i, j), E(i, j)) with
    /// E(i, j) = operand[i * operandRowStride + j * operandColStride]: the product with an elementwise
    /// op fused into its store (bias: AddOp with strides (0, 1); relu: a BinaryThen of FirstOp and a
    /// ClampOp; a mask: Flip of ClampGradOp with the clamp's output).
    /// </summary>
    /// <typeparam name="TEpi">The epilogue op: (product element, operand element) -> stored value.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="a">A: (M, K) row-major, or (K, M) when transA.</param>
    /// <param name="transA">Use A transposed.</param>
    /// <param name="b">B: (K, N) row-major, or (N, K) when transB.</param>
    /// <param name="transB">Use B transposed.</param>
    /// <param name="c">C: (M, N) row-major; must not alias A or B.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C (0: C is write-only).</param>
    /// <param name="scratch">SplitKScratch(host, m, n, k) elements when that is not 0; else unused.</param>
    /// <param name="epilogue">The epilogue op.</param>
    /// <param name="operand">E's buffer; may alias C only at the same element (strides (N, 1)).</param>
    /// <param name="operandRowStride">E's stride between rows of C (0 broadcasts one row).</param>
    /// <param name="operandColStride">E's stride between columns of C (0 broadcasts one column).</param>
    public static void MatMul<TEpi>(KernelHost host,
        ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> scratch,
        TEpi epilogue, ArrayView<float> operand, int operandRowStride, int operandColStride)
        where TEpi : struct, IBinaryOp
    {
        var g = Checked("MatMul", a, transA, b, transB, c, m, n, k, alpha, beta, operand, operandRowStride, operandColStride);
        if (m == 0 || n == 0) return;
        host = host.ForShape(m, n, k);
        var path = Choose(host, m, n);
        if (path == MatMulPath.Host) HostMatMul(host, a, b, c, operand, g, epilogue);
        else Launch(host, path, a, b, c, operand, g, scratch, epilogue, default(NoTail));
    }

    // The size and stride checks every entry makes; the product's arguments.
    private static GemmArgs Checked(string op, ArrayView<float> a, bool transA, ArrayView<float> b, bool transB, ArrayView<float> c,
        int m, int n, int k, float alpha, float beta, ArrayView<float> operand, int operandRowStride, int operandColStride)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"{op}: negative size M={m}, N={n}, K={k}.");
        Check.Length(op, "a", a, (long)m * k);
        Check.Length(op, "b", b, (long)k * n);
        Check.Length(op, "c", c, (long)m * n);
        if (operandRowStride < 0 || operandColStride < 0)
            throw new ArgumentException($"{op}: epilogue operand strides must be >= 0, got ({operandRowStride}, {operandColStride}).");
        if (m > 0 && n > 0)
            Check.AtLeast(op, "operand", operand, (long)(m - 1) * operandRowStride + (long)(n - 1) * operandColStride + 1);
        return new GemmArgs(m, n, k, transA, transB, alpha, beta).WithOperand(operandRowStride, operandColStride);
    }

    // One product on a device kernel (every path but Host), with its tail in the launch that stores C.
    private static void Launch<TEpi, TTail>(KernelHost host, MatMulPath path, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> operand, GemmArgs g, ArrayView<float> scratch, TEpi epilogue, TTail tail)
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        int m = g.M, n = g.N;
        if (Has128Tiles(path))
        {
            if (typeof(TTail) != typeof(NoTail))
                throw new InvalidOperationException($"MatMul: the {path} kernel has no tail; MatMulSum sums its C in a second launch.");
            int split = SplitK(host, m, n, g.K);
            var copies = path == MatMulPath.Wide16 ? TransposedCopies(host, m, n, g.K, split, transA: g.Ak != 1, transB: g.Bn != 1) : default;
            bool copied = copies.A || copies.B;
            if (copied)
            {
                // As TN: A (M, K) copied to (K, M), B (N, K) to (K, N), after the split's partials in the
                // scratch; then Wide16's cp.async kernel reads both along m and n.
                var (at, bt) = TransposedScratch(scratch, g, split, copies);
                if (copies.A)
                {
                    Layout.Transpose(host, a.SubView(0, (long)m * g.K), at, m, g.K);
                    (a, g) = (at, g.WithAStoredKM());
                }
                if (copies.B)
                {
                    Layout.Transpose(host, b.SubView(0, (long)n * g.K), bt, n, g.K);
                    (b, g) = (bt, g.WithBStoredKN());
                }
            }
            if (split == 1)
            {
                bool onAsync = Big(host, path, a, b, c, operand, g, 1, epilogue);
                if (copied) host.CountCopiedProduct(onAsync);
                return;
            }
            // Split K (a tuned choice, never the rule): raw slices into the scratch, then their sum.
            var slices = Partials(scratch, g, split);
            var depth = g.WithSliceDepth(SliceDepth(g.K, split));
            bool slicesOnAsync = Big(host, path, a, b, slices, slices, depth.Sliced(depth.KPer), split, default(FirstOp));
            if (copied) host.CountCopiedProduct(slicesOnAsync);
            SumSlices(host, slices, c, operand, g, split, epilogue, tail);
            return;
        }
        if (path == MatMulPath.Tiled)
        {
            WithTileShape(host.TiledGroup, new TiledLaunch<TEpi, TTail>(host, a, b, c, operand, g, scratch, epilogue, tail));
            return;
        }
        if (path == MatMulPath.Warp)
        {
            if (host.GroupSize % host.Accelerator.WarpSize != 0)
                throw new NotSupportedException(
                    $"MatMul: the Warp kernel needs groups of whole warps; {host.Accelerator.Name} has groups of {host.GroupSize} and warps of {host.Accelerator.WarpSize}. Use Tiled or Small.");
            if (host.Recorder is { } recorder)
            {
                var job = new WarpJob<TEpi>(a, b, c, operand, g, epilogue);
                recorder.Add(new WarpPhase<TEpi, TEpi, TTail>(job, job.Without(), WarpTeam(host, m, n, g.K), tail), PhaseName("Warp", tail));
                return;
            }
            var bounds = host.Bounds(WarpBounds);
            var kw = host.Load(KernelHost.HasBounds(bounds) ? "MatMulWarp/bounded" : "MatMulWarp", typeof((TEpi, TTail)), acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int, TEpi, TTail>(WarpKernel, bounds));
            int team = WarpTeam(host, m, n, g.K);
            kw(host.Stream, TeamGrid(host, Blocks4x4(m, n), team), a, b, c, operand, g, team, epilogue, tail);
            return;
        }
        if (host.Recorder is { } smallRecorder)
        {
            smallRecorder.Add(new SmallPhase<TEpi, TTail>(a, b, c, operand, g, epilogue, tail), PhaseName("Small", tail));
            return;
        }
        var smallBounds = host.Bounds(SmallBounds);
        var ks = host.Load(KernelHost.HasBounds(smallBounds) ? "MatMulSmall/bounded" : "MatMulSmall", typeof((TEpi, TTail)), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, TEpi, TTail>(SmallKernel, smallBounds));
        ks(host.Stream, host.GridStride(Blocks4x4(m, n)), a, b, c, operand, g, epilogue, tail);
    }

    // One launch of a 128x128-tile kernel over `layers` K slices (grid z; 1: the whole product into C);
    // true where it ran on Wide16's cp.async kernel.
    private static bool Big<TEpi>(KernelHost host, MatMulPath path, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> operand, GemmArgs g, int layers, TEpi epilogue)
        where TEpi : struct, IBinaryOp
    {
        var group = new Index3D(LargeSide, LargeSide, 1);
        if (path is MatMulPath.Wide or MatMulPath.Wide16)
        {
            int vec = WideVectorizable(a, b, g);
            var grid = new Index3D((g.N + WideTile - 1) / WideTile, (g.M + WideTile - 1) / WideTile, layers);
            if (path == MatMulPath.Wide16 && AsyncCopies(host, g, layers, vec))
            {
                var asyncBounds = host.Bounds(AsyncBounds);
                var kasync = host.Load(KernelHost.HasBounds(asyncBounds) ? "MatMulWide16/async/bounded" : "MatMulWide16/async", typeof(TEpi),
                    acc => LoadWide16Async<TEpi>(acc, asyncBounds));
                kasync(host.Stream, new KernelConfig(grid, group, SharedMemoryConfig.RequestDynamic<Float4>(AsyncSharedBytes / 16)),
                    a, b, c, operand, g, Address(a), Address(b), epilogue);
                return true;
            }
            if (path == MatMulPath.Wide16 && WholeTiles(host, g, layers, vec))
            {
                var kwhole = host.Load("MatMulWide16/whole", typeof(TEpi), acc =>
                    acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, TEpi>(Wide16WholeKernel));
                kwhole(host.Stream, new KernelConfig(grid, group), a, b, c, operand, g, epilogue);
                return false;
            }
            // The same arguments and grid; Wide16 reads its slices 16 k deep instead of 8.
            var kw = path == MatMulPath.Wide16
                ? host.Load("MatMulWide16", typeof(TEpi), acc =>
                    acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int, TEpi>(Wide16Kernel))
                : host.Load("MatMulWide", typeof(TEpi), acc =>
                    acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int, TEpi>(WideKernel));
            kw(host.Stream, new KernelConfig(grid, group), a, b, c, operand, g, vec, epilogue);
            return false;
        }
        var kl = host.Load("MatMulLarge", typeof(TEpi), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, TEpi>(LargeKernel));
        var largeGrid = new Index3D((g.N + LargeTile - 1) / LargeTile, (g.M + LargeTile - 1) / LargeTile, layers);
        kl(host.Stream, new KernelConfig(largeGrid, group), a, b, c, operand, g, epilogue);
        return false;
    }

    // Work that needs the tiled group's shape as a type argument: its sizes are then constants in the
    // kernel. WithTileShape maps the host's group (picked from its limits) to the shape's struct.
    private interface ITileShapeAction
    {
        void Run<TShape>() where TShape : struct, ITileShape;
    }

    private static void WithTileShape<TAction>((int X, int Y) group, TAction action)
        where TAction : struct, ITileShapeAction
    {
        switch (group)
        {
            case (16, 16): action.Run<Tile16x16>(); break;
            case (8, 8): action.Run<Tile8x8>(); break;
            case (4, 4): action.Run<Tile4x4>(); break;
            case (2, 2): action.Run<Tile2x2>(); break;
            case (2, 1): action.Run<Tile2x1>(); break;
            default: action.Run<Tile1x1>(); break;
        }
    }

    private readonly record struct TiledLaunch<TEpi, TTail>(KernelHost Host, ArrayView<float> A, ArrayView<float> B, ArrayView<float> C,
        ArrayView<float> Operand, GemmArgs G, ArrayView<float> Scratch, TEpi Epilogue, TTail Tail) : ITileShapeAction
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        public void Run<TShape>() where TShape : struct, ITileShape =>
            Tiled<TShape, TEpi, TTail>(Host, A, B, C, Operand, G, Scratch, Epilogue, Tail);
    }

    private static readonly KernelSpecialization TiledBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(TiledKernel));

    // The tiled kernel on one group shape: one launch, split-K in one launch, or split-K in two.
    private static void Tiled<TShape, TEpi, TTail>(KernelHost host, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> operand, GemmArgs g, ArrayView<float> scratch, TEpi epilogue, TTail tail)
        where TShape : struct, ITileShape
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        int m = g.M, n = g.N;
        var group = new Index3D(default(TShape).ThreadsX, default(TShape).ThreadsY, 1);
        var (gx, gy) = TileGrid((group.X, group.Y), m, n);
        int split = SplitK(host, m, n, g.K);
        // Load counts a launch, so each branch loads only what it launches. Only split-K in one launch
        // takes the kernel's launch bounds (its fixup keeps 32 loads in flight; TiledKernel says why).
        Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, GemmArgs, int, TEpi, TTail> Kernel(bool fixup)
        {
            var bounds = fixup ? host.Bounds(TiledBounds) : KernelSpecialization.Empty;
            return host.Load(KernelHost.HasBounds(bounds) ? "MatMulTiled/bounded" : "MatMulTiled", typeof(TShape), typeof((TEpi, TTail)), acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, GemmArgs, int, TEpi, TTail>(TiledKernel<TShape, TEpi, TTail>, bounds));
        }
        var arrivals = host.SplitKArrivals;
        if (host.Recorder is { } recorder)
        {
            RecordTiled(host, group);
            if (split == 1 || SumsInSameLaunch(host, (gx, gy)))
            {
                var job = OneLaunchJob(host, a, b, c, operand, g, epilogue, (gx, gy), scratch, arrivals);
                recorder.Add(new TiledPhase<TShape, TEpi, TEpi, TTail>(job, default, tail), PhaseName("Tiled", tail));
                return;
            }
            // Split-K in two launches: the raw slices, then (after a barrier) their sum, as SumSlices launches it.
            var slices = Partials(scratch, g, split);
            var depth = g.WithSliceDepth(SliceDepth(g.K, split));
            var rawJob = new TiledJob<FirstOp>(a, b, slices, slices, slices, arrivals, depth.Sliced(depth.KPer), 0, gx, gy, split, default);
            recorder.Add(new TiledPhase<TShape, FirstOp, FirstOp, NoTail>(rawJob, default, default), "Tiled slices");
            SumSlices(host, slices, c, operand, g, split, epilogue, tail);
            return;
        }
        if (split == 1)
        {
            Kernel(fixup: false)(host.Stream, new KernelConfig(new Index3D(gx, gy, 1), group), a, b, c, operand, c, arrivals, g, 0, epilogue, tail);
            return;
        }
        var partial = Partials(scratch, g, split);
        var sliced = g.WithSliceDepth(SliceDepth(g.K, split));
        if (SumsInSameLaunch(host, (gx, gy)))
        {
            Kernel(fixup: true)(host.Stream, new KernelConfig(new Index3D(gx, gy, split), group), a, b, c, operand, partial, arrivals, sliced, 1, epilogue, tail);
            return;
        }
        // Two launches: raw slices, then their sum with scale, accumulate, the epilogue and the tail.
        var raw = host.Load("MatMulTiled", typeof(TShape), typeof((FirstOp, NoTail)), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, GemmArgs, int, FirstOp, NoTail>(TiledKernel<TShape, FirstOp, NoTail>));
        raw(host.Stream, new KernelConfig(new Index3D(gx, gy, split), group), a, b, partial, partial, partial, arrivals, sliced.Sliced(sliced.KPer), 0, default, default);
        SumSlices(host, partial, c, operand, g, split, epilogue, tail);
    }

    // Whether a tiled launch can be a phase of the persistent kernel: its group is the persistent kernel's.
    private static void RecordTiled(KernelHost host, Index3D group)
    {
        if (group.X * group.Y != host.GroupSize)
            throw new PersistentRefusedException(
                $"MatMulTiled's group of {group.X}x{group.Y} threads is not the persistent kernel's {host.GroupSize}: set KernelHost.TiledGroup to a group of {host.GroupSize}");
    }

    // A phase's name in PersistentProgram's description: the kernel, and "+ sum" where it sums the
    // loss, "+ chain" where its last group runs a chain's stages.
    internal static string PhaseName<TTail>(string kernel, TTail tail) where TTail : struct, IProductTail =>
        typeof(TTail) == typeof(NoTail) ? kernel
        : typeof(TTail).IsGenericType && typeof(TTail).GetGenericTypeDefinition() == typeof(ChainTail<>) ? kernel + " + chain"
        : kernel + " + sum";

    // The scratch's first split x M x N elements, where the slices of a split product go.
    private static ArrayView<float> Partials(ArrayView<float> scratch, GemmArgs g, int split)
    {
        long need = (long)split * g.M * g.N;
        if (scratch.Length < need)
            throw new ArgumentException($"MatMul: splitting K={g.K} into {split} slices needs a scratch of {need} elements, got {scratch.Length}. Ask SplitKScratch first.");
        return scratch.SubView(0, need);
    }

    // The second launch of a split product: its slices summed in order, then scale, accumulate, the epilogue and the tail.
    private static void SumSlices<TEpi, TTail>(KernelHost host, ArrayView<float> slices, ArrayView<float> c, ArrayView<float> operand,
        GemmArgs g, int split, TEpi epilogue, TTail tail)
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        if (host.Recorder is { } recorder)
        {
            recorder.Add(new SplitKSumPhase<TEpi, TTail>(slices, c, operand, g, split, epilogue, tail), PhaseName("Sum of slices", tail));
            return;
        }
        var sum = host.Load("SplitKSum", typeof((TEpi, TTail)), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int, TEpi, TTail>(SplitKSumKernel));
        sum(host.Stream, host.GridStride((long)g.M * g.N), slices, c, operand, g, split, epilogue, tail);
    }

    /// <summary>
    /// The largest tiled-SGEMM group (threads along x, along y) an accelerator with these limits runs:
    /// its threads fit a group and its two shared-memory slices fit a group's shared memory.
    /// </summary>
    /// <param name="maxThreadsPerGroup">The accelerator's MaxNumThreadsPerGroup.</param>
    /// <param name="maxSharedBytesPerGroup">The accelerator's MaxSharedMemoryPerGroup.</param>
    public static (int X, int Y) TiledGroupFor(int maxThreadsPerGroup, long maxSharedBytesPerGroup)
    {
        foreach (var shape in TiledGroups)
            if (TiledGroupFits(shape, maxThreadsPerGroup, maxSharedBytesPerGroup)) return shape;
        throw new NotSupportedException(
            $"MatMul: no tiled SGEMM group fits {maxThreadsPerGroup} threads and {maxSharedBytesPerGroup} bytes of shared memory per group; use MatMulPath.Small.");
    }

    /// <summary>Whether a tiled-SGEMM group's threads and shared memory fit within these limits.</summary>
    /// <param name="group">Threads along x and along y.</param>
    /// <param name="maxThreadsPerGroup">The accelerator's MaxNumThreadsPerGroup.</param>
    /// <param name="maxSharedBytesPerGroup">The accelerator's MaxSharedMemoryPerGroup.</param>
    public static bool TiledGroupFits((int X, int Y) group, int maxThreadsPerGroup, long maxSharedBytesPerGroup) =>
        group.X * group.Y <= maxThreadsPerGroup && TiledSharedBytes(group) <= maxSharedBytesPerGroup;

    /// <summary>The group shapes of the tiled SGEMM (TileShapes.cs), largest first.</summary>
    public static IReadOnlyList<(int X, int Y)> TiledGroups { get; } = [(16, 16), (8, 8), (4, 4), (2, 2), (2, 1), (1, 1)];

    /// <summary>Shared memory a tiled-SGEMM group of this shape uses: the A and B slices and the split-K flag.</summary>
    /// <param name="group">Threads along x and along y.</param>
    public static int TiledSharedBytes((int X, int Y) group) => sizeof(float) * Depth * (TiledRow(4 * group.X) + TiledRow(4 * group.Y)) + sizeof(int);
}
