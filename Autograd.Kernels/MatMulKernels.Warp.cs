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
    internal static void WarpKernel<TEpi, TTail>(
        ArrayView<float> a,   // (M, K) or (K, M) per g's strides
        ArrayView<float> b,   // (K, N) or (N, K) per g's strides
        ArrayView<float> c,   // (M, N) row-major
        ArrayView<float> e,   // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        TEpi epi,
        TTail tail)           // run once C is stored
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        int w = Warp.WarpSize, lane = Warp.LaneIdx;
        int tilesN = (g.N + 3) / 4;
        int total = ((g.M + 3) / 4) * tilesN;
        // Whole warps stride over the blocks, so every lane of a warp takes the same trip through
        // the loop and all of them reach each shuffle.
        int warps = Grid.DimX * Group.DimX / w;
        for (int t = Grid.GlobalIndex.X / w; t < total; t += warps)
        {
            var block = new Block4x4(g, t, tilesN);
            // Two of the lane's k per trip, loads first (a lane of the seed's first product walks 32).
            int k = lane;
            for (; k + w < g.K; k += 2 * w) block.Step2(a, b, g, k, k + w);
            if (k < g.K) block.Step(a, b, g, k);
            block.SumOverWarp();
            if (lane == 0) block.Store(c, e, g, epi);
        }
        tail.Finish(c, g.M * g.N);
    }

    // Lane 0 gets the sum of v over the warp, by halving: lane l adds lane l + d for d = W/2, ..., 1.
    private static float WarpSum(float v)
    {
        for (int d = Warp.WarpSize / 2; d > 0; d /= 2) v += Warp.ShuffleDown(v, d);
        return v;
    }
}
