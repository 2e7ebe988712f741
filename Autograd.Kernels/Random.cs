// Normal random numbers from a counter-based generator (Philox4x32-10, Salmon et al. 2011).
// Element i of a draw with key (seed) and offset is a pure function of (seed, offset + i), so the
// same seed gives the same numbers on every device and for any launch geometry. The Box-Muller
// transform runs in double and rounds once to float, so devices whose double log/cos differ in the
// last bit still agree in float (Philox itself is exact integer arithmetic).
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Philox-based normal random numbers.</summary>
public static class RandomKernels
{
    /// <summary>The 4x32 Philox block for counter (c0, c1, 0, 0) and key (k0, k1), 10 rounds; returns words 0 and 1.</summary>
    /// <param name="c0">Counter low word.</param>
    /// <param name="c1">Counter high word.</param>
    /// <param name="k0">Key low word.</param>
    /// <param name="k1">Key high word.</param>
    /// <param name="x0">First output word.</param>
    /// <param name="x1">Second output word.</param>
    // Inlined into the host loop (optimised from its first call), which would otherwise call it unoptimised.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Philox(uint c0, uint c1, uint k0, uint k1, out uint x0, out uint x1)
    {
        uint c2 = 0, c3 = 0;
        for (int r = 0; r < 10; r++)
        {
            ulong p0 = 0xD2511F53UL * c0;
            ulong p1 = 0xCD9E8D57UL * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n1 = (uint)p1;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            uint n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
        }
        x0 = c0; x1 = c1;
    }

    /// <summary>Maps two Philox words to a standard normal (Box-Muller, cosine branch) in double.</summary>
    /// <param name="x0">First word: the radius.</param>
    /// <param name="x1">Second word: the angle.</param>
    // Inlined into the host loop for the same reason as Philox.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ToNormal(uint x0, uint x1)
    {
        double u1 = (x0 + 1.0) / 4294967297.0;   // (0, 1]: log never sees 0
        double u2 = x1 / 4294967296.0;           // [0, 1)
        return XMath.Sqrt(-2.0 * XMath.Log(u1)) * XMath.Cos(6.283185307179586 * u2);
    }

    /// <summary>y[i] = normal(seed, offset + i).</summary>
    internal static void RandnKernel(
        ArrayView<float> y,   // (n)
        int n,
        ulong seed,
        ulong offset)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            ulong ctr = offset + (ulong)i;
            Philox((uint)ctr, (uint)(ctr >> 32), (uint)seed, (uint)(seed >> 32), out uint x0, out uint x1);
            y[i] = (float)ToNormal(x0, x1);
        }
    }

    /// <summary>Fills y with standard normals numbered offset, offset+1, ... under seed.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="y">Output buffer.</param>
    /// <param name="seed">Generator key.</param>
    /// <param name="offset">Counter of the first element.</param>
    public static unsafe void Randn(KernelHost host, ArrayView<float> y, ulong seed, ulong offset)
    {
        int n = (int)y.Length;
        if (n == 0) return;
        if (host.HostLoops) { HostLoop.For(host, n, new RandnJob(HostLoop.Ptr(y), seed, offset)); return; }
        var k = host.Load("Randn", null, acc =>
            acc.LoadKernel<ArrayView<float>, int, ulong, ulong>(RandnKernel));
        k(host.Stream, host.GridStride(n), y, n, seed, offset);
    }

    // ---------------------------------------------------------------- host loop (KernelHost.HostLoops)

    private readonly unsafe struct RandnJob(float* y, ulong seed, ulong offset) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                ulong ctr = offset + (ulong)i;
                Philox((uint)ctr, (uint)(ctr >> 32), (uint)seed, (uint)(seed >> 32), out uint x0, out uint x1);
                y[i] = (float)ToNormal(x0, x1);
            }
        }
    }
}
