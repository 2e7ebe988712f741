// A product's tail: work a kernel does once all of its groups have stored their part of C, in the
// same launch. The one tail is a sum over all of C: loss = Scale * sum of Map(C), and, with a side
// op, C = Side(C, S) in place. That is a loss and its gradient taken where the product that feeds
// them is made, e.g. sum((h w2 - y)^2) and 2 (h w2 - y) in the launch of h w2, which saves the seed's
// step the launch of its loss pass.
//
// How: every group fences its stores and counts itself in (an atomic count, reset by the last group
// for the next launch). The group that counts last sees every other group's stores. It walks C in the
// order of Reduce's one-group sum: thread t takes t, t + T, t + 2T, ..., then a tree over the group.
// The bits are the same every run, and on a group of Reduce's size they are the bits of
// Reduce.SumAllMap. One group does all the work, so the launcher keeps the tail for a C of at most
// MatMulKernels.MaxTailElements that one group of Reduce's sum would take anyway
// (MatMulKernels.Sum.cs); a larger C is summed by Reduce.SumAllMap in a second launch.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Work a product kernel does in its own launch once every group has stored its part of C.</summary>
public interface IProductTail
{
    /// <summary>Called by every thread of every group after its stores; C holds count elements.</summary>
    /// <param name="c">C, (count) row-major.</param>
    /// <param name="count">Elements of C.</param>
    void Finish(ArrayView<float> c, int count);

    /// <summary>Static shared memory Finish allocates in a group (bytes); a kernel made of several phases adds each one's.</summary>
    int SharedBytes { get; }

    /// <summary>What Finish reads and writes besides C's product, as part of a persistent kernel's phase (host side).</summary>
    /// <param name="access">Collects the buffers.</param>
    /// <param name="c">C, which Finish reads (and rewrites with a side op).</param>
    void Touches(PhaseAccess access, ArrayView<float> c);
}

/// <summary>No tail: the product only stores C.</summary>
public readonly struct NoTail : IProductTail
{
    /// <inheritdoc/>
    public void Finish(ArrayView<float> c, int count)
    {
    }

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access, ArrayView<float> c)
    {
    }
}

/// <summary>
/// The sum of a product's output, in the product's launch: loss = Scale * sum of Map(C(i, j)), and
/// when the tail has a side op, C(i, j) = Side(C(i, j), S[(i * N + j) * SStride]).
/// </summary>
/// <typeparam name="TMap">The op applied to each element before it is summed.</typeparam>
/// <typeparam name="TSide">The side op: (element of C, element of S) -> new element of C.</typeparam>
public readonly struct SumTail<TMap, TSide> : IProductTail
    where TMap : struct, IUnaryOp
    where TSide : struct, IBinaryOp
{
    // Views are fields, so the tail is one kernel argument whatever it carries.
    private readonly ArrayView<float> _loss;  // (1)
    private readonly ArrayView<float> _s;     // (count) with stride 1, or (1) with stride 0
    private readonly ArrayView<int> _arrival; // (1) groups done, 0 between launches
    private readonly int _sStride, _hasSide;
    private readonly int _oneFence;           // 1: the count-in's fences by thread 0 only (KernelHost.OneThreadFences)
    private readonly float _scale;
    private readonly TMap _map;
    private readonly TSide _side;

    /// <summary>loss[0] = scale * the sum of map(C); C is left as the product stored it.</summary>
    /// <param name="loss">One element.</param>
    /// <param name="map">The op summed (IdentityOp for a plain sum).</param>
    /// <param name="scale">Multiplies the sum (a mean's 1/n); 1 changes no bit.</param>
    public SumTail(ArrayView<float> loss, TMap map, float scale = 1f)
        : this(loss, map, scale, default, loss, 0, 0, default, 0)
    {
    }

    /// <summary>loss[0] = scale * the sum of map(C), and C = side(C, s) in the same pass.</summary>
    /// <param name="loss">One element.</param>
    /// <param name="map">The op summed.</param>
    /// <param name="scale">Multiplies the sum.</param>
    /// <param name="side">The side op.</param>
    /// <param name="s">Its second operand: C's length (sStride 1) or one element (sStride 0).</param>
    /// <param name="sStride">1, or 0 to broadcast s[0].</param>
    public SumTail(ArrayView<float> loss, TMap map, float scale, TSide side, ArrayView<float> s, int sStride)
        : this(loss, map, scale, side, s, sStride, 1, default, 0)
    {
        if (sStride is not (0 or 1)) throw new ArgumentException($"SumTail: sStride must be 0 or 1, got {sStride}.");
    }

    private SumTail(ArrayView<float> loss, TMap map, float scale, TSide side, ArrayView<float> s, int sStride, int hasSide,
        ArrayView<int> arrival, int oneFence)
    {
        _loss = loss; _map = map; _scale = scale; _side = side; _s = s; _sStride = sStride; _hasSide = hasSide;
        _arrival = arrival; _oneFence = oneFence;
    }

    /// <summary>The loss element.</summary>
    public ArrayView<float> Loss => _loss;

    /// <summary>The side op's second operand.</summary>
    public ArrayView<float> S => _s;

    /// <summary>1 or 0 (s broadcast).</summary>
    public int SStride => _sStride;

    /// <summary>Whether C is rewritten by the side op.</summary>
    public bool HasSide => _hasSide != 0;

    /// <summary>Multiplies the sum.</summary>
    public float Scale => _scale;

    /// <summary>The op summed.</summary>
    public TMap Map => _map;

    /// <summary>The side op.</summary>
    public TSide Side => _side;

    // The launcher binds the host's counter and its count-in fences (KernelHost.OneThreadFences); users never see them.
    internal SumTail<TMap, TSide> WithArrival(ArrayView<int> arrival, bool oneThreadFences) =>
        new(_loss, _map, _scale, _side, _s, _sStride, _hasSide, arrival, oneThreadFences ? 1 : 0);

    /// <inheritdoc/>
    public int SharedBytes => sizeof(int) + MatMulKernels.MaxTailThreads * sizeof(float);

    /// <inheritdoc/>
    public void Touches(PhaseAccess access, ArrayView<float> c)
    {
        access.Write(_loss);
        access.UsesCounters();
        if (_hasSide == 0) return;
        access.Read(_s);
        access.Write(c);
    }

    /// <inheritdoc/>
    public void Finish(ArrayView<float> c, int count)
    {
        // The count-in is written out here and in ChainTail, not shared as a helper returning whether
        // the group is last: on the CPU accelerator that helper made the persistent tests 15% slower
        // (62-65 s against 74, fourteenth session).
        // Every thread fences its stores of C before the count, and after it in the last group; or
        // (_oneFence) thread 0 fences for the group, after the barrier that orders the group's stores
        // before its own fence (fences are cumulative), as CUDA's grid sync does.
        var last = SharedMemory.Allocate<int>(1);
        int tid = Group.LinearIndex;
        if (_oneFence == 0) MemoryFence.DeviceLevel();
        Group.Barrier();
        if (tid == 0)
        {
            if (_oneFence != 0) MemoryFence.DeviceLevel();
            int isLast = Atomic.Add(ref _arrival[0], 1) == Grid.Dimension.Size - 1 ? 1 : 0;
            if (_oneFence != 0 && isLast != 0) MemoryFence.DeviceLevel();
            last[0] = isLast;
        }
        Group.Barrier();
        if (last[0] == 0) return;
        if (_oneFence == 0) MemoryFence.DeviceLevel();
        GroupSum.Run(c, 0, count, _loss, 0, _map, _scale, _hasSide != 0, _side, _s, _sStride);
        if (tid == 0) _arrival[0] = 0;
    }
}

