// SGEMM: C = Epi(alpha * op(A) * op(B) + beta * C, E), with op = identity or transpose, all row-major.
//
// The epilogue Epi is an IBinaryOp struct applied to each product element and the matching element
// of an optional operand E (read through strides, so a bias row broadcasts with stride 0). It is how
// the compiled graph fuses relu, bias, the relu mask of the backward and the SGD update into the
// product instead of a kernel of their own. Without one, Epi is FirstOp (E is never used).
//
// The backward of C = A B needs dA = dC B^T and dB = A^T dC; reading the operands through strides
// gives those products without materialising a transpose. beta = 1 accumulates into an existing
// gradient; beta = 0 never reads C, so a poisoned (NaN) output is fully overwritten.
//
// Here: the tiled kernel. Elsewhere: the stores every path shares in MatMulKernels.Stores.cs; Small (a 4x4 register block per
// thread, no shared memory) in MatMulKernels.Small.cs; Warp (K split across a team of warps) in
// MatMulKernels.Warp.cs; Large, Wide and Wide16 (128x128 tiles), generated into MatMulKernels.Large.cs,
// MatMulKernels.Wide.cs and MatMulKernels.Wide16.cs; the CPU accelerator's vectorised host code in
// MatMulKernels.Host.cs and MatMulKernels.HostGemm.cs; the launcher that picks among them in
// MatMulKernels.Launch.cs; split-K's sums in MatMulKernels.SplitK.cs; two products in one launch in
// MatMulKernels.Pair.cs; a product with its loss summed in its launch in MatMulKernels.Sum.cs (the
// tail itself in ProductTail.cs).
// - Tiled: a group of ThreadsX x ThreadsY threads (a TileShapes.cs struct: 16x16 on a GPU, 2x1 on
//   this library's CPU accelerator; the host takes the largest its limits allow) computes a
//   (4 ThreadsY) x (4 ThreadsX) tile of C through 16-deep shared-memory slices of A and B, 4x4 per
//   thread with rows/cols strided by the group's sides so shared reads are conflict-free. A thread
//   fetches its share of the next slice into registers while the current one is multiplied (a
//   batch of 4 loads of each operand, all of a 16x16 group's share), so a slice never waits on
//   memory element by element.
//   Split-K: when C has too few tiles to fill the device (the seed's 64x100 output is 2 tiles), the
//   K range is cut into slices, one grid layer each, writing partial products to a scratch buffer.
//   The last layer to finish a tile (an atomic count per tile) sums the tile's slices in layer
//   order: one launch, deterministic (the sum's order is fixed; only who does it varies). The
//   two-launch form (a second kernel sums) remains behind KernelHost.SplitKInOneLaunch = false.
//   Both sums are in MatMulKernels.SplitK.cs.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Sizes, strides and epilogue scalars of one SGEMM.</summary>
public readonly struct GemmArgs
{
    /// <summary>C is (M, N); the shared dimension is K.</summary>
    public readonly int M, N, K;

    /// <summary>A(i, k) = a[i * Am + k * Ak]; B(k, j) = b[k * Bk + j * Bn].</summary>
    public readonly int Am, Ak, Bk, Bn;

    /// <summary>C = Alpha * A B + Beta * C (Beta = 0 never reads C).</summary>
    public readonly float Alpha, Beta;

    /// <summary>Depth of one K slice (K when the product is not split).</summary>
    public readonly int KPer;

    /// <summary>The epilogue operand: E(i, j) = e[i * Em + j * En] (0, 0 when there is none).</summary>
    public readonly int Em, En;

    /// <summary>Creates the arguments of C(M,N) = alpha op(A) op(B) + beta C.</summary>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="transA">A is stored (K, M) and used transposed.</param>
    /// <param name="transB">B is stored (N, K) and used transposed.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="beta">Scale of the existing C.</param>
    public GemmArgs(int m, int n, int k, bool transA, bool transB, float alpha, float beta)
    {
        M = m; N = n; K = k;
        if (transA) { Am = 1; Ak = m; } else { Am = k; Ak = 1; }
        if (transB) { Bk = 1; Bn = k; } else { Bk = n; Bn = 1; }
        Alpha = alpha; Beta = beta;
        KPer = k;
    }

    private GemmArgs(GemmArgs g, int kPer, int em, int en, bool raw)
    {
        this = g;
        if (raw) { Alpha = 1f; Beta = 0f; }
        KPer = kPer;
        Em = em; En = en;
    }

    /// <summary>The arguments of one split-K pass: slices of depth kPer, raw partial products, no operand.</summary>
    /// <param name="kPer">Depth of each slice.</param>
    public GemmArgs Sliced(int kPer) => new(this, kPer, 0, 0, raw: true);

    /// <summary>The same product (scale, accumulate, operand) cut into slices of depth kPer.</summary>
    /// <param name="kPer">Depth of each slice.</param>
    public GemmArgs WithSliceDepth(int kPer) => new(this, kPer, Em, En, raw: false);

    /// <summary>The same product with C's rows ending at `m` (strides kept): a row chain's block ends there.</summary>
    /// <param name="m">The row after the block's last.</param>
    public GemmArgs WithRows(int m) => new(this, m);

    private GemmArgs(GemmArgs g, int m)
    {
        this = g;
        M = m;
    }

    /// <summary>The same product reading A from a copy stored (K, M) row-major: A(i, k) = a[k * M + i].</summary>
    public GemmArgs WithAStoredKM() => new(this, aKM: true, bKN: false);

    /// <summary>The same product reading B from a copy stored (K, N) row-major: B(k, j) = b[k * N + j].</summary>
    public GemmArgs WithBStoredKN() => new(this, aKM: false, bKN: true);

    private GemmArgs(GemmArgs g, bool aKM, bool bKN)
    {
        this = g;
        if (aKM) { Am = 1; Ak = M; }
        if (bKN) { Bk = N; Bn = 1; }
    }

    /// <summary>The same product with the epilogue operand read at E(i, j) = e[i * em + j * en].</summary>
    /// <param name="em">Operand stride between rows of C (0 broadcasts a row).</param>
    /// <param name="en">Operand stride between columns of C (0 broadcasts a column).</param>
    public GemmArgs WithOperand(int em, int en) => new(this, KPer, em, en, raw: false);
}

