// The CPU accelerator's SGEMM. ILGPU's CPU accelerator simulates every GPU thread with an OS thread
// running scalar code: the register-blocked kernel reaches ~2.6 GFLOP/s a core there, and the seed's
// two large products took 4.9 of a compiled step's 5.8 ms. Its buffers are plain host memory, so on
// it MatMul runs as vectorised .NET over the same buffers instead, in the widest SIMD vectors the CPU
// runs (HostSimd.cs).
// - A block keeps 4 rows x 3 vectors of C in registers: 12 FMA chains (two FMA units of 4 cycles'
//   latency need 8), fed by 3 loads of B and 4 broadcasts of A. A row of C ends in a block of 2 or
//   of 4 vectors (two of 2 where 16 registers cannot hold 4), so that no block runs on fewer than 8.
// - B is read in place. A vector that runs past column N reads the next row's first elements (lanes
//   never stored), except in B's last rows, which the edge block takes from a padded copy as its
//   chains' last FMAs. A transposed B is packed first, 64-byte aligned. A part's first row block of
//   a column block also stores the vectors it loads into an aligned, contiguous slab, and its later
//   row blocks read the slab: in place, B's rows at N = 100 start off a vector boundary (a 16-float
//   load across two cache lines costs an Intel core about twice), and at N = 1024 a block's rows
//   fall into few cache sets (1024^3 took 19 ms on 2 cores instead of 7.5). A transposed A's row
//   blocks are likewise copied into strips once a part where C has 3 or more column blocks.
// - Work is cut into (4 rows, column block) pieces, split across the cores (HostFork.cs). By rows:
//   split by column slabs, so that W += x^T dH and h = x W found W's slab in their own core, the
//   first took 39.6-39.8 us instead of 36.3-37.2 (the cores shared C's lines at the cut) and the
//   eager step got slower, for no gain in the pair (74.6-75.7 against 73.1-75.3 us).
// Same contract as the ILGPU kernels (layouts, alpha, beta, the generic epilogue), same host twin in
// the tests; each element of C is one FMA chain in k order. Never used on a GPU.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    // Below this many multiply-adds the product runs on the calling thread: waking a core costs more.
    private const long HostParallelWork = 1 << 18;

    /// <summary>Lets the host SGEMM take Vector512 where AVX-512 runs; off, it takes Vector&lt;float&gt;
    /// (the tests run both widths).</summary>
    internal static bool HostWideVectors { get; set; } = true;

    /// <summary>Lets the host SGEMM run a column block's later row blocks on an aligned, contiguous
    /// copy of its columns of B (HostGemm.RunOnSlabs); off, B is always read in place (the tests run
    /// both).</summary>
    internal static bool HostSlabs { get; set; } = true;

    /// <summary>Lets the host SGEMM copy a transposed A's row blocks into strips where C has 3 or more
    /// column blocks (HostGemm.StripsOfA); off, A is always read in place (the tests run both).</summary>
    internal static bool HostStrips { get; set; } = true;

    // Whether a block also stores the B vectors it loads into a slab (a JIT-time constant).
    private interface ISlabCopy
    {
        static abstract bool On { get; }
    }

    private readonly struct CopyToSlab : ISlabCopy
    {
        public static bool On => true;
    }

    private readonly struct NoSlab : ISlabCopy
    {
        public static bool On => false;
    }

    /// <summary>Floats per vector in the host SGEMM on this CPU.</summary>
    internal static int HostVectorWidth =>
        HostWideVectors && Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector<float>.Count;

    private static void HostMatMul<TEpi>(KernelHost host,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi)
        where TEpi : struct, IBinaryOp
    {
        // CPU launches complete before they return, but a copy may still be queued on the stream.
        host.Synchronize();
        host.CountLaunch();
        if (HostVectorWidth == Vector512<float>.Count && Vector512<float>.Count != Vector<float>.Count)
            HostMatMul<TEpi, Simd512, Vector512<float>>(a, b, c, e, g, epi);
        else
            HostMatMul<TEpi, SimdAny, Vector<float>>(a, b, c, e, g, epi);
    }

    private static unsafe void HostMatMul<TEpi, TS, TV>(
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi)
        where TEpi : struct, IBinaryOp
        where TS : struct, IHostSimd<TV>
        where TV : unmanaged
    {
        var cols = new HostColumns(g.N, TS.Count, HostFourBlocks);
        float* src = (float*)b.LoadEffectiveAddressAsPtr();
        // A transposed B is packed as zero-padded (K, V * W) rows (PackTransposed), so that every
        // block reads rows of whole vectors; the padding's results are never stored.
        int width = cols.Vectors * cols.W;
        // Rented with a vector's slack and used from its first vector boundary: a vector that crosses
        // two cache lines loads at half speed on Intel cores (see Memory.cs in Autograd.Core).
        float[]? packed = g.Bn != 1 ? System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, g.K * width) + TS.Count - 1) : null;
        try
        {
            fixed (float* pinned = packed)
            {
                float* pk = pinned == null ? null : AlignUp(pinned, TS.Count);
                if (packed != null) PackTransposed(src, pk, g, width);
                var job = new HostGemm<TEpi, TS, TV>((float*)a.LoadEffectiveAddressAsPtr(),
                    packed != null ? pk : src, packed != null ? width : g.N, packed == null && g.N % cols.W != 0, cols,
                    (float*)c.LoadEffectiveAddressAsPtr(), (float*)e.LoadEffectiveAddressAsPtr(), g, epi);
                int pieces = (g.M + 3) / 4 * cols.Blocks;
                int parts = (long)g.M * g.N * g.K < HostParallelWork ? 1 : Math.Min(Environment.ProcessorCount, pieces);
                HostFork.Run(pieces, job, parts);
            }
        }
        finally
        {
            if (packed != null) System.Buffers.ArrayPool<float>.Shared.Return(packed);
        }
    }

    // The first address from p that is a multiple of `floats` floats.
    private static unsafe float* AlignUp(float* p, int floats)
    {
        long bytes = floats * sizeof(float);
        return (float*)(((long)p + bytes - 1) / bytes * bytes);
    }

    // B(k, j) = src[k * Bk + j * Bn] into dst's (K, width) rows, zero-padded, split across the cores
    // by groups of 16 columns where B is large.
    private static unsafe void PackTransposed(float* src, float* dst, GemmArgs g, int width)
    {
        var job = new PackJob(src, dst, g, width);
        int groups = (width + PackJob.J - 1) / PackJob.J;
        HostFork.Run(groups, job, (long)g.K * width < HostParallelWork ? 1 : Math.Min(Environment.ProcessorCount, groups));
    }

    // Columns go 16 at a time down all of K: the 16 source rows' cache lines serve 16 k each. Row by
    // row, each element was a line of its own, K floats apart (1024^3 NT: ~4 of its 12.4 ms on 2 cores).
    private readonly unsafe struct PackJob(float* src, float* dst, GemmArgs g, int width) : IHostJob
    {
        public const int J = 16;

        /// <summary>Column groups [from, to): columns J from on, zeros past N.</summary>
        // Optimised from the first call: a product whose B is transposed paid ~4 µs here at tier 0
        // for 10x100 floats.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int j0 = from * J; j0 < Math.Min(to * J, width); j0 += J)
            {
                int jEnd = Math.Min(j0 + J, g.N), zEnd = Math.Min(j0 + J, width);
                float* d = dst;
                for (int k = 0; k < g.K; k++, d += width)
                {
                    float* s = src + (long)k * g.Bk;
                    for (int j = j0; j < jEnd; j++) d[j] = s[(long)j * g.Bn];
                    for (int j = Math.Max(j0, g.N); j < zEnd; j++) d[j] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// Lets the host SGEMM end a row of C in a block of 4 vectors (16 chains, 21 vector registers)
    /// where V mod 3 = 1, instead of two blocks of 2 (8 chains each): on by default where the CPU has
    /// 32 vector registers (AVX-512, Arm64); with AVX2's 16 a block of 4 would spill. The tests run both.
    /// </summary>
    internal static bool HostFourBlocks { get; set; } =
        Vector512.IsHardwareAccelerated || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture ==
        System.Runtime.InteropServices.Architecture.Arm64;

    /// <summary>
    /// How the host SGEMM cuts C's columns: V = ceil(N / W) vectors in blocks of 3, then a tail: none
    /// (V mod 3 = 0), a block of 2 (V mod 3 = 2), a block of 4 or two of 2 (V mod 3 = 1, HostFourBlocks),
    /// or the lone vector when V = 1. No block but the lone vector has fewer than 8 chains.
    /// </summary>
    private readonly struct HostColumns
    {
        public readonly int W, Vectors, Threes, Tail, Blocks;

        public HostColumns(int n, int w, bool fours)
        {
            W = w;
            Vectors = (n + w - 1) / w;
            int tails;
            (Tail, tails) = Vectors == 1 ? (1, 1) : (Vectors % 3) switch
            {
                0 => (0, 0),
                2 => (2, 1),
                _ => fours ? (4, 1) : (2, 2),
            };
            Threes = (Vectors - Tail * tails) / 3;
            Blocks = Threes + tails;
        }

        /// <summary>The first vector of column block q.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Start(int q) => q <= Threes ? 3 * q : 3 * Threes + Tail * (q - Threes);

        /// <summary>Vectors in column block q.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Size(int q) => q < Threes ? 3 : Tail;
    }

    /// <summary>The last Count rows of B for an edge block, (Count, vectors * W) zero-padded; none when Count is 0.</summary>
    private readonly unsafe struct LastRows(float* rows, int count)
    {
        public readonly float* Rows = rows;
        public readonly int Count = count;
    }
}
