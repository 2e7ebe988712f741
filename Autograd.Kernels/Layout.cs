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
        if (host.HostLoops) { HostLoop.For(host, (long)m * n, new TransposeJob(HostLoop.Ptr(x), HostLoop.Ptr(y), m, n)); return; }
        var k = host.Load("Transpose", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(TransposeKernel));
        k(host.Stream, host.GridStride((long)m * n), x, y, m, n);
    }

    // ---------------------------------------------------------------- host loop (KernelHost.HostLoops)

    private readonly unsafe struct TransposeJob(float* x, float* y, int m, int n) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int idx = from; idx < to; idx++)
            {
                int i = idx / n, j = idx % n;
                y[j * m + i] = x[idx];
            }
        }
    }
}
