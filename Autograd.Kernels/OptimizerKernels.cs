// Parameter updates, each one fused kernel per parameter: SGD with momentum and Adam (plain SGD is
// the Axpy of Elementwise). Adam's step count lives in a one-element device buffer that a one-thread
// kernel increments, so a replayed or captured step needs no value from the host.
using System.Numerics;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Optimizer update kernels and their launchers.</summary>
public static class OptimizerKernels
{
    // ---------------------------------------------------------------- kernels

    /// <summary>v = mu v + g; p -= lr v (PyTorch's SGD momentum, no dampening).</summary>
    internal static void MomentumKernel(
        ArrayView<float> p,   // (n) parameter, updated in place
        ArrayView<float> g,   // (n) gradient
        ArrayView<float> v,   // (n) velocity, updated in place
        int n, float lr, float mu)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            float vi = mu * v[i] + g[i];
            v[i] = vi;
            p[i] -= lr * vi;
        }
    }

    /// <summary>t[0] += 1.</summary>
    internal static void CountKernel(ArrayView<float> t) // (1) step count
    {
        if (Grid.GlobalIndex.X == 0) t[0] += 1f;
    }

    /// <summary>Adam (Kingma and Ba) with bias correction from the step count t[0].</summary>
    internal static void AdamKernel(
        ArrayView<float> p,   // (n) parameter, updated in place
        ArrayView<float> g,   // (n) gradient
        ArrayView<float> m,   // (n) first moment, updated in place
        ArrayView<float> v,   // (n) second moment, updated in place
        ArrayView<float> t,   // (1) step count, already incremented for this step
        int n, float lr, float beta1, float beta2, float eps)
    {
        float step = t[0];
        float c1 = 1f - XMath.Pow(beta1, step);
        float c2 = 1f - XMath.Pow(beta2, step);
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            var (pi, mi, vi) = AdamAt(p[i], g[i], m[i], v[i], lr, beta1, beta2, eps, c1, c2);
            m[i] = mi;
            v[i] = vi;
            p[i] = pi;
        }
    }

    // One element of Adam (the kernel's and the host loop's): the new parameter and moments.
    private static (float P, float M, float V) AdamAt(float p, float g, float m, float v,
        float lr, float beta1, float beta2, float eps, float c1, float c2)
    {
        float mi = beta1 * m + (1f - beta1) * g;
        float vi = beta2 * v + (1f - beta2) * g * g;
        return (p - lr * (mi / c1) / (XMath.Sqrt(vi / c2) + eps), mi, vi);
    }

    // ---------------------------------------------------------------- launchers

    /// <summary>SGD with momentum on one parameter.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="p">Parameter (n).</param>
    /// <param name="g">Gradient (n).</param>
    /// <param name="v">Velocity (n).</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="mu">Momentum.</param>
    public static unsafe void Momentum(KernelHost host, ArrayView<float> p, ArrayView<float> g, ArrayView<float> v, float lr, float mu)
    {
        Check.Length("Momentum", "g", g, p.Length);
        Check.Length("Momentum", "v", v, p.Length);
        if (p.Length == 0) return;
        if (host.HostLoops) { HostLoop.For(host, p.Length, new MomentumJob(HostLoop.Ptr(p), HostLoop.Ptr(g), HostLoop.Ptr(v), lr, mu)); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new MomentumPhase(p, g, v, (int)p.Length, lr, mu), "Momentum"); return; }
        var k = host.Load("Momentum", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float>(MomentumKernel));
        k(host.Stream, host.GridStride(p.Length), p, g, v, (int)p.Length, lr, mu);
    }

    /// <summary>Increments the device step counter t[0].</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="t">The one-element counter.</param>
    public static unsafe void Count(KernelHost host, ArrayView<float> t)
    {
        Check.Length("Count", "t", t, 1);
        if (host.HostLoops) { HostLoop.For(host, 1, new CountJob(HostLoop.Ptr(t))); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new CountPhase(t), "Count"); return; }
        var k = host.Load("Count", null, acc => acc.LoadKernel<ArrayView<float>>(CountKernel));
        k(host.Stream, new KernelConfig(1, 1), t);
    }

    /// <summary>Adam on one parameter, with the step count read from t[0].</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="p">Parameter (n).</param>
    /// <param name="g">Gradient (n).</param>
    /// <param name="m">First moment (n).</param>
    /// <param name="v">Second moment (n).</param>
    /// <param name="t">Step count (1), incremented before the step.</param>
    /// <param name="lr">Learning rate.</param>
    /// <param name="beta1">First-moment decay.</param>
    /// <param name="beta2">Second-moment decay.</param>
    /// <param name="eps">Denominator guard.</param>
    public static unsafe void Adam(KernelHost host, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> t, float lr, float beta1, float beta2, float eps)
    {
        Check.Length("Adam", "g", g, p.Length);
        Check.Length("Adam", "m", m, p.Length);
        Check.Length("Adam", "v", v, p.Length);
        Check.Length("Adam", "t", t, 1);
        if (p.Length == 0) return;
        if (host.HostLoops)
        {
            HostLoop.For(host, p.Length, new AdamJob(HostLoop.Ptr(p), HostLoop.Ptr(g), HostLoop.Ptr(m), HostLoop.Ptr(v), HostLoop.Ptr(t), lr, beta1, beta2, eps));
            return;
        }
        if (host.Recorder is { } recorder) { recorder.Add(new AdamPhase(p, g, m, v, t, (int)p.Length, lr, beta1, beta2, eps), "Adam"); return; }
        var k = host.Load("Adam", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float, float>(AdamKernel));
        k(host.Stream, host.GridStride(p.Length), p, g, m, v, t, (int)p.Length, lr, beta1, beta2, eps);
    }

    // ---------------------------------------------------------------- host loops (KernelHost.HostLoops)
    // The kernels' float operations per element, in their order.

    // The loops go by SIMD vectors with the scalar operations in the same order (no fused
    // multiply-adds; division and square root are correctly rounded in both), so each lane has the
    // scalar bits; Adam's update took 1.5 ns a parameter lane by lane.
    private readonly unsafe struct MomentumJob(float* p, float* g, float* v, float lr, float mu) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            int i = from, w = Vector<float>.Count;
            var vmu = new Vector<float>(mu);
            var vlr = new Vector<float>(lr);
            for (; i + w <= to; i += w)
            {
                var vi = vmu * *(Vector<float>*)(v + i) + *(Vector<float>*)(g + i);
                *(Vector<float>*)(v + i) = vi;
                *(Vector<float>*)(p + i) -= vlr * vi;
            }
            for (; i < to; i++)
            {
                float vi = mu * v[i] + g[i];
                v[i] = vi;
                p[i] -= lr * vi;
            }
        }
    }

    private readonly unsafe struct CountJob(float* t) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to) => t[0] += 1f;
    }

    private readonly unsafe struct AdamJob(float* p, float* g, float* m, float* v, float* t, float lr, float beta1, float beta2, float eps) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            float step = t[0];
            float c1 = 1f - XMath.Pow(beta1, step);
            float c2 = 1f - XMath.Pow(beta2, step);
            int i = from, w = Vector<float>.Count;
            Vector<float> b1 = new(beta1), b2 = new(beta2), k1 = new(1f - beta1), k2 = new(1f - beta2);
            Vector<float> vlr = new(lr), veps = new(eps), vc1 = new(c1), vc2 = new(c2);
            for (; i + w <= to; i += w)
            {
                // AdamAt's operations, in its order.
                var gi = *(Vector<float>*)(g + i);
                var mi = b1 * *(Vector<float>*)(m + i) + k1 * gi;
                var vi = b2 * *(Vector<float>*)(v + i) + k2 * gi * gi;
                *(Vector<float>*)(m + i) = mi;
                *(Vector<float>*)(v + i) = vi;
                *(Vector<float>*)(p + i) -= vlr * (mi / vc1) / (Vector.SquareRoot(vi / vc2) + veps);
            }
            for (; i < to; i++)
            {
                var (pi, mi, vi) = AdamAt(p[i], g[i], m[i], v[i], lr, beta1, beta2, eps, c1, c2);
                m[i] = mi;
                v[i] = vi;
                p[i] = pi;
            }
        }
    }
}
