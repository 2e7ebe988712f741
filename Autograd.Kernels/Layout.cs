// Layout kernels: the 2-D transpose. Reshape needs no kernel (contiguous buffers are shared).
// Two device forms: TransposeKernel, one element a thread (what a persistent program's phase runs),
// and TransposeTiledKernel, which the launcher takes: a group moves a 32x32 tile through shared
// memory, so that it both reads x and writes y a row at a time. One element a thread reads a warp's
// 32 elements from one row of x but writes them to 32 rows of y, 32 sectors for 128 bytes; the SGEMM
// copies an operand along k transposed through this launcher before its cp.async kernel
// (MatMulKernels.TransposedCopies), where a 4096x4096 operand is 128 MB moved.
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Layout kernels and their launchers.</summary>
public static class Layout
{
    /// <summary>y(j, i) = x(i, j).</summary>
    internal static void TransposeKernel(
        ArrayView<float> x,   // (M, N) row-major
        ArrayView<float> y,   // (N, M) row-major
        int m, int n)
    {
        int total = m * n;
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < total; idx += stride)
        {
            int i = idx / n, j = idx % n;
            y[j * m + i] = x[idx];
        }
    }

    // The side of a shared tile, and its row in shared memory (one float of padding, so that a warp
    // reading a column of the tile hits 32 different banks).
    private const int Tile = 32, TileRow = Tile + 1;

    /// <summary>y(j, i) = x(i, j), a 32x32 tile a group at a time (grid-strided over the tiles).</summary>
    internal static void TransposeTiledKernel(
        ArrayView<float> x,   // (M, N) row-major
        ArrayView<float> y,   // (N, M) row-major
        int m, int n)
    {
        var tile = SharedMemory.Allocate<float>(Tile * TileRow);   // [r][c] = x(i0 + r, j0 + c)
        int tilesN = (n + Tile - 1) / Tile;
        long tiles = (long)tilesN * ((m + Tile - 1) / Tile);
        for (long t = Grid.IdxX; t < tiles; t += Grid.DimX)
        {
            int i0 = (int)(t / tilesN) * Tile, j0 = (int)(t % tilesN) * Tile;
            for (int r = Group.IdxY; r < Tile; r += Group.DimY)
                for (int c = Group.IdxX; c < Tile; c += Group.DimX)
                    if (i0 + r < m && j0 + c < n) tile[r * TileRow + c] = x[(long)(i0 + r) * n + j0 + c];
            Group.Barrier();
            // Row r of this tile of y is column r of the tile of x.
            for (int r = Group.IdxY; r < Tile; r += Group.DimY)
                for (int c = Group.IdxX; c < Tile; c += Group.DimX)
                    if (j0 + r < n && i0 + c < m) y[(long)(j0 + r) * m + i0 + c] = tile[c * TileRow + r];
            Group.Barrier();
        }
    }

    /// <summary>y = x^T for a (M, N) matrix x.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">(M, N) row-major.</param>
    /// <param name="y">(N, M) row-major; must not alias x.</param>
    /// <param name="m">Rows of x.</param>
    /// <param name="n">Columns of x.</param>
    public static unsafe void Transpose(KernelHost host, ArrayView<float> x, ArrayView<float> y, int m, int n)
    {
        Check.Length("Transpose", "x", x, (long)m * n);
        Check.Length("Transpose", "y", y, (long)m * n);
        if (m * n == 0) return;
        if (host.HostLoops)
        {
            int tilesN = (n + HostTile - 1) / HostTile, tiles = (m + HostTile - 1) / HostTile * tilesN;
            HostLoop.For(host, tiles, new TransposeJob(HostLoop.Ptr(x), HostLoop.Ptr(y), m, n, tilesN), work: (long)m * n);
            return;
        }
        if (host.Recorder is { } recorder) { recorder.Add(new TransposePhase(x, y, m, n), "Transpose"); return; }
        // Groups of 32 x 8 threads (4 elements a thread and tile), or what the accelerator allows.
        int gx = Math.Min(Tile, host.Accelerator.MaxNumThreadsPerGroup), gy = Math.Min(8, host.Accelerator.MaxNumThreadsPerGroup / gx);
        long deviceTiles = (long)((m + Tile - 1) / Tile) * ((n + Tile - 1) / Tile);
        var k = host.Load("TransposeTiled", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(TransposeTiledKernel));
        k(host.Stream, new KernelConfig(new Index3D((int)Math.Min(deviceTiles, host.MaxGroups), 1, 1), new Index3D(gx, gy, 1)), x, y, m, n);
    }

    // ---------------------------------------------------------------- host loop (KernelHost.HostLoops)

    // Square tiles of the host transpose: a tile's rows of x and of y stay in the L1 cache while it is
    // copied, where walking x in order wrote y a cache line apart for every element (and divided twice
    // per element): 100K floats took 160 us.
    private const int HostTile = 32;

    // Over tiles of HostTile x HostTile, tilesN to a row of tiles.
    private readonly unsafe struct TransposeJob(float* x, float* y, int m, int n, int tilesN) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int t = from; t < to; t++)
            {
                int i0 = t / tilesN * HostTile, j0 = t % tilesN * HostTile;
                int i1 = Math.Min(m, i0 + HostTile), j1 = Math.Min(n, j0 + HostTile);
                for (int i = i0; i < i1; i++)
                {
                    float* row = x + (long)i * n;
                    for (int j = j0; j < j1; j++) y[(long)j * m + i] = row[j];
                }
            }
        }
    }
}
