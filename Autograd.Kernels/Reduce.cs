// Sums over all elements: a two-stage tree (per-group partials, then one group), deterministic: a
// fixed grid sums in a fixed order, so the same input gives the same bits. Sums over some axes are in
// Reduce.Axes.cs; the CPU accelerator's host twin of this sum in Reduce.Host.cs.
// SumAllMap is the fused form the compiled graph uses for a loss: it sums Map(x) without writing
// Map(x) anywhere, and can write a sibling elementwise result of x in the same pass (the loss's
// gradient, which needs x but not the sum), so loss and gradient cost one read of x.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Sum kernels and their launchers.</summary>
public static partial class Reduce
{
    private const int MaxGroup = 1024;

    /// <summary>Shared memory of a group's tree sum (bytes): a slot per thread of the largest group.</summary>
    internal const int GroupSumBytes = MaxGroup * sizeof(float);

    // ---------------------------------------------------------------- kernels

    /// <summary>partial[group] = scale * the sum of this group's grid-stride share of x.</summary>
    internal static void SumPartialsKernel(
        ArrayView<float> x,        // (n)
        ArrayView<float> partial,  // (gridDim) one sum per group
        int n,
        float scale)               // 1, or a mean's 1/n on the final pass
        => SumPartialsGroup(x, partial, n, scale, Grid.IdxX, Grid.DimX);

