// When a product whose operand goes along k runs on Wide16's cp.async kernel as TN, after that
// operand is copied transposed into the scratch.
// Why: Wide16Async copies an operand that goes along m or n as one 16-byte cp.async a thread and
// half-slice, but one that goes along k (A in NN and NT, B in NT and TT) as four 4-byte copies into
// its transposed place in shared memory. On an H200 (runs 9 and 10, 2026-11-29) 4096^3 ran at 48.4
// TFLOP/s in TN, where both operands go along m and n, against 44.3 (NN) and 42.4 (NT) on the
// whole-tile kernel, and 37.8 and 33.9 on the async kernel. C = A B is also (A^T)^T B: with A^T (and,
// for NT, B^T) in the scratch, every layout runs as TN. A copy of A moves 8 M K bytes against the
// product's 2 M N K flops, so its share falls with N (B's with M): at 4096 ~37 us (at ~3.5 TB/s)
// against ~2.8 ms. An operand is copied only where the other side of C is at least
// TransposedCopyMinSide, for whole tiles only, and only when asked for (KernelHost.TransposedCopies,
// on by default since H200 run 12 timed it, 2026-11-29: NN 44.3 -> 46.8, NT 43.2 -> 45.4 TFLOP/s at
// 4096^3; the big step 8.30 -> 8.10 ms).
// The same fragments in the same order as the whole-tile kernel on the operands in place: the same bits.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>
    /// The fewest columns of C for which A is copied transposed (rows of C for B): the copy's share of
    /// the product's time is ~48/N at 48 TFLOP/s and 3.5 TB/s.
    /// </summary>
    public const int TransposedCopyMinSide = 2048;

    /// <summary>
    /// Which operands MatMul copies transposed into the scratch so that (m, n, k), K in `layers` parts,
    /// runs as TN on Wide16's cp.async kernel: asked for (KernelHost.TransposedCopies), the async kernel
    /// allowed and kept to TN (AsyncCopies on, AsyncCopiesAlongK off), cp.async there, whole tiles;
    /// then A where it goes along k (NN, NT) and C has at least KernelHost.TransposedCopyMinSide columns, B where it
    /// goes along k (NT, TT) and C has at least as many rows. A layout that needs a copy it does not
    /// get copies nothing (it would stay on the whole-tile kernel anyway).
    /// </summary>
    /// <param name="host">The kernel host (a tuned view answers for its shape).</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="layers">K parts of the launch, as SplitK gives them for this shape.</param>
    /// <param name="transA">A stored (K, M).</param>
    /// <param name="transB">B stored (N, K).</param>
    internal static (bool A, bool B) TransposedCopies(KernelHost host, int m, int n, int k, int layers, bool transA, bool transB)
    {
        // Only where the async kernel would take the product as TN, and would not take it as it is.
        if (!host.TransposedCopies || (transA && !transB) || Choose(host, m, n) != MatMulPath.Wide16
            || host.AsyncCopiesAlongK || !AsyncCopies(host, m, n, k, layers, transA: true, transB: false))
            return (false, false);
        bool a = !transA, b = transB;
        int side = host.TransposedCopyMinSide;
        if ((a && n < side) || (b && m < side)) return (false, false);
        return (a, b);
    }

    // The scratch's shares for A^T and B^T, after the split-K partials where there are any (empty
    // views where an operand is not copied).
    private static (ArrayView<float> At, ArrayView<float> Bt) TransposedScratch(ArrayView<float> scratch, GemmArgs g, int split, (bool A, bool B) copies)
    {
        long at = split == 1 ? 0 : (long)split * g.M * g.N;
        long aLength = copies.A ? (long)g.M * g.K : 0, bLength = copies.B ? (long)g.N * g.K : 0;
        long need = at + aLength + bLength;
        if (scratch.Length < need)
            throw new ArgumentException(
                $"MatMul: copying {(copies.A && copies.B ? "A and B" : copies.A ? "A" : "B")} of a {g.M}x{g.N}x{g.K} product transposed for Wide16's cp.async kernel " +
                $"needs a scratch of {need} elements, got {scratch.Length}. Ask SplitKScratch with the product's layout first.");
        return (copies.A ? scratch.SubView(at, aLength) : default, copies.B ? scratch.SubView(at + aLength, bLength) : default);
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that turns the transposed copies of operands along k off (0) or on (1, the default).</summary>
    public const string TransposedCopiesVariable = "AUTOGRAD_TRANSPOSED_COPIES";

    /// <summary>
    /// Whether a large product on Wide16 whose operand goes along k (NN, NT, TT; whole tiles, the other
    /// side of C at least MatMulKernels.TransposedCopyMinSide) first copies that operand transposed into
    /// its scratch and runs as TN on the cp.async kernel, whose copies are then all 16 bytes wide
    /// (default: on, unless AUTOGRAD_TRANSPOSED_COPIES=0). Both give the same bits. On an H200 (run 12,
    /// 2026-11-29) 4096^3 NN ran at 46.8 TFLOP/s against the whole-tile kernel's 44.3, NT at 45.4
    /// against 43.2, and the big step (4096, 4096, 4096, 1024) took 8.10 ms against 8.30.
    /// </summary>
    public bool TransposedCopies { get; set; } = SwitchFromEnvironment(TransposedCopiesVariable, unset: true, "operands read in place", "operands along k copied transposed for the cp.async kernel, the default", "");

    // Products launched after their operands were copied transposed, and how many of them ran on the
    // cp.async kernel (all should: the copies exist for it; the tests read both).
    private long _copiedProducts, _copiedProductsOnAsync;

    internal (long Copied, long OnAsync) CopiedProducts => (Interlocked.Read(ref _copiedProducts), Interlocked.Read(ref _copiedProductsOnAsync));

    internal void CountCopiedProduct(bool onAsync)
    {
        Interlocked.Increment(ref _copiedProducts);
        if (onAsync) Interlocked.Increment(ref _copiedProductsOnAsync);
    }

    // The side of C from which TransposedCopies copies an operand (MatMulKernels.TransposedCopyMinSide;
    // the tests lower it to keep their products small on a CPU simulator).
    internal int TransposedCopyMinSide { get; set; } = MatMulKernels.TransposedCopyMinSide;
}