/// <summary>A sum over all of C by one group, and the side op's rewrite of C: the SumTail's and the chain stages' last step.</summary>
internal static class GroupSum
{
    /// <summary>
    /// By every thread of one group (a power of two, at most MatMulKernels.MaxTailThreads):
    /// loss[lossAt] = scale * the sum of map(C[first..end)), and with a side op C = side(C, s) there.
    /// Thread t adds first + t, first + t + T, ..., then Reduce's group tree: the order is fixed, so
    /// the bits are. A row chain's block sums its own rows, into its own element of the partial sums.
    /// </summary>
    public static void Run<TMap, TSide>(ArrayView<float> c, int first, int end, ArrayView<float> loss, int lossAt, TMap map, float scale,
        bool hasSide, TSide side, ArrayView<float> s, int sStride)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var sums = SharedMemory.Allocate<float>(MatMulKernels.MaxTailThreads);
        int tid = Group.LinearIndex, threads = Group.Dimension.Size;
        // Four of the thread's elements a trip, every load (C's and the side operand's) before any
        // add or store: one wait on memory a trip. The last trip's absent elements are neither
        // loaded nor added, so the adds keep the order of the plain loop (t, t + T, t + 2T, ...) and
        // its bits. The seed's 640 elements are one trip for groups of 256: a loop of single elements
        // waited three times, and six with the side op (a generic load cannot pass the store before it).
        float acc = 0f;
        for (int i = first + tid; i < end; i += 4 * threads)
        {
            int i1 = i + threads, i2 = i1 + threads, i3 = i2 + threads;
            bool h1 = i1 < end, h2 = i2 < end, h3 = i3 < end;
            float v0 = c[i], v1 = h1 ? c[i1] : 0f, v2 = h2 ? c[i2] : 0f, v3 = h3 ? c[i3] : 0f;
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            if (hasSide)
            {
                s0 = s[i * sStride];
                s1 = h1 ? s[i1 * sStride] : 0f;
                s2 = h2 ? s[i2 * sStride] : 0f;
                s3 = h3 ? s[i3 * sStride] : 0f;
            }
            acc += map.Apply(v0);
            if (h1) acc += map.Apply(v1);
            if (h2) acc += map.Apply(v2);
            if (h3) acc += map.Apply(v3);
            if (hasSide)
            {
                c[i] = side.Apply(v0, s0);
                if (h1) c[i1] = side.Apply(v1, s1);
                if (h2) c[i2] = side.Apply(v2, s2);
                if (h3) c[i3] = side.Apply(v3, s3);
            }
        }
        // Reduce's group tree (threads is a power of two, checked by the launcher).
        sums[tid] = acc;
        Group.Barrier();
        for (int half = threads / 2; half > 0; half /= 2)
        {
            if (tid < half) sums[tid] += sums[tid + half];
            Group.Barrier();
        }
        if (tid == 0) loss[lossAt] = scale * sums[0];
    }
}