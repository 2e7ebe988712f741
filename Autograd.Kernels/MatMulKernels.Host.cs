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
        float* pa = (float*)a.LoadEffectiveAddressAsPtr();
        float* pc = (float*)c.LoadEffectiveAddressAsPtr();
        float* pe = (float*)e.LoadEffectiveAddressAsPtr();
        int w = Vector<float>.Count;
        int ldb = (g.N + w - 1) / w * w;
        float[]? packed = null;
        try
        {
            float* src = (float*)b.LoadEffectiveAddressAsPtr();
            if (g.Bn != 1 || ldb != g.N)
            {
                // B transposed, or N not a whole number of vectors: pack it as (K, ldb) rows, zero-padded,
                // so every column block is whole vectors (the padding's results are never stored).
                packed = System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, g.K * ldb));
                for (int k = 0; k < g.K; k++)
                {
                    for (int j = 0; j < g.N; j++) packed[k * ldb + j] = src[k * g.Bk + j * g.Bn];
                    for (int j = g.N; j < ldb; j++) packed[k * ldb + j] = 0f;
                }
            }
            fixed (float* pk = packed)
            {
                var job = new HostGemm<TEpi>(pa, packed != null ? pk : src, ldb, pc, pe, g, epi);
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

    /// <summary>One host product: A through g's strides, B as (K, ldb) rows with ldb a multiple of the vector width, C and E as in the kernels.</summary>
    private readonly unsafe struct HostGemm<TEpi>(float* a, float* b, int ldb, float* c, float* e, GemmArgs g, TEpi epi)
        where TEpi : struct, IBinaryOp
    {
        private static int W => Vector<float>.Count;

        /// <summary>Row blocks [from, to) of 4 rows each.</summary>
        // Fully optimised from the first call: tiered JIT would run the first products unoptimised.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Rows(int from, int to)
        {
            for (int blk = from; blk < to; blk++)
            {
                int i0 = blk * 4;
                int j = 0;
                for (; j + 2 * W <= ldb; j += 2 * W) Block2(i0, j);
                if (j < ldb) Block1(i0, j);
            }
        }

        // Rows past M repeat the last row (loads stay in bounds); Put drops their results.
        private float* RowA(int i) => a + Math.Min(i, g.M - 1) * g.Am;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block2(int i0, int j)
        {
            float* a0 = RowA(i0), a1 = RowA(i0 + 1), a2 = RowA(i0 + 2), a3 = RowA(i0 + 3);
            Vector<float> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector<float> c20 = default, c21 = default, c30 = default, c31 = default;
            float* bk = b + j;
            for (int k = 0, ka = 0; k < g.K; k++, ka += g.Ak, bk += ldb)
            {
                var b0 = *(Vector<float>*)bk;
                var b1 = *(Vector<float>*)(bk + W);
                var x = new Vector<float>(a0[ka]);
                c00 = Vector.FusedMultiplyAdd(x, b0, c00); c01 = Vector.FusedMultiplyAdd(x, b1, c01);
                x = new Vector<float>(a1[ka]);
                c10 = Vector.FusedMultiplyAdd(x, b0, c10); c11 = Vector.FusedMultiplyAdd(x, b1, c11);
                x = new Vector<float>(a2[ka]);
                c20 = Vector.FusedMultiplyAdd(x, b0, c20); c21 = Vector.FusedMultiplyAdd(x, b1, c21);
                x = new Vector<float>(a3[ka]);
                c30 = Vector.FusedMultiplyAdd(x, b0, c30); c31 = Vector.FusedMultiplyAdd(x, b1, c31);
            }
            Put(i0, j, c00); Put(i0, j + W, c01);
            Put(i0 + 1, j, c10); Put(i0 + 1, j + W, c11);
            Put(i0 + 2, j, c20); Put(i0 + 2, j + W, c21);
            Put(i0 + 3, j, c30); Put(i0 + 3, j + W, c31);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block1(int i0, int j)
        {
            float* a0 = RowA(i0), a1 = RowA(i0 + 1), a2 = RowA(i0 + 2), a3 = RowA(i0 + 3);
            Vector<float> c0 = default, c1 = default, c2 = default, c3 = default;
            float* bk = b + j;
            for (int k = 0, ka = 0; k < g.K; k++, ka += g.Ak, bk += ldb)
            {
                var b0 = *(Vector<float>*)bk;
                c0 = Vector.FusedMultiplyAdd(new Vector<float>(a0[ka]), b0, c0);
                c1 = Vector.FusedMultiplyAdd(new Vector<float>(a1[ka]), b0, c1);
                c2 = Vector.FusedMultiplyAdd(new Vector<float>(a2[ka]), b0, c2);
                c3 = Vector.FusedMultiplyAdd(new Vector<float>(a3[ka]), b0, c3);
            }
            Put(i0, j, c0); Put(i0 + 1, j, c1); Put(i0 + 2, j, c2); Put(i0 + 3, j, c3);
        }

        private void Put(int i, int j, Vector<float> v)
        {
            if (i >= g.M) return;
            int n = Math.Min(W, g.N - j);
            for (int l = 0; l < n; l++) Store(i, j + l, v[l]);
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