    // Group `group` of `groups` of SumPartialsKernel (a persistent kernel's phase runs them on its own grid).
    internal static void SumPartialsGroup(ArrayView<float> x, ArrayView<float> partial, int n, float scale, int group, int groups)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        int stride = groups * Group.DimX;
        float s = 0f;
        for (int i = group * Group.DimX + Group.IdxX; i < n; i += stride) s += x[i];
        GroupSum(shared, partial, group, s, scale, 0f);
    }

    // y[at] = alpha * (the sum of every thread's s) + beta * y[at], by a fixed tree (the same bits
    // every run; alpha 1 and beta 0 change no bit).
    private static void GroupSum(
        ArrayView<float> shared,   // (MaxGroup) the group's shared scratch
        ArrayView<float> y,        // the output
        int at,
        float s,
        float alpha,
        float beta)
    {
        int tid = Group.IdxX;
        shared[tid] = s;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (tid < half) shared[tid] += shared[tid + half];
            Group.Barrier();
        }
        if (tid == 0) Put(y, at, shared[0], alpha, beta);
        // The next use of shared (another row) must not overwrite shared[0] before thread 0 read it.
        Group.Barrier();
    }

    /// <summary>
    /// partial[group] = scale * the sum of Map(x[i]) over this group's grid-stride share; when hasSide
    /// is 1, also side[i] = Side(x[i], s[i * sStride]) for each i visited.
    /// </summary>
    internal static void SumMapKernel<TMap, TSide>(
        ArrayView<float> x,        // (n)
        ArrayView<float> partial,  // (gridDim) one sum per group
        ArrayView<float> side,     // (n) sibling output, when hasSide
        ArrayView<float> s,        // (n), or (1) with sStride 0: the sibling's second operand
        int n,
        int sStride,
        int hasSide,
        float scale,
        TMap map,
        TSide sideOp)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
        => SumMapGroup(x, partial, side, s, n, sStride, hasSide, scale, map, sideOp, Grid.IdxX, Grid.DimX);

    // Group `group` of `groups` of SumMapKernel (a persistent kernel's phase runs them on its own grid).
    internal static void SumMapGroup<TMap, TSide>(ArrayView<float> x, ArrayView<float> partial, ArrayView<float> side, ArrayView<float> s,
        int n, int sStride, int hasSide, float scale, TMap map, TSide sideOp, int group, int groups)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        int stride = groups * Group.DimX;
        float acc = 0f;
        int i = group * Group.DimX + Group.IdxX;
        // Four elements' loads before their adds, which keep the one-at-a-time order (so the bits):
        // one at a time, ptxas leaves a thread a single load in flight (SassTests).
        for (; i < n - 3 * stride; i += 4 * stride)
        {
            float v0 = x[i], v1 = x[i + stride], v2 = x[i + 2 * stride], v3 = x[i + 3 * stride];
            acc = SumMapStep(acc, v0, i, side, s, sStride, hasSide, map, sideOp);
            acc = SumMapStep(acc, v1, i + stride, side, s, sStride, hasSide, map, sideOp);
            acc = SumMapStep(acc, v2, i + 2 * stride, side, s, sStride, hasSide, map, sideOp);
            acc = SumMapStep(acc, v3, i + 3 * stride, side, s, sStride, hasSide, map, sideOp);
        }
        for (; i < n; i += stride) acc = SumMapStep(acc, x[i], i, side, s, sStride, hasSide, map, sideOp);
        GroupSum(shared, partial, group, acc, scale, 0f);
    }

    // One element of SumMapKernel: element i (value v) added to the sum through the map, and its side
    // output written when there is one.
    private static float SumMapStep<TMap, TSide>(float acc, float v, int i, ArrayView<float> side, ArrayView<float> s,
        int sStride, int hasSide, TMap map, TSide sideOp)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (hasSide != 0) side[i] = sideOp.Apply(v, s[i * sStride]);
        return acc + map.Apply(v);
    }

    // y[at] = alpha * s + beta * y[at]; beta 0 never reads y. The axis sums take alpha and beta so that a
    // compiled SGD step can update a bias from its gradient's sum in the sum's own launch.
    private static void Put(ArrayView<float> y, int at, float s, float alpha, float beta) =>
        y[at] = beta == 0f ? alpha * s : alpha * s + beta * y[at];

    // ---------------------------------------------------------------- launchers

    /// <summary>Scratch elements SumAll needs on this host.</summary>
    /// <param name="host">The kernel host.</param>
    public static int SumAllScratch(KernelHost host) => host.MaxGroups;

    /// <summary>y[0] = sum of all elements of x.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    public static void SumAll(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch) =>
        // The identity map adds the same elements in the same order as a plain sum.
        SumAllMap("SumAll", host, x, y, scratch, default(IdentityOp), x, x, 0, default(FirstOp), hasSide: false, 1f);

    /// <summary>y[0] = sum of map(x[i]) over all i.</summary>
    /// <typeparam name="TMap">The op applied to each element before summing.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    /// <param name="map">The op.</param>
    /// <param name="scale">Multiplies the sum (a mean's 1/n); 1 changes no bit.</param>
    public static void SumAllMap<TMap>(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch, TMap map,
        float scale = 1f)
        where TMap : struct, IUnaryOp =>
        SumAllMap("SumAllMap", host, x, y, scratch, map, x, x, 0, default(FirstOp), hasSide: false, scale);

    /// <summary>
    /// y[0] = sum of map(x[i]) over all i, and in the same pass side[i] = sideOp(x[i], s[i * sStride]).
    /// </summary>
    /// <typeparam name="TMap">The op applied to each element before summing.</typeparam>
    /// <typeparam name="TSide">The sibling op: (x element, s element) -> side element.</typeparam>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, 1 element.</param>
    /// <param name="scratch">At least SumAllScratch(host) elements; overwritten.</param>
    /// <param name="map">The op summed.</param>
    /// <param name="side">Sibling output, n elements; must not alias x or y.</param>
    /// <param name="s">The sibling's second operand: n elements (sStride 1) or 1 (sStride 0).</param>
    /// <param name="sStride">1, or 0 to broadcast s[0].</param>
    /// <param name="sideOp">The sibling op.</param>
    /// <param name="scale">Multiplies the sum (a mean's 1/n); 1 changes no bit.</param>
    public static void SumAllMap<TMap, TSide>(KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch,
        TMap map, ArrayView<float> side, ArrayView<float> s, int sStride, TSide sideOp, float scale = 1f)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        if (sStride is not (0 or 1)) throw new ArgumentException($"SumAllMap: sStride must be 0 or 1, got {sStride}.");
        Check.Length("SumAllMap", "side", side, x.Length);
        Check.Length("SumAllMap", "s", s, sStride == 0 ? 1 : x.Length);
        SumAllMap("SumAllMap", host, x, y, scratch, map, side, s, sStride, sideOp, hasSide: true, scale);
    }

    // The two-pass sum behind SumAll and SumAllMap; op names the caller in error messages.
    private static void SumAllMap<TMap, TSide>(string op, KernelHost host, ArrayView<float> x, ArrayView<float> y, ArrayView<float> scratch,
        TMap map, ArrayView<float> side, ArrayView<float> s, int sStride, TSide sideOp, bool hasSide, float scale)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        Check.Length(op, "y", y, 1);
        CheckScratch(op, host, scratch);
        int n = (int)x.Length;
        if (host.HostLoops) { HostSumAllMap(host, x, y, map, side, s, sStride, sideOp, hasSide, scale); return; }
        if (host.Recorder is { } recorder)
        {
            int g = SumGroups(host, n);
            RecordReduceGroup(host, "SumMap");
            recorder.Add(new SumMapPhase<TMap, TSide>(x, g == 1 ? y : scratch, side, s, n, sStride, hasSide ? 1 : 0, g == 1 ? scale : 1f, map, sideOp, g), "Sum");
            if (g > 1) recorder.Add(new SumPartialsPhase(scratch.SubView(0, g), y, g, scale), "Sum of partials");
            return;
        }
        var k = host.Load("SumMap", typeof((TMap, TSide)), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float, TMap, TSide>(SumMapKernel));
        int groups = SumGroups(host, n);
        int gs = host.ReduceGroupSize;
        // The scale applies once, to the final sum: in this pass when it is the only one.
        k(host.Stream, new KernelConfig(groups, gs), x, groups == 1 ? y : scratch, side, s, n, sStride, hasSide ? 1 : 0,
            groups == 1 ? scale : 1f, map, sideOp);
        if (groups == 1) return;
        var sum = host.Load("SumPartials", null, acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, float>(SumPartialsKernel));
        sum(host.Stream, new KernelConfig(1, gs), scratch.SubView(0, groups), y, groups, scale);
    }

    // A reduction's tree runs on groups of ReduceGroupSize; as a phase it runs on the persistent
    // kernel's groups, which must be the same size for the same bits.
    internal static void RecordReduceGroup(KernelHost host, string kernel)
    {
        if (host.ReduceGroupSize != host.GroupSize)
            throw new PersistentRefusedException(
                $"{kernel} sums in groups of {host.ReduceGroupSize} threads, not the persistent kernel's {host.GroupSize}");
    }

    private static void CheckScratch(string op, KernelHost host, ArrayView<float> scratch)
    {
        if (scratch.Length < SumAllScratch(host))
            throw new ArgumentException($"{op}: scratch has {scratch.Length} elements, needs {SumAllScratch(host)}.");
    }

    // Up to 64 elements per thread, one group is cheaper than a second launch. On the CPU accelerator
    // a launch costs ~60 us of thread wake-ups, so one group takes up to 64K elements (~30 us of adds).
    private static int SumGroups(KernelHost host, int n)
    {
        int gs = host.ReduceGroupSize;
        if (n <= gs * 64 || (host.IsCpu && n <= 1 << 16)) return 1;
        return (int)Math.Clamp((n + gs - 1) / gs, 1, host.MaxGroups);
    }
}
