// Split-K's sums: a product whose output has too few tiles to fill the device cuts K into slices,
// one grid layer each, and the slices' partial products are summed in slice order (the one order
// both forms use, so they give the same bits):
// - in the same launch, by the last layer to finish each tile (SplitKFixup, an atomic count per tile);
// - or in a second launch over all of C (SplitKSumKernel; KernelHost.SplitKInOneLaunch = false).
// The one-launch sum is done by a single group per tile, so it is latency-bound: its thread walks
// its 16 elements of C down the slices together, two slices a trip (32 loads in flight), instead of
// one element at a time. At 32 slices that is 16 waits on L2 instead of 128.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    // The layers of a tile count themselves in; the last one (whose count sees all the others' slices,
    // made visible by the fence before each count) sums the tile's slices in layer order, stores C and
    // resets the count for the next launch. A thread's 4x4 block is rows r + p sy, columns col + q sx.
    private static void SplitKFixup<TEpi>(ArrayView<float> c, ArrayView<float> e, ArrayView<float> partial,
        ArrayView<int> arrivals, GemmArgs g, TEpi epi, int tid, int r, int col, int sx, int sy, int tile, int split)
        where TEpi : struct, IBinaryOp
    {
        var last = SharedMemory.Allocate<int>(1);
        MemoryFence.DeviceLevel();
        Group.Barrier();
        if (tid == 0) last[0] = Atomic.Add(ref arrivals[tile], 1) == split - 1 ? 1 : 0;
        Group.Barrier();
        if (last[0] == 0) return;
        MemoryFence.DeviceLevel();
        int mn = g.M * g.N;
        var r0 = new SliceRow(g, r, col, sx);
        var r1 = new SliceRow(g, r + sy, col, sx);
        var r2 = new SliceRow(g, r + 2 * sy, col, sx);
        var r3 = new SliceRow(g, r + 3 * sy, col, sx);
        int z = 0;
        for (; z + 2 <= split; z += 2)
        {
            int at = z * mn;
            r0.Add2(partial, at, mn);
            r1.Add2(partial, at, mn);
            r2.Add2(partial, at, mn);
            r3.Add2(partial, at, mn);
        }
        if (z < split)
        {
            int at = z * mn;
            r0.Add(partial, at);
            r1.Add(partial, at);
            r2.Add(partial, at);
            r3.Add(partial, at);
        }
        StoreBlock(c, e, g, epi, 0, r, sy, col, sx, r0.S0, r0.S1, r0.S2, r0.S3, r1.S0, r1.S1, r1.S2, r1.S3,
            r2.S0, r2.S1, r2.S2, r2.S3, r3.S0, r3.S1, r3.S2, r3.S3);
        if (tid == 0) arrivals[tile] = 0;
    }

    // Four elements of a row of C (columns j, j + step, j + 2 step, j + 3 step) summed down the
    // slices, each in slice order from 0f: SumSlices' adds. Positions outside C read a clamped
    // element inside it, so every load is in bounds and issues without a branch; StoreBlock skips them.
    private struct SliceRow
    {
        private readonly int _p0, _p1, _p2, _p3;
        private float _s0, _s1, _s2, _s3;

        public SliceRow(GemmArgs g, int i, int j, int step)
        {
            int row = Min(i, g.M - 1) * g.N;
            _p0 = row + Min(j, g.N - 1);
            _p1 = row + Min(j + step, g.N - 1);
            _p2 = row + Min(j + 2 * step, g.N - 1);
            _p3 = row + Min(j + 3 * step, g.N - 1);
            _s0 = _s1 = _s2 = _s3 = 0f;
        }

        // Slices at `at` and `at + mn`, all 8 loads before the adds.
        public void Add2(ArrayView<float> partial, int at, int mn)
        {
            float a0 = partial[at + _p0], a1 = partial[at + _p1], a2 = partial[at + _p2], a3 = partial[at + _p3];
            int at2 = at + mn;
            float b0 = partial[at2 + _p0], b1 = partial[at2 + _p1], b2 = partial[at2 + _p2], b3 = partial[at2 + _p3];
            _s0 += a0; _s1 += a1; _s2 += a2; _s3 += a3;
            _s0 += b0; _s1 += b1; _s2 += b2; _s3 += b3;
        }

        public void Add(ArrayView<float> partial, int at)
        {
            _s0 += partial[at + _p0]; _s1 += partial[at + _p1]; _s2 += partial[at + _p2]; _s3 += partial[at + _p3];
        }

        // The four sums, for StoreBlock.
        public readonly float S0 => _s0;
        public readonly float S1 => _s1;
        public readonly float S2 => _s2;
        public readonly float S3 => _s3;
    }

    // Element idx of C summed over the K slices in slice order: the one order both split-K forms use,
    // so they give the same bits. Four slices are loaded before they are added (still in order): a
    // plain loop waits out one L2 round trip per slice, and the seed's first product has 32 slices on an H200.
    private static float SumSlices(ArrayView<float> partial, int mn, int idx, int split)
    {
        float s = 0f;
        int z = 0;
        for (; z + 4 <= split; z += 4)
        {
            int at = z * mn + idx;
            float p0 = partial[at], p1 = partial[at + mn], p2 = partial[at + 2 * mn], p3 = partial[at + 3 * mn];
            s += p0;
            s += p1;
            s += p2;
            s += p3;
        }
        for (; z < split; z++) s += partial[z * mn + idx];
        return s;
    }

    /// <summary>
    /// C(i, j) = Epi(alpha * sum over slices of partial[s][i][j] + beta * C(i, j), E(i, j)), the slices
    /// summed in order (deterministic).
    /// </summary>
    internal static void SplitKSumKernel<TEpi, TTail>(
        ArrayView<float> partial,  // (split, M, N) partial products
        ArrayView<float> c,        // (M, N) row-major
        ArrayView<float> e,        // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        int split,
        TEpi epi,
        TTail tail)                // run once C is stored
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        int mn = g.M * g.N;
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < mn; idx += stride)
        {
            Store(c, e, g, epi, 0, idx / g.N, idx % g.N, SumSlices(partial, mn, idx, split));
        }
        tail.Finish(c, mn);
    }
}
