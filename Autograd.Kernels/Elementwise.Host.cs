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
            int d3 = s.D3;
            for (int i = from; i < to;)
            {
                int end = Math.Min(to, (i / d3 + 1) * d3);
                float* px = x + s.OffsetA(i), py = y + i;
                int n = end - i, k = 0;
                if (s.A3 == 0)
                {
                    // One input element for the whole run: one op, stored n times.
                    new Span<float>(py, n).Fill(op.Apply(*px));
                }
                else
                {
                    if (VectorOp.Has(op))
                        for (int w = Vector<float>.Count; k + w <= n; k += w)
                            *(Vector<float>*)(py + k) = VectorOp.Apply(op, *(Vector<float>*)(px + k));
                    for (; k < n; k++) py[k] = op.Apply(px[k]);
                }
                i = end;
            }
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
            int d3 = s.D3, sa = s.A3, sb = s.B3;
            bool vectors = VectorOp.HasBinary(op);
            for (int i = from; i < to;)
            {
                int end = Math.Min(to, (i / d3 + 1) * d3);
                float* pa = a + s.OffsetA(i), pb = b + s.OffsetB(i), pc = c + i;
                int n = end - i, k = 0;
                if (sa == 0 && sb == 0)
                {
                    new Span<float>(pc, n).Fill(op.Apply(*pa, *pb));
                    i = end;
                    continue;
                }
                if (vectors)
                {
                    // A repeated operand is the same element in every lane: the scalar op's bits, lane by lane.
                    int w = Vector<float>.Count;
                    if (sa == 1 && sb == 1)
                        for (; k + w <= n; k += w)
                            *(Vector<float>*)(pc + k) = VectorOp.Apply(op, *(Vector<float>*)(pa + k), *(Vector<float>*)(pb + k));
                    else if (sa == 0)
                        for (var va = new Vector<float>(*pa); k + w <= n; k += w)
                            *(Vector<float>*)(pc + k) = VectorOp.Apply(op, va, *(Vector<float>*)(pb + k));
                    else
                        for (var vb = new Vector<float>(*pb); k + w <= n; k += w)
                            *(Vector<float>*)(pc + k) = VectorOp.Apply(op, *(Vector<float>*)(pa + k), vb);
                }
                for (; k < n; k++) pc[k] = op.Apply(pa[k * sa], pb[k * sb]);
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
