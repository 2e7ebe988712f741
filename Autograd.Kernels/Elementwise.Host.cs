// The elementwise kernels as host loops, for the CPU accelerator (KernelHost.HostLoops; why in
// HostLoops.cs): each element gets the op's float operations, as in MapKernel, ZipKernel and their
// broadcasting forms, so the bits are the kernels'. The launchers of Elementwise.cs check the sizes
// and choose; these run only from there. Maps and zips go by SIMD vectors where the op has a vector
// form with its bits (ElementwiseOps.Vector.cs): whole buffers, and broadcasts along runs of the last dim.
using System.Numerics;
using System.Runtime.CompilerServices;
using ILGPU;

namespace AutogradNet.Kernels;

public static partial class Elementwise
{
    private static unsafe void HostMap<TOp>(KernelHost host, ArrayView<float> x, ArrayView<float> y, TOp op)
        where TOp : struct, IUnaryOp =>
        HostLoop.For(host, y.Length, new MapJob<TOp>(HostLoop.Ptr(x), HostLoop.Ptr(y), op));

    private static unsafe void HostMapBroadcast<TOp>(KernelHost host, ArrayView<float> x, ArrayView<float> y, Broadcast4 s, TOp op)
        where TOp : struct, IUnaryOp =>
        HostLoop.For(host, y.Length, new MapBroadcastJob<TOp>(HostLoop.Ptr(x), HostLoop.Ptr(y), s, op));

    private static unsafe void HostZip<TOp>(KernelHost host, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, TOp op)
        where TOp : struct, IBinaryOp =>
        HostLoop.For(host, c.Length, new ZipJob<TOp>(HostLoop.Ptr(a), HostLoop.Ptr(b), HostLoop.Ptr(c), op));

    private static unsafe void HostZipBroadcast<TOp>(KernelHost host, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, Broadcast4 s, TOp op)
        where TOp : struct, IBinaryOp =>
        HostLoop.For(host, c.Length, new ZipBroadcastJob<TOp>(HostLoop.Ptr(a), HostLoop.Ptr(b), HostLoop.Ptr(c), s, op));

    private static unsafe void HostFill(KernelHost host, ArrayView<float> y, float value) =>
        HostLoop.For(host, y.Length, new FillJob(HostLoop.Ptr(y), value));

    // y[k] = op(x[k]) for k < n, by vectors where the op has a vector form: a whole buffer's part, or a
    // broadcast's run with x contiguous. Inlined into the jobs' loops, which are optimised from their first call.
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MapRun<TOp>(TOp op, float* x, float* y, int n)
        where TOp : struct, IUnaryOp
    {
        int k = 0;
        if (VectorOp.Has(op))
            for (int w = Vector<float>.Count; k + w <= n; k += w)
                *(Vector<float>*)(y + k) = VectorOp.Apply(op, *(Vector<float>*)(x + k));
        for (; k < n; k++) y[k] = op.Apply(x[k]);
    }

    // c[k] = op(a[k sa], b[k sb]) for k < n, each stride 1 (contiguous) or 0 (one repeated element, in
    // every lane of a vector: the scalar op's bits, lane by lane). A whole buffer's part is (1, 1).
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ZipRun<TOp>(TOp op, float* a, int sa, float* b, int sb, float* c, int n)
        where TOp : struct, IBinaryOp
    {
        if (sa == 0 && sb == 0)
        {
            new Span<float>(c, n).Fill(op.Apply(*a, *b));
            return;
        }
        int k = 0;
        if (VectorOp.HasBinary(op))
        {
            int w = Vector<float>.Count;
            if (sa == 1 && sb == 1)
                for (; k + w <= n; k += w)
                    *(Vector<float>*)(c + k) = VectorOp.Apply(op, *(Vector<float>*)(a + k), *(Vector<float>*)(b + k));
            else if (sa == 0)
                for (var va = new Vector<float>(*a); k + w <= n; k += w)
                    *(Vector<float>*)(c + k) = VectorOp.Apply(op, va, *(Vector<float>*)(b + k));
            else
                for (var vb = new Vector<float>(*b); k + w <= n; k += w)
                    *(Vector<float>*)(c + k) = VectorOp.Apply(op, *(Vector<float>*)(a + k), vb);
        }
        for (; k < n; k++) c[k] = op.Apply(a[k * sa], b[k * sb]);
    }

    private readonly unsafe struct MapJob<TOp>(float* x, float* y, TOp op) : IHostJob
        where TOp : struct, IUnaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to) => MapRun(op, x + from, y + from, to - from);
    }

    // The broadcasting jobs walk the output in runs along its last dim: one operand offset (three
    // divisions) per run instead of per element; a bias add of 1000x100 took 460 us that way against
    // 6 us for a plain zip. Within a run an operand's stride is 1 (it has the last dim) or 0 (it is
    // repeated along it), so a run goes by vectors, with the repeated element in every lane.
    private readonly unsafe struct MapBroadcastJob<TOp>(float* x, float* y, Broadcast4 s, TOp op) : IHostJob
        where TOp : struct, IUnaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int i = from, d3 = s.D3; i < to;)
            {
                int end = Math.Min(to, (i / d3 + 1) * d3);
                float* px = x + s.OffsetA(i);
                // One input element for the whole run: one op, stored end - i times.
                if (s.A3 == 0) new Span<float>(y + i, end - i).Fill(op.Apply(*px));
                else MapRun(op, px, y + i, end - i);
                i = end;
            }
        }
    }

    private readonly unsafe struct ZipJob<TOp>(float* a, float* b, float* c, TOp op) : IHostJob
        where TOp : struct, IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to) => ZipRun(op, a + from, 1, b + from, 1, c + from, to - from);
    }

    private readonly unsafe struct ZipBroadcastJob<TOp>(float* a, float* b, float* c, Broadcast4 s, TOp op) : IHostJob
        where TOp : struct, IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int i = from, d3 = s.D3; i < to;)
            {
                int end = Math.Min(to, (i / d3 + 1) * d3);
                ZipRun(op, a + s.OffsetA(i), s.A3, b + s.OffsetB(i), s.B3, c + i, end - i);
                i = end;
            }
        }
    }

    private readonly unsafe struct FillJob(float* y, float value) : IHostJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            // Span's Fill stores whole vectors: a zero_() of 100K floats took ~17 µs as a loop of floats.
            new Span<float>(y + from, to - from).Fill(value);
        }
    }
}
