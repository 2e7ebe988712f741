// When an NN product runs on Wide16's cp.async kernel after A is copied transposed into the scratch.
// Why: Wide16Async copies an operand that goes along m or n as one 16-byte cp.async a thread and
// half-slice, but one that goes along k (A in NN) as four 4-byte copies into its transposed place in
// shared memory. On an H200 (runs 9 and 10, 2026-11-29) 4096^3 ran at 48.4 TFLOP/s in TN, where both
// operands go along m and n, against 44.3 for NN on the whole-tile kernel and 37.8 for NN on the async
// kernel. C = A B is also (A^T)^T B: with A^T in the scratch, NN runs as TN. The copy moves 8 M K bytes
// against 2 M N K flops, so its share falls with N: at N = 4096 ~37 us (at ~3.5 TB/s) against ~2.8 ms.
// It is taken from N = TransposedAMinColumns on, for whole tiles only, and only when asked for
// (KernelHost.TransposedA, off until a GPU has timed it: the bench's "A transposed" rows).
// The same fragments in the same order as the whole-tile kernel on A itself: the same bits.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>The fewest columns of C for which an NN product copies A transposed (the copy's share of the time ~48/N at 48 TFLOP/s and 3.5 TB/s).</summary>
    public const int TransposedAMinColumns = 2048;

    /// <summary>
    /// Whether MatMul copies A transposed into the scratch and runs (m, n, k) NN, K in `layers` parts, on
    /// Wide16's cp.async kernel as TN: asked for (KernelHost.TransposedA), the async kernel allowed and
    /// kept to TN (AsyncCopies on, AsyncCopiesAlongK off), cp.async there, n at least
    /// TransposedAMinColumns, and whole tiles.
    /// </summary>
    /// <param name="host">The kernel host (a tuned view answers for its shape).</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="layers">K parts of the launch, as SplitK gives them for this shape.</param>
    /// <param name="transA">A stored (K, M).</param>
    /// <param name="transB">B stored (N, K).</param>
    internal static bool TransposedA(KernelHost host, int m, int n, int k, int layers, bool transA, bool transB) =>
        host.TransposedA && !transA && !transB && n >= TransposedAMinColumns && Choose(host, m, n) == MatMulPath.Wide16
        && host.AsyncCopies && !host.AsyncCopiesAlongK && HasCpAsync(host) && WholeTiles(host, m, n, k, layers);

    // The scratch's share for A^T (after the split-K partials, where there are any).
    private static ArrayView<float> TransposedAScratch(ArrayView<float> scratch, GemmArgs g, int split)
    {
        long at = split == 1 ? 0 : (long)split * g.M * g.N, need = at + (long)g.M * g.K;
        if (scratch.Length < need)
            throw new ArgumentException(
                $"MatMul: copying A ({g.M}x{g.K}) transposed for Wide16's cp.async kernel needs a scratch of {need} elements, got {scratch.Length}. " +
                "Ask SplitKScratch with the product's layout first.");
        return scratch.SubView(at, (long)g.M * g.K);
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that turns the transposed copy of A for NN products on (1) or off (0, the default).</summary>
    public const string TransposedAVariable = "AUTOGRAD_TRANSPOSED_A";

    /// <summary>
    /// Whether a large NN product on Wide16 (C at least MatMulKernels.TransposedAMinColumns wide, whole
    /// tiles) first copies A transposed into its scratch and runs as TN on the cp.async kernel, whose
    /// copies are then all 16 bytes wide (default: off, unless AUTOGRAD_TRANSPOSED_A=1). Both give the
    /// same bits; it is off until a GPU has timed it against the whole-tile kernel on A itself.
    /// </summary>
    public bool TransposedA { get; set; } = SwitchFromEnvironment(TransposedAVariable, unset: false, "A read in place, the default", "A copied transposed for the cp.async kernel", "");
}
