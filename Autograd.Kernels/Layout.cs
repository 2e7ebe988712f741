// Layout kernels: the 2-D transpose. Reshape needs no kernel (contiguous buffers are shared).
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
        var k = host.Load("Transpose", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(TransposeKernel));
        k(host.Stream, host.GridStride((long)m * n), x, y, m, n);
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
