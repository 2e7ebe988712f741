// The CPU accelerator's sum of all elements, as host code: the same adds in the same order as
// SumMapKernel and SumPartialsKernel on that accelerator's grid, so its bits are Reduce.SumAllMap's.
// The host SGEMM uses it for a product's SumTail (MatMulKernels.Launch.cs). An ILGPU launch on the
// CPU accelerator costs ~60-130 us of thread wake-ups, more than summing a loss's few thousand
// elements, and the product is host code already. Never used on a GPU.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class Reduce
{
    /// <summary>The tail's sum over x (n elements, host memory): loss, and x = side(x, s) in place.</summary>
    internal static unsafe void HostSumAllMap<TMap, TSide>(KernelHost host, ArrayView<float> x, SumTail<TMap, TSide> tail)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (!host.IsCpu) throw new InvalidOperationException("Reduce: the host sum reads host memory and runs only on the CPU accelerator.");
        int n = (int)x.Length;
        float* v = (float*)x.LoadEffectiveAddressAsPtr();
        float* s = (float*)tail.S.LoadEffectiveAddressAsPtr();
        int gs = host.ReduceGroupSize, groups = SumGroups(host, n);
        // No allocation: a compiled step runs this every replay.
        float[]? rented = groups > 1 ? System.Buffers.ArrayPool<float>.Shared.Rent(groups) : null;
        Span<float> lanes = stackalloc float[gs];
        Span<float> partial = rented;
        try
        {
            SumOnHost(v, s, n, gs, groups, tail, lanes, partial);
        }
        finally
        {
            if (rented != null) System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }

    private static unsafe void SumOnHost<TMap, TSide>(float* v, float* s, int n, int gs, int groups, SumTail<TMap, TSide> tail,
        Span<float> lanes, Span<float> partial)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        int stride = groups * gs;
        // Pass 1 (SumMapKernel): thread t of group g takes g * gs + t, then every stride-th element.
        for (int g = 0; g < groups; g++)
        {
            for (int t = 0; t < gs; t++)
            {
                float acc = 0f;
                for (int i = g * gs + t; i < n; i += stride)
                {
                    float e = v[i];
                    acc += tail.Map.Apply(e);
                    if (tail.HasSide) v[i] = tail.Side.Apply(e, s[i * tail.SStride]);
                }
                lanes[t] = acc;
            }
            float sum = Tree(lanes);
            if (groups == 1)
            {
                *(float*)tail.Loss.LoadEffectiveAddressAsPtr() = tail.Scale * sum;
                return;
            }
            partial[g] = 1f * sum;
        }
        // Pass 2 (SumPartialsKernel): one group over the partials, scaled once.
        for (int t = 0; t < gs; t++)
        {
            float acc = 0f;
            for (int i = t; i < groups; i += gs) acc += partial[i];
            lanes[t] = acc;
        }
        *(float*)tail.Loss.LoadEffectiveAddressAsPtr() = tail.Scale * Tree(lanes);
    }

    // GroupSum's tree: lane t adds lane t + half, halving.
    private static float Tree(Span<float> lanes)
    {
        for (int half = lanes.Length / 2; half > 0; half /= 2)
            for (int t = 0; t < half; t++) lanes[t] += lanes[t + half];
        return lanes[0];
    }

    /// <summary>Whether the sum of all n elements takes one group (no second pass).</summary>
    internal static bool OneGroup(KernelHost host, int n) => SumGroups(host, n) == 1;
}