/// <summary>SGEMM kernels and the launcher that picks one.</summary>
public static partial class MatMulKernels
{
    /// <summary>Threads per group of the 128x128-tile kernels, Large, Wide and Wide16 (16 x 16).</summary>
    public const int LargeThreads = 256;

    /// <summary>Whether a path is one of the 128x128-tile kernels (Large, Wide, Wide16): groups of
    /// LargeThreads, no tail, K split only where asked and then summed in a second launch.</summary>
    /// <param name="path">The kernel.</param>
    internal static bool Has128Tiles(MatMulPath path) => path is MatMulPath.Large or MatMulPath.Wide or MatMulPath.Wide16;

    /// <summary>
    /// The most threads a group running a SumTail or a chain's stages may have (the sum tree's shared
    /// array): 512, for the row chains' groups (MaxRowThreads); the product kernels' groups are 256.
    /// </summary>
    public const int MaxTailThreads = 512;

    // Depth: K per shared-memory slice of the tiled kernel (its tile comes from TShape).
    // LargeSide: threads per side of the Large, Wide and Wide16 groups.
    private const int Depth = 16, LargeSide = 16;

    /// <summary>Floats of one operand's shared slice in the tiled kernel for a group side of `threads` (its phase in the persistent kernel allocates the same).</summary>
    /// <param name="threads">Threads along the operand's side of the tile (4 rows or columns each).</param>
    internal static int TiledSliceFloats(int threads) => Depth * TiledRow(4 * threads);

    /// <summary>
    /// Shared memory of the tiled SGEMM as a phase of the persistent kernel: its two slices, and the
    /// split-K flag of each of the two products' inlined code (ILGPU gives each its own).
    /// </summary>
    /// <param name="group">Threads along x and along y.</param>
    internal static int TiledPhaseSharedBytes((int X, int Y) group) => TiledSharedBytes(group) + sizeof(int);

    /// <summary>Shared memory of the warp SGEMM's team sums (bytes).</summary>
    internal const int WarpSharedBytes = 16 * MaxTeamWarps * sizeof(float);

    // ---------------------------------------------------------------- kernels

    private static int Min(int x, int y) => x < y ? x : y;

