// The warp-split SGEMM, for products with few outputs (the seed's: 64x100, 64x10, 100x10).
//
// Why: a tiled kernel gives such a product a handful of tiles, so it either leaves most of the GPU
// idle while each tile walks all of K, or splits K across groups and pays for the slices' scratch
// and their sum (MatMulKernels.cs, split-K). Here a warp owns a 4x4 block of C and its lanes split K
// among themselves (lane l takes k = l, l + W, ...); the warp then adds its lanes' sums by a
// shuffle tree. No shared memory, no barrier, no scratch, one launch, and the serial depth is
// K / W loads instead of K. The order of every sum is fixed by the lane and the tree, so the result
// has the same bits every run. The epilogue is the same Store as every other path.
//
// Unmeasured on a GPU when written: MatMulPath.Warp is not chosen by Auto; the bench times it
// beside the tiled kernel for the seed's products.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>One warp per 4x4 block of C, K split across the warp's lanes, summed by shuffles.</summary>
    internal static void WarpKernel<TEpi>(
        ArrayView<float> a,   // (M, K) or (K, M) per g's strides
        ArrayView<float> b,   // (K, N) or (N, K) per g's strides
        ArrayView<float> c,   // (M, N) row-major
        ArrayView<float> e,   // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        TEpi epi)
        where TEpi : struct, IBinaryOp
    {
        int w = Warp.WarpSize, lane = Warp.LaneIdx;
        int tilesN = (g.N + 3) / 4;
        int total = ((g.M + 3) / 4) * tilesN;
        // Whole warps stride over the blocks, so every lane of a warp takes the same trip through
        // the loop and all of them reach each shuffle.
        int warps = Grid.DimX * Group.DimX / w;
        for (int t = Grid.GlobalIndex.X / w; t < total; t += warps)
        {
            int i0 = (t / tilesN) * 4, j0 = (t % tilesN) * 4;
            // Clamp to the last row/column so loads stay in bounds; stores are masked.
            int r1 = Min(i0 + 1, g.M - 1), r2 = Min(i0 + 2, g.M - 1), r3 = Min(i0 + 3, g.M - 1);
            int c1 = Min(j0 + 1, g.N - 1), c2 = Min(j0 + 2, g.N - 1), c3 = Min(j0 + 3, g.N - 1);
            int pa0 = i0 * g.Am, pa1 = r1 * g.Am, pa2 = r2 * g.Am, pa3 = r3 * g.Am;
            int pb0 = j0 * g.Bn, pb1 = c1 * g.Bn, pb2 = c2 * g.Bn, pb3 = c3 * g.Bn;
            float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
            float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
            for (int k = lane; k < g.K; k += w)
            {
                int ka = k * g.Ak, kb = k * g.Bk;
                float a0 = a[pa0 + ka], a1 = a[pa1 + ka], a2 = a[pa2 + ka], a3 = a[pa3 + ka];
                float b0 = b[kb + pb0], b1 = b[kb + pb1], b2 = b[kb + pb2], b3 = b[kb + pb3];
                s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
                s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
                s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
                s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
            }
            s00 = WarpSum(s00); s01 = WarpSum(s01); s02 = WarpSum(s02); s03 = WarpSum(s03);
            s10 = WarpSum(s10); s11 = WarpSum(s11); s12 = WarpSum(s12); s13 = WarpSum(s13);
            s20 = WarpSum(s20); s21 = WarpSum(s21); s22 = WarpSum(s22); s23 = WarpSum(s23);
            s30 = WarpSum(s30); s31 = WarpSum(s31); s32 = WarpSum(s32); s33 = WarpSum(s33);
            if (lane != 0) continue;
            Store4(c, e, g, epi, i0, j0, s00, s01, s02, s03);
            Store4(c, e, g, epi, i0 + 1, j0, s10, s11, s12, s13);
            Store4(c, e, g, epi, i0 + 2, j0, s20, s21, s22, s23);
            Store4(c, e, g, epi, i0 + 3, j0, s30, s31, s32, s33);
        }
    }

    // Lane 0 gets the sum of v over the warp, by halving: lane l adds lane l + d for d = W/2, ..., 1.
    private static float WarpSum(float v)
    {
        for (int d = Warp.WarpSize / 2; d > 0; d /= 2) v += Warp.ShuffleDown(v, d);
        return v;
    }
}
