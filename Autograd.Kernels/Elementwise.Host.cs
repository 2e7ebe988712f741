// The elementwise kernels as host loops, for the CPU accelerator (KernelHost.HostLoops; why in
// HostLoops.cs): each element gets the op's float operations, as in MapKernel, ZipKernel and their
// broadcasting forms, so the bits are the kernels'. The launchers of Elementwise.cs check the sizes
// and choose; these run only from there. Maps and zips of whole buffers go by SIMD vectors where the op
// has a vector form with its bits (ElementwiseOps.Vector.cs).
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

    private readonly unsafe struct MapJob<TOp>(float* x, float* y, TOp op) : IHostJob
        where TOp : struct, IUnaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            int i = from;
            if (VectorOp.Has(op))
                for (int w = Vector<float>.Count; i + w <= to; i += w)
                    *(Vector<float>*)(y + i) = VectorOp.Apply(op, *(Vector<float>*)(x + i));
            for (; i < to; i++) y[i] = op.Apply(x[i]);
        }
    }

    private readonly unsafe struct MapBroadcastJob<TOp>(float* x, float* y, Broadcast4 s, TOp op) : IHostJob
        where TOp : struct, IUnaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int i = from; i < to; i++) y[i] = op.Apply(x[s.OffsetA(i)]);
        }
    }

    private readonly unsafe struct ZipJob<TOp>(float* a, float* b, float* c, TOp op) : IHostJob
        where TOp : struct, IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            int i = from;
            if (VectorOp.HasBinary(op))
                for (int w = Vector<float>.Count; i + w <= to; i += w)
                    *(Vector<float>*)(c + i) = VectorOp.Apply(op, *(Vector<float>*)(a + i), *(Vector<float>*)(b + i));
            for (; i < to; i++) c[i] = op.Apply(a[i], b[i]);
        }
    }

    private readonly unsafe struct ZipBroadcastJob<TOp>(float* a, float* b, float* c, Broadcast4 s, TOp op) : IHostJob
        where TOp : struct, IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            for (int i = from; i < to; i++) c[i] = op.Apply(a[s.OffsetA(i)], b[s.OffsetB(i)]);
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
