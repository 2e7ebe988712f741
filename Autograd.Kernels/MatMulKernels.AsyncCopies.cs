// When Wide16 runs as Wide16Async (MatMulKernels.Wide16Async.cs), and the copies it is made of.
// Wide16Async is Wide16Whole with its slices copied by cp.async into a ring of 3 stages, so it has
// Wide16Whole's precondition (whole tiles, whole slices, aligned operands) and one of its own: on
// CUDA, sm_80 or later, where cp.async exists. By default it takes only products whose operands are
// both copied along m or n in 16-byte copies (TN: A stored (K, M), B (K, N)): on an H200 (run 9,
// 2026-11-29) 4096^3 TN ran at 48.3 TFLOP/s against Wide16Whole's 45.0, but NN at 37.7 against 44.2
// and NT at 33.8 against 42.2, where an operand along k is copied 4 bytes at a time to be stored
// transposed (KernelHost.AsyncCopies, KernelHost.AsyncCopiesAlongK).
// cp.async needs two addresses ILGPU does not hand a kernel (Probes.cs, "AsyncCopy", found the way):
// the global one from the host (LoadEffectiveAddressAsPtr, a kernel argument), the shared one from
// ILGPU's dynamic shared symbol, __dyn_shared_alloca, which the kernel's only shared memory is.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>Stages in Wide16Async's ring: a slice is asked for AsyncStages - 1 slices before it is multiplied.</summary>
    internal const int AsyncStages = 3;

    // Floats of one operand's 16-deep stage (16 rows of WideRow).
    private const int AsyncStageFloats = Wide16Depth * WideRow;

    /// <summary>Dynamic shared memory of a Wide16Async group: both operands' stages (50,688 bytes).</summary>
    internal const int AsyncSharedBytes = 2 * AsyncStages * AsyncStageFloats * sizeof(float);

    /// <summary>
    /// Whether a 128x128-tile launch of g over `layers` K parts runs on Wide16Async: allowed
    /// (KernelHost.AsyncCopies), in a layout whose copies are all 16 bytes wide (TN) unless
    /// KernelHost.AsyncCopiesAlongK allows every layout, a product Wide16Whole would take (WholeTiles),
    /// and, on CUDA, a device of sm_80 or later.
    /// </summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="g">The product's arguments (KPer the depth of a K part).</param>
    /// <param name="layers">K parts in the launch (grid z).</param>
    /// <param name="vec">WideVectorizable's answer for the operands.</param>
    internal static bool AsyncCopies(KernelHost host, GemmArgs g, int layers, int vec) =>
        host.AsyncCopies && (host.AsyncCopiesAlongK || CopiesAlongMOnly(g)) && HasCpAsync(host) && WholeTiles(host, g, layers, vec);

    /// <summary>AsyncCopies for the launch MatMul makes of (m, n, k) in its layout with K split in `layers`, operands aligned.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="layers">K parts of the launch, as SplitK gives them for this shape.</param>
    /// <param name="transA">A stored (K, M).</param>
    /// <param name="transB">B stored (N, K).</param>
    internal static bool AsyncCopies(KernelHost host, int m, int n, int k, int layers, bool transA, bool transB) =>
        host.AsyncCopies && (host.AsyncCopiesAlongK || CopiesAlongMOnly(new GemmArgs(m, n, k, transA, transB, 1f, 0f)))
        && HasCpAsync(host) && WholeTiles(host, m, n, k, layers);

    // Whether both operands' slices are copied along m or n, one 16-byte copy a thread and half-slice
    // (A stored (K, M), B stored (K, N): TN), rather than 4 bytes at a time down k.
    private static bool CopiesAlongMOnly(GemmArgs g) => g.Ak != 1 && g.Bn == 1;

    // cp.async exists from sm_80 on; elsewhere than CUDA the copies are plain loads and stores.
    private static bool HasCpAsync(KernelHost host) =>
        !(host.Accelerator is CudaAccelerator cuda && cuda.Architecture is { } arch && arch < CudaArchitecture.SM_80);

    // One 16-deep slice of an operand, as its two 8-deep halves: from Float4 `at4` of the operand (the
    // second half `step` Float4s on) into float offset `at` of the whole dynamic shared memory, `s`
    // (as floats) and `s4` (as Float4s) (the second half WideDepth rows on). Along m: one 16-byte copy a half, a Float4 of a stage's row. Along k:
    // four 4-byte copies a half, down the four rows the Float4's k fall in (the slice is stored
    // transposed, [k][m], as PutWhole stores it). Both only issue: CommitCopies closes the group,
    // WaitCopies waits.
    private static void CopySlice(ArrayView<Float4> g4, ArrayView<float> s, ArrayView<Float4> s4, long address, bool alongK,
        int at4, int step, int at)
    {
        CopyHalf(g4, s, s4, address, alongK, at4, at);
        CopyHalf(g4, s, s4, address, alongK, at4 + step, at + WideDepth * WideRow);
    }

    private static void CopyHalf(ArrayView<Float4> g4, ArrayView<float> s, ArrayView<Float4> s4, long address, bool alongK, int at4, int at)
    {
        if (CudaAsm.IsSupported)
        {
            long from = address + 16L * at4;
            if (alongK) CopyAsync4Rows(4 * at, from);
            else CopyAsync16(4 * at, from);
            return;
        }
        var v = g4[at4];
        if (alongK)
        {
            var d = s.SubView(at, 3 * WideRow + 1);
            d[0] = v.X;
            d[WideRow] = v.Y;
            d[2 * WideRow] = v.Z;
            d[3 * WideRow] = v.W;
        }
        else s4[at / 4] = v;
    }

    // The inline PTX of the copies (CUDA only; Probes.AsyncCopyKernel issues them too). Both addresses
    // are bytes: `shared` from the start of the kernel's dynamic shared memory, `from` a global address.

    /// <summary>Issues a 16-byte cp.async (L2 only, .cg) from `from` to byte `shared` of the dynamic shared memory.</summary>
    internal static void CopyAsync16(int shared, long from) =>
        CudaAsm.Emit("{ .reg .u32 s; mov.u32 s, __dyn_shared_alloca; add.u32 s, s, %0; cp.async.cg.shared.global [s], [%1], 16; }", shared, from);

    // Four 4-byte copies (.ca, through L1) of the 16 bytes at `from`, down four rows of WideRow floats
    // from byte `shared`: offsets 528, 1056, 1584 are one, two and three rows of 132 floats.
    private static void CopyAsync4Rows(int shared, long from) =>
        CudaAsm.Emit("{ .reg .u32 s; mov.u32 s, __dyn_shared_alloca; add.u32 s, s, %0; "
            + "cp.async.ca.shared.global [s], [%1], 4; cp.async.ca.shared.global [s+528], [%1+4], 4; "
            + "cp.async.ca.shared.global [s+1056], [%1+8], 4; cp.async.ca.shared.global [s+1584], [%1+12], 4; }", shared, from);

    /// <summary>Closes the copies issued since the last commit into one group (an empty one if none were).</summary>
    internal static void CommitCopies()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.commit_group;");
    }

    // Waits until at most AsyncStages - 2 groups (the slices still ahead in the ring) are in flight:
    // the oldest, the slice about to be multiplied, has landed.
    private static void WaitCopies()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_group 1;");
    }

    /// <summary>Waits until every group of copies this thread committed has landed.</summary>
    internal static void WaitAllCopies()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_group 0;");
    }

    /// <summary>Wide16Async's launch bounds: 256 threads, 2 groups a multiprocessor (128 registers a thread).</summary>
    internal static readonly KernelSpecialization AsyncBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(Wide16AsyncKernel));

    // Wide16Async's launcher, loaded once per epilogue and bounds: on CUDA the kernel's dynamic shared
    // memory limit is raised to AsyncSharedBytes (over the 48 KB a launch gets without asking).
    private static Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, long, long, TEpi>
        LoadWide16Async<TEpi>(Accelerator acc, KernelSpecialization bounds) where TEpi : struct, IBinaryOp
    {
        var launcher = acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, long, long, TEpi>(Wide16AsyncKernel, bounds);
        KernelHost.AllowDynamicShared(launcher, AsyncSharedBytes, "MatMul (Wide16, async copies)");
        return launcher;
    }

    // A view's device address, for a kernel's cp.async.
    private static long Address(ArrayView<float> view) => view.LoadEffectiveAddressAsPtr().ToInt64();
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that turns Wide16's async-copy kernel off (0) or on (1, the default).</summary>
    public const string AsyncCopiesVariable = "AUTOGRAD_ASYNC_COPIES";

    /// <summary>
    /// Whether Wide16 runs products made of whole tiles on its kernel that copies slices with cp.async
    /// into a ring of 3 stages (Wide16Async; default: on, unless AUTOGRAD_ASYNC_COPIES=0), rather than on
    /// Wide16Whole, in the layouts AsyncCopiesAlongK allows. Both give the same bits. On an H200 (run 9)
    /// it ran 4096^3 TN at 48.3 TFLOP/s against the whole-tile kernel's 45.0.
    /// </summary>
    public bool AsyncCopies { get; set; } = SwitchFromEnvironment(AsyncCopiesVariable, unset: true, "the whole-tile kernel", "cp.async slices where the whole-tile kernel fits, the default", "");

    /// <summary>
    /// Whether AsyncCopies also takes products with an operand along k (A in NN and NT, B in NT), whose
    /// slices it copies 4 bytes at a time into their transposed place (default: off; on an H200, run 9,
    /// 4096^3 NN ran at 37.7 TFLOP/s on it against 44.2 on the whole-tile kernel, NT 33.8 against 42.2).
    /// For tests and the bench's rows that time those layouts.
    /// </summary>
    public bool AsyncCopiesAlongK { get; set; }
}
