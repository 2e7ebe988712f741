// The CPU accelerator's SGEMM. ILGPU's CPU accelerator simulates every GPU thread with an OS thread
// running scalar code: the register-blocked kernel reaches ~2.6 GFLOP/s a core there, and the seed's
// two large products took 4.9 of a compiled step's 5.8 ms. Its buffers are plain host memory, so on
// it MatMul runs as vectorised .NET over the same buffers instead: 4 rows x 2 SIMD vectors of C per
// step in registers, rows split across the cores. Same contract as the ILGPU kernels (layouts,
// alpha, beta, the generic epilogue), same host twin in the tests. Never used on a GPU.
using System.Numerics;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    // Below this many multiply-adds the product runs on the calling thread: waking a core costs more.
    private const long HostParallelWork = 1 << 18;

    private static unsafe void HostMatMul<TEpi>(KernelHost host,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi)
        where TEpi : struct, IBinaryOp
    {
        // CPU launches complete before they return, but a copy may still be queued on the stream.
        host.Synchronize();
        host.CountLaunch();
        int w = Vector<float>.Count;
        float* src = (float*)b.LoadEffectiveAddressAsPtr();
        // Whole vectors of B's columns are read in place when B's rows are contiguous. The rest (the
        // last N mod W columns, or all of a transposed B) is packed as zero-padded (K, width) rows;
        // the padding's results are never stored.
        int inPlace = g.Bn == 1 ? g.N / w * w : 0;
        int rest = g.N - inPlace;
        int packedWidth = (rest + w - 1) / w * w;
        float[]? packed = rest > 0 ? System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, g.K * packedWidth)) : null;
        try
        {
            if (packed != null)
                for (int k = 0; k < g.K; k++)
                {
                    for (int j = 0; j < rest; j++) packed[k * packedWidth + j] = src[k * g.Bk + (inPlace + j) * g.Bn];
                    for (int j = rest; j < packedWidth; j++) packed[k * packedWidth + j] = 0f;
                }
            fixed (float* pk = packed)
            {
                var job = new HostGemm<TEpi>((float*)a.LoadEffectiveAddressAsPtr(), src, inPlace, pk, packedWidth,
                    (float*)c.LoadEffectiveAddressAsPtr(), (float*)e.LoadEffectiveAddressAsPtr(), g, epi);
                int blocks = (g.M + 3) / 4;
                int parts = (long)g.M * g.N * g.K < HostParallelWork ? 1 : Math.Min(Environment.ProcessorCount, blocks);
                if (parts <= 1) job.Rows(0, blocks);
                else
                    Parallel.For(0, parts, p => job.Rows(blocks * p / parts, blocks * (p + 1) / parts));
            }
        }
        finally
        {
            if (packed != null) System.Buffers.ArrayPool<float>.Shared.Return(packed);
        }
    }

    /// <summary>
    /// One host product. A through g's strides; columns [0, inPlace) of B read in place ((K, N) rows);
    /// columns from inPlace on from the packed (K, packedWidth) rows; C and E as in the kernels.
    /// </summary>
    private readonly unsafe struct HostGemm<TEpi>(float* a, float* b, int inPlace, float* packed, int packedWidth,
        float* c, float* e, GemmArgs g, TEpi epi)
        where TEpi : struct, IBinaryOp
    {
        /// <summary>Row blocks [from, to) of 4 rows each.</summary>
        // Fully optimised from the first call: tiered JIT would run the first products unoptimised.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Rows(int from, int to)
        {
            int w = Vector<float>.Count;
            for (int blk = from; blk < to; blk++)
            {
                int i0 = blk * 4;
                int j = 0;
                for (; j + 2 * w <= inPlace; j += 2 * w) Block2(i0, j, b + j, g.N);
                for (; j < inPlace; j += w) Block1(i0, j, b + j, g.N);
                for (int q = 0; q < packedWidth; q += w) Block1(i0, inPlace + q, packed + q, packedWidth);
            }
        }

        // Rows past M repeat the last row (loads stay in bounds); Put drops their results.
        private float* RowA(int i) => a + Math.Min(i, g.M - 1) * g.Am;

        // 4 rows x 2 vectors of C: 8 independent FMA chains; B(k, j..) at bk + k * ld.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block2(int i0, int j, float* bk, int ld)
        {
            float* a0 = RowA(i0), a1 = RowA(i0 + 1), a2 = RowA(i0 + 2), a3 = RowA(i0 + 3);
            Vector<float> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector<float> c20 = default, c21 = default, c30 = default, c31 = default;
            int kEnd = g.K, ak = g.Ak, w = Vector<float>.Count;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += ld)
            {
                var b0 = *(Vector<float>*)bk;
                var b1 = *(Vector<float>*)(bk + w);
                var x = new Vector<float>(a0[ka]);
                c00 = Vector.FusedMultiplyAdd(x, b0, c00); c01 = Vector.FusedMultiplyAdd(x, b1, c01);
                x = new Vector<float>(a1[ka]);
                c10 = Vector.FusedMultiplyAdd(x, b0, c10); c11 = Vector.FusedMultiplyAdd(x, b1, c11);
                x = new Vector<float>(a2[ka]);
                c20 = Vector.FusedMultiplyAdd(x, b0, c20); c21 = Vector.FusedMultiplyAdd(x, b1, c21);
                x = new Vector<float>(a3[ka]);
                c30 = Vector.FusedMultiplyAdd(x, b0, c30); c31 = Vector.FusedMultiplyAdd(x, b1, c31);
            }
            // Parked before any call: accumulators live across a call are spilled inside the loop.
            var acc = stackalloc Vector<float>[8];
            acc[0] = c00; acc[1] = c01; acc[2] = c10; acc[3] = c11;
            acc[4] = c20; acc[5] = c21; acc[6] = c30; acc[7] = c31;
            for (int r = 0; r < 4; r++)
            {
                Put(i0 + r, j, acc[2 * r]);
                Put(i0 + r, j + w, acc[2 * r + 1]);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block1(int i0, int j, float* bk, int ld)
        {
            float* a0 = RowA(i0), a1 = RowA(i0 + 1), a2 = RowA(i0 + 2), a3 = RowA(i0 + 3);
            Vector<float> c0 = default, c1 = default, c2 = default, c3 = default;
            int kEnd = g.K, ak = g.Ak;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += ld)
            {
                var b0 = *(Vector<float>*)bk;
                c0 = Vector.FusedMultiplyAdd(new Vector<float>(a0[ka]), b0, c0);
                c1 = Vector.FusedMultiplyAdd(new Vector<float>(a1[ka]), b0, c1);
                c2 = Vector.FusedMultiplyAdd(new Vector<float>(a2[ka]), b0, c2);
                c3 = Vector.FusedMultiplyAdd(new Vector<float>(a3[ka]), b0, c3);
            }
            var acc = stackalloc Vector<float>[4];
            acc[0] = c0; acc[1] = c1; acc[2] = c2; acc[3] = c3;
            for (int r = 0; r < 4; r++) Put(i0 + r, j, acc[r]);
        }

        // Whole vectors are scaled and accumulated as vectors (same operations per lane as Store, so
        // the same bits); the epilogue op, unless it is FirstOp, runs per element.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Put(int i, int j, Vector<float> v)
        {
            if (i >= g.M) return;
            int w = Vector<float>.Count;
            if (g.N - j < w)
            {
                for (int l = 0; l < g.N - j; l++) Store(i, j + l, v[l]);
                return;
            }
            float* ci = c + i * g.N + j;
            var p = v * g.Alpha;
            if (g.Beta != 0f) p += *(Vector<float>*)ci * g.Beta;
            if (typeof(TEpi) == typeof(FirstOp))
            {
                *(Vector<float>*)ci = p;
                return;
            }
            float* lanes = (float*)&p;
            float* ei = e + i * g.Em + j * g.En;
            for (int l = 0; l < w; l++) ci[l] = epi.Apply(lanes[l], ei[l * g.En]);
        }

        // The kernels' Store: scale, accumulate, then the epilogue op.
        private void Store(int i, int j, float v)
        {
            int idx = i * g.N + j;
            float p = g.Beta == 0f ? g.Alpha * v : g.Alpha * v + g.Beta * c[idx];
            c[idx] = epi.Apply(p, e[i * g.Em + j * g.En]);
        }
    }
}
