// When Wide16 runs as Wide16Whole (MatMulKernels.Wide16Whole.cs): products made of whole 128x128
// tiles and whole 16-deep slices, both operands 16-byte aligned, no K part empty. The rule is the
// kernel's precondition: Wide16Whole tests no edge, so it must never see one.

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>
    /// Whether a 128x128-tile launch over `layers` K parts of g can take Wide16Whole: allowed
    /// (KernelHost.WholeTiles), M and N multiples of 128, K and each part's depth multiples of 16
    /// with no part empty, and both operands read as Float4 (vec 3, WideVectorizable).
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="g">The product's arguments (KPer the depth of a K part).</param>
    /// <param name="layers">K parts in the launch (grid z).</param>
    /// <param name="vec">WideVectorizable's answer for the operands.</param>
    internal static bool WholeTiles(KernelHost host, GemmArgs g, int layers, int vec) =>
        host.WholeTiles && vec == 3 && g.M > 0 && g.N > 0 && g.M % WideTile == 0 && g.N % WideTile == 0
        && g.K > 0 && g.K % Wide16Depth == 0 && g.KPer % Wide16Depth == 0 && (long)(layers - 1) * g.KPer < g.K;

    /// <summary>
    /// Whether Wide16 runs the product (m, n, k), K split in `layers` (SplitK's answer), on Wide16Whole
    /// with operands that are 16-byte aligned (as a tensor's own buffer is): WholeTiles for the launch
    /// MatMul makes, split-K included.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="layers">K parts of the launch, as SplitK gives them for this shape.</param>
    internal static bool WholeTiles(KernelHost host, int m, int n, int k, int layers)
    {
        var g = new GemmArgs(m, n, k, false, false, 1f, 0f);
        return WholeTiles(host, layers == 1 ? g : g.WithSliceDepth(SliceDepth(k, layers)), layers, 3);
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that turns Wide16's whole-tile kernel off (0) or on (1, the default).</summary>
    public const string WholeTilesVariable = "AUTOGRAD_WHOLE_TILES";

    /// <summary>
    /// Whether Wide16 runs products made of whole 128x128 tiles and 16-deep slices on its kernel without
    /// edge tests (Wide16Whole; default: on, unless AUTOGRAD_WHOLE_TILES=0). Both give the same bits;
    /// the setting exists to time one against the other.
    /// </summary>
    public bool WholeTiles { get; set; } = SwitchFromEnvironment(WholeTilesVariable, unset: true, "Wide16's kernel with edge tests everywhere", "the whole-tile kernel where it fits, the default", "");
}