    /// <summary>
    /// Shared-memory tiled SGEMM: a (4 ThreadsY) x (4 ThreadsX) tile of C per group of TShape's
    /// threads, one K slice per grid layer. With fixup = 0 each layer stores its slice at
    /// layer * M * N of c (through g's alpha, beta and the epilogue: the whole product when there is
    /// one layer). With fixup = 1 each layer stores its raw slice in partial, and the last layer to
    /// finish a tile sums the tile's slices in layer order and stores C through the epilogue: split-K
    /// in one launch, with the bits of the two-kernel form (the order of the sum does not depend on
    /// which layer finishes last).
    /// </summary>
    // The bounds serve the fixup, which walks a tile's slices with 32 loads in flight: without them
    // ptxas splits those loads to fit 64 registers (LaunchBounds.cs). So the launcher loads this
    // build only for split-K in one launch, where the tiles are few and residency does not limit;
    // a whole-K launch of many tiles keeps 4 groups a multiprocessor, unbounded.
    [LaunchBounds(256, 2)]
    internal static void TiledKernel<TShape, TEpi, TTail>(
        ArrayView<float> a,        // (M, K) or (K, M) per g's strides
        ArrayView<float> b,        // (K, N) or (N, K) per g's strides
        ArrayView<float> c,        // (M, N) row-major; (split, M, N) slices when fixup = 0 and K is split
        ArrayView<float> e,        // epilogue operand, E(i, j) = e[i * Em + j * En]
        ArrayView<float> partial,  // (split, M, N) raw slices, when fixup = 1
        ArrayView<int> arrivals,   // (tiles) layers done per tile, 0 between launches, when fixup = 1
        GemmArgs g,
        int fixup,
        TEpi epi,
        TTail tail)                // run once C is stored (NoTail, or a sum of C in this launch)
        where TShape : struct, ITileShape
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        var tA = SharedMemory.Allocate<float>(Depth * TiledRow(4 * default(TShape).ThreadsY)); // [k][m] slice of A
        var tB = SharedMemory.Allocate<float>(Depth * TiledRow(4 * default(TShape).ThreadsX)); // [k][n] slice of B
        TiledTile<TShape, TEpi>(tA, tB, a, b, c, e, partial, arrivals, g, fixup, epi, Grid.IdxX, Grid.IdxY, Grid.IdxZ, Grid.DimX, Grid.DimZ,
            Group.IdxX, Group.IdxY, prefetch: true);
        tail.Finish(c, g.M * g.N);
    }

    // One group's work in the tiled SGEMM: tile (tileX, tileY) of C over K slice `slice` of `split`,
    // the product's grid having tilesX tiles to a row (TiledKernel, each half of TiledPairKernel, and
    // a phase of the persistent step kernel, whose groups are one line of threads: hence tx and ty).
    // prefetch, a constant at each call: fetch each slice's loads while the one before is multiplied.
    // The persistent kernel does without, and loads an operand's 4 at a time: it holds a whole program
    // in the 128 registers that keep two groups a multiprocessor resident, and 8 loads in flight
    // pushed its tiled phases into spills (SassTests; how many depended on what ILGPU had compiled
    // before in the process); its tiled phases are split-K layers of a slice or two.
    private static void TiledTile<TShape, TEpi>(
        ArrayView<float> tA,       // (Depth, 4 ThreadsY) shared slice of A
        ArrayView<float> tB,       // (Depth, 4 ThreadsX) shared slice of B
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e,
        ArrayView<float> partial, ArrayView<int> arrivals, GemmArgs g, int fixup, TEpi epi,
        int tileX, int tileY, int slice, int tilesX, int split,
        int tx, int ty,            // the thread's place in the (ThreadsX, ThreadsY) group
        bool prefetch)
        where TShape : struct, ITileShape
        where TEpi : struct, IBinaryOp
    {
        // Constants once the kernel is specialised on TShape.
        int sx = default(TShape).ThreadsX, sy = default(TShape).ThreadsY;
        int tileM = 4 * sy, tileN = 4 * sx;
        int rowA = TiledRow(tileM), rowB = TiledRow(tileN);
        int tid = ty * sx + tx;
        int rowBase = tileY * tileM, colBase = tileX * tileN;
        int kBegin = slice * g.KPer;
        int kEnd = Min(g.K, kBegin + g.KPer);
        int cBase = slice * g.M * g.N; // the slice's partial product when split

        var s = default(TiledBlock);

        // The first two batches of each slice's loads are fetched a slice ahead, into registers,
        // while the slice before it is multiplied: that is all of a 16x16 group's share (one batch)
        // and of an 8x8 group's (two), so neither waits on memory between its slices. Smaller groups
        // (the CPU accelerator's) fetch the rest of a slice a batch at a time.
        var geo = new SliceGeometry(g, tid, sx * sy, rowBase, colBase, tileM, tileN, rowA, rowB, Depth);
        bool two = geo.Loads > SliceBatch; // a constant once specialised on TShape
        var next = prefetch ? FetchSlice(a, b, g, geo, tid, kBegin, kEnd, 0, BothOperands) : default;
        var next2 = prefetch && two ? FetchSlice(a, b, g, geo, tid, kBegin, kEnd, SliceBatch, BothOperands) : default;
        // The thread's views of the slices, from its first row of A (column of B) to its last.
        var fa = tA.SubView(ty, (Depth - 1) * rowA + 3 * sy + 1);
        var fb = tB.SubView(tx, (Depth - 1) * rowB + 3 * sx + 1);
        for (int k0 = kBegin; k0 < kEnd; k0 += Depth)
        {
            if (prefetch)
            {
                StoreSlice(tA, tB, g, geo, tid, next, 0, BothOperands);
                if (two) StoreSlice(tA, tB, g, geo, tid, next2, SliceBatch, BothOperands);
                for (int l0 = 2 * SliceBatch; l0 < geo.Loads; l0 += SliceBatch)
                    StoreSlice(tA, tB, g, geo, tid, FetchSlice(a, b, g, geo, tid, k0, kEnd, l0, BothOperands), l0, BothOperands);
            }
            else
            {
                // An operand's batch at a time: 4 loads in flight, not 8, which the persistent
                // kernel's registers hold without spilling wherever ILGPU compiles it (SassTests).
                for (int l0 = 0; l0 < geo.Loads; l0 += SliceBatch)
                {
                    StoreSlice(tA, tB, g, geo, tid, FetchSlice(a, b, g, geo, tid, k0, kEnd, l0, OperandA), l0, OperandA);
                    StoreSlice(tA, tB, g, geo, tid, FetchSlice(a, b, g, geo, tid, k0, kEnd, l0, OperandB), l0, OperandB);
                }
            }
            Group.Barrier();
            // Unconditional: past the last slice every load is masked off (k >= kEnd), and behind an
            // `if` ptxas sank the loads to the end of the multiply, where their wait was not hidden.
            if (prefetch) next = FetchSlice(a, b, g, geo, tid, k0 + Depth, kEnd, 0, BothOperands);
            if (prefetch && two) next2 = FetchSlice(a, b, g, geo, tid, k0 + Depth, kEnd, SliceBatch, BothOperands);
            // The 16 k of the slice unrolled, each read a constant offset from the thread's own view:
            // no address arithmetic between the multiply-adds (the loop form took ~2 integer
            // instructions per multiply-add in the SASS, and a 16x16 group alone on its
            // multiprocessor, as the seed's few tiles are, is bound by instruction issue).
            s = MultiplyK(s, fa, fb, 0 * rowA, 0 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 1 * rowA, 1 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 2 * rowA, 2 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 3 * rowA, 3 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 4 * rowA, 4 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 5 * rowA, 5 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 6 * rowA, 6 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 7 * rowA, 7 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 8 * rowA, 8 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 9 * rowA, 9 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 10 * rowA, 10 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 11 * rowA, 11 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 12 * rowA, 12 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 13 * rowA, 13 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 14 * rowA, 14 * rowB, sx, sy);
            s = MultiplyK(s, fa, fb, 15 * rowA, 15 * rowB, sx, sy);
            Group.Barrier();
        }
        int r = rowBase + ty, col = colBase + tx;
        if (fixup == 0)
        {
            StoreBlock(c, e, g, epi, cBase, r, sy, col, sx, s.S00, s.S01, s.S02, s.S03, s.S10, s.S11, s.S12, s.S13,
                s.S20, s.S21, s.S22, s.S23, s.S30, s.S31, s.S32, s.S33);
            return;
        }
        var raw = g.Sliced(g.KPer);
        FirstOp keep = default;
        StoreStrided(partial, partial, raw, keep, cBase, r, col, sx, s.S00, s.S01, s.S02, s.S03);
        StoreStrided(partial, partial, raw, keep, cBase, r + sy, col, sx, s.S10, s.S11, s.S12, s.S13);
        StoreStrided(partial, partial, raw, keep, cBase, r + 2 * sy, col, sx, s.S20, s.S21, s.S22, s.S23);
        StoreStrided(partial, partial, raw, keep, cBase, r + 3 * sy, col, sx, s.S30, s.S31, s.S32, s.S33);
        SplitKFixup(c, e, partial, arrivals, g, epi, tid, r, col, sx, sy, tileY * tilesX + tileX, split);
    }

    // A tiled thread's 4x4 block of C: rows ty + p * ThreadsY, columns tx + q * ThreadsX.
    private struct TiledBlock
    {
        public float S00, S01, S02, S03, S10, S11, S12, S13, S20, S21, S22, S23, S30, S31, S32, S33;
    }

    // One k of a tiled slice: the thread's 4 rows of A at pa, pa + sy, ... and 4 columns of B at pb,
    // pb + sx, ..., 16 multiply-adds into s (each element's chain stays in k order).
    private static TiledBlock MultiplyK(TiledBlock s, ArrayView<float> tA, ArrayView<float> tB, int pa, int pb, int sx, int sy)
    {
        float a0 = tA[pa], a1 = tA[pa + sy], a2 = tA[pa + 2 * sy], a3 = tA[pa + 3 * sy];
        float b0 = tB[pb], b1 = tB[pb + sx], b2 = tB[pb + 2 * sx], b3 = tB[pb + 3 * sx];
        s.S00 += a0 * b0; s.S01 += a0 * b1; s.S02 += a0 * b2; s.S03 += a0 * b3;
        s.S10 += a1 * b0; s.S11 += a1 * b1; s.S12 += a1 * b2; s.S13 += a1 * b3;
        s.S20 += a2 * b0; s.S21 += a2 * b1; s.S22 += a2 * b2; s.S23 += a2 * b3;
        s.S30 += a3 * b0; s.S31 += a3 * b1; s.S32 += a3 * b2; s.S33 += a3 * b3;
        return s;
    }

    // Floats from one k's row of a tiled slice to the next: the tile and one more. A row-major A (or a
    // transposed B) is stored down k by consecutive threads (they walk its contiguous dimension);
    // with rows a multiple of 32 floats apart all 16 k of a warp's stores would fall in one bank,
    // with one more they spread over the banks (scripts/smem_banks.py counts both).
    private static int TiledRow(int tile) => tile + 1;

    // Loads a thread has in flight for a slice: SliceBatch of each operand. That is all of a slice
    // for a 16x16 group of the tiled kernel and for Large (4 a thread of each operand). Why batches:
    // a loop of load-then-store waits on memory once per element (ptxas cannot move a load above a
    // shared store, since the load's generic address could be that shared word): run 7's tuning
    // table on the H200 gave the tiled kernel ~3.2 µs a 16-deep slice (201 µs for the 63 slices of
    // h = x w1), as 8 waits in a row would. A batch fetched into registers and then stored waits once.
    private const int SliceBatch = 4;

    // Where a group's shared slices come from: the group's threads, the slice's depth, and each
    // operand's side of the tile with the thread's share of it (SliceSide holds the tile's first row
    // or column, its side, the shared row's stride and how many elements the thread moves).
    private readonly struct SliceGeometry
    {
        public readonly int Threads, Depth;

        // Whether the group's threads are a multiple of the depth and of both tile sides (every GPU
        // shape, not the CPU accelerator's groups of 2): then a thread's share is a walk (SliceSide).
        public readonly bool Regular;

        // A's slices and B's, with the thread's walk through each.
        public readonly SliceSide A, B;

        // Elements a thread moves for the larger of the two operands' shares: the batches' bound.
        public int Loads => A.Count > B.Count ? A.Count : B.Count;

        public SliceGeometry(GemmArgs g, int tid, int threads, int rowBase, int colBase, int tileM, int tileN, int rowA, int rowB, int depth)
        {
            Threads = threads; Depth = depth;
            Regular = Mod(threads, depth) == 0 && Mod(threads, tileM) == 0 && Mod(threads, tileN) == 0;
            // Constant trip counts once the kernel is specialised: threads divide both slices for every shape.
            A = new SliceSide(rowBase, g.M, tileM, depth * tileM / threads, rowA, g.Am, g.Ak, tid, threads, depth);
            B = new SliceSide(colBase, g.N, tileN, depth * tileN / threads, rowB, g.Bn, g.Bk, tid, threads, depth);
        }
    }

    // SliceBatch elements of each operand's slice, as one thread fetched them (0 past its share).
    private struct SliceLoads
    {
        public Four A, B;
    }

    // SliceBatch elements of one operand's slice.
    private struct Four
    {
        public float V0, V1, V2, V3;
    }

    // Element l of a thread's share of A's slice: consecutive threads walk A's contiguous dimension,
    // k for a row-major A (kk = idx % depth), m for a transposed one. Its place in the shared slice
    // is kk * RowA + mm. The remainders are masks: ILGPU emits `x % 64` as rem.s32 even by a
    // constant, and ptxas (which leaves strength reduction to NVVM, before it) assembles that as a
    // division (I2F, MUFU.RCP, IMAD.HI, IABS and fixes): the tiled kernel ran 485 instructions before
    // its first barrier, half of them remainders (251 now; SassTests). Depth and the tiles' sides are
    // powers of two and idx is never negative, so the mask is the remainder (a constant test, folded
    // once specialised, keeps any other side right).
    private static int SliceK(int idx, bool alongK, int depth, int tile) => alongK ? Mod(idx, depth) : idx / tile;

    private static int SliceM(int idx, bool alongK, int depth, int tile) => alongK ? idx / depth : Mod(idx, tile);

    // x % d for x >= 0: a mask where d is a power of two.
    private static int Mod(int x, int d) => (d & (d - 1)) == 0 ? x & (d - 1) : x % d;

    // One operand's slices as the fetches see them: A's run over the tile's rows (C's rows from
    // Base, Extent of them), B's over its columns; Row is the shared slice's row, SideStride and
    // KStride the operand's strides along the side and along k. Element l of a thread's share is
    // idx = tid + l threads of the slice, consecutive threads along the operand's contiguous way.
    // Where the group is Regular, idx's remainder by the depth or the side is tid's for every l, so
    // the share is a walk: element l at k = K0 + l KStep of the slice, Side0 + l SideStep along C's
    // side, Place0 + l PlaceStep in the shared slice and Index0 + l IndexStep in the operand (past
    // the slice's first k). Its layout is chosen once a thread here: per element, the places of both
    // layouts and a select of each made ~80 MOVs of the tiled kernel's setup in the SASS, and its
    // addresses two products by the strides.
    private readonly struct SliceSide
    {
        public readonly int Base, Extent, Tile, Count, Row, SideStride, KStride;
        public readonly int K0, KStep, Side0, SideStep, Place0, PlaceStep, Index0, IndexStep;

        public SliceSide(int first, int extent, int tile, int count, int row, int sideStride, int kStride, int tid, int threads, int depth)
        {
            Base = first; Extent = extent; Tile = tile; Count = count; Row = row; SideStride = sideStride; KStride = kStride;
            bool alongK = sideStride != 1;
            int k = SliceK(tid, alongK, depth, tile), m = SliceM(tid, alongK, depth, tile);
            K0 = k;
            KStep = alongK ? 0 : threads / tile;
            Side0 = first + m;
            SideStep = alongK ? threads / depth : 0;
            Place0 = k * row + m;
            PlaceStep = KStep * row + SideStep;
            Index0 = Side0 * sideStride + k * kStride;
            IndexStep = SideStep * sideStride + KStep * kStride;
        }

        // The way its elements run in memory: along k unless its stride along the side is 1 (GemmArgs
        // then gives k a stride of 1: a row-major A, a transposed B).
        public bool AlongK => SideStride != 1;
    }

    // Element l of the thread's share, 0 outside the matrix or past kEnd.
    private static float FetchElement(ArrayView<float> x, SliceSide side, SliceGeometry s, int tid, int k0, int kEnd, int l)
    {
        if (l >= side.Count) return 0f;
        if (s.Regular)
        {
            int gm = side.Side0 + l * side.SideStep, gk = k0 + side.K0 + l * side.KStep;
            return gm < side.Extent && gk < kEnd ? x[side.Index0 + k0 * side.KStride + l * side.IndexStep] : 0f;
        }
        int idx = tid + l * s.Threads;
        int gm2 = side.Base + SliceM(idx, side.AlongK, s.Depth, side.Tile), gk2 = k0 + SliceK(idx, side.AlongK, s.Depth, side.Tile);
        return gm2 < side.Extent && gk2 < kEnd ? x[gm2 * side.SideStride + gk2 * side.KStride] : 0f;
    }

    private static Four FetchBatch(ArrayView<float> x, SliceSide side, SliceGeometry s, int tid, int k0, int kEnd, int l0)
    {
        Four f;
        f.V0 = FetchElement(x, side, s, tid, k0, kEnd, l0);
        f.V1 = FetchElement(x, side, s, tid, k0, kEnd, l0 + 1);
        f.V2 = FetchElement(x, side, s, tid, k0, kEnd, l0 + 2);
        f.V3 = FetchElement(x, side, s, tid, k0, kEnd, l0 + 3);
        return f;
    }

    private static void StoreElement(ArrayView<float> t, SliceSide side, SliceGeometry s, int tid, int l, float v)
    {
        if (l >= side.Count) return;
        if (s.Regular)
        {
            t[side.Place0 + l * side.PlaceStep] = v;
            return;
        }
        int idx = tid + l * s.Threads;
        t[SliceK(idx, side.AlongK, s.Depth, side.Tile) * side.Row + SliceM(idx, side.AlongK, s.Depth, side.Tile)] = v;
    }

    private static void StoreBatch(ArrayView<float> t, SliceSide side, SliceGeometry s, int tid, Four f, int l0)
    {
        StoreElement(t, side, s, tid, l0, f.V0);
        StoreElement(t, side, s, tid, l0 + 1, f.V1);
        StoreElement(t, side, s, tid, l0 + 2, f.V2);
        StoreElement(t, side, s, tid, l0 + 3, f.V3);
    }

    // Which operands a batch moves (constants, so the other's code folds away).
    private const int OperandA = 1, OperandB = 2, BothOperands = 3;

    // Batch l0 / SliceBatch of a thread's share of the slices starting at k0 (zero outside the
    // matrix or past kEnd) for the operands named: every load issues before any of them is used.
    private static SliceLoads FetchSlice(ArrayView<float> a, ArrayView<float> b, GemmArgs g, SliceGeometry s, int tid, int k0, int kEnd, int l0, int operands)
    {
        var r = default(SliceLoads);
        if ((operands & OperandA) != 0) r.A = FetchBatch(a, s.A, s, tid, k0, kEnd, l0);
        if ((operands & OperandB) != 0) r.B = FetchBatch(b, s.B, s, tid, k0, kEnd, l0);
        return r;
    }

    // Stores a fetched batch of the operands named into the shared slices tA[k][m] and tB[k][n].
    private static void StoreSlice(ArrayView<float> tA, ArrayView<float> tB, GemmArgs g, SliceGeometry s, int tid, SliceLoads r, int l0, int operands)
    {
        if ((operands & OperandA) != 0) StoreBatch(tA, s.A, s, tid, r.A, l0);
        if ((operands & OperandB) != 0) StoreBatch(tB, s.B, s, tid, r.B, l0);
    }

    /// <summary>
    /// Loads the depth-deep slices of op(A) (tileM rows from rowBase) and op(B) (tileN columns from
    /// colBase) starting at k0 into shared memory as tA[k][m] and tB[k][n], rows rowA and rowB floats
    /// apart, zero outside the matrix or past kEnd, a batch of loads at a time (Large's slices).
    /// </summary>
    private static void LoadSlices(
        ArrayView<float> tA,  // (depth, rowA) shared, tileM of each row used
        ArrayView<float> tB,  // (depth, rowB) shared, tileN of each row used
        ArrayView<float> a, ArrayView<float> b, GemmArgs g,
        int tid, int threads, int rowBase, int colBase, int k0, int kEnd, int tileM, int tileN, int rowA, int rowB, int depth)
    {
        var s = new SliceGeometry(g, tid, threads, rowBase, colBase, tileM, tileN, rowA, rowB, depth);
        for (int l0 = 0; l0 < s.Loads; l0 += SliceBatch)
            StoreSlice(tA, tB, g, s, tid, FetchSlice(a, b, g, s, tid, k0, kEnd, l0, BothOperands), l0, BothOperands);
    }
}
