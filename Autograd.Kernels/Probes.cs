// Latency probes: kernels that do almost nothing, so the bench can say where a tiny launch's time goes.
//
// Why: inside a CUDA graph an empty kernel costs ~1.0 us on an H100 (ilgpu-facts.md), but the seed's
// smallest products (64x10x100, 64x100x10: a few thousand multiply-adds) take 4.2-4.4 us each in the
// same setting (run 8's tuning tables), and y's launch with its loss tail 7.2. The step's 35 us is
// those launches, so the ~3 us between a node's floor and a tiny product is the part to find. Each
// probe below is one of the things a tiny product's launch does, alone:
//   Touch:   a launch and one store a group: the graph node's floor for a grid of this size.
//   Chase:   `hops` loads a thread, each address read by the one before: memory round trips in a row.
//   CountIn: every group fences and counts itself in with an atomic, the last resets the count (the
//            product tail's and split-K's skeleton, ProductTail.cs), without the sum; with the
//            tail's fences (every thread's), or thread 0's alone, or thread 0's acquire-release.
//   Barriers: a grid of resident groups passing `barriers` GridBarriers (the persistent kernel's;
//            fenced as KernelHost.BarrierFence says).
//   Code:    the same multiply-adds as straight-line code and as a loop: what cold code costs
//            (Probes.Code.cs).
//   AsyncCopy: each thread copies 16 bytes from global memory into shared memory with sm_80's
//            cp.async (inline PTX), which ILGPU has no API for: a check that the way in works,
//            before an SGEMM stages its slices so (PERF.md, "cp.async from ILGPU").
//
// cp.async needs two addresses ILGPU does not hand a kernel: the global one comes from the host
// (the view's device pointer, a kernel argument) and the shared one from the symbol ILGPU's PTX
// backend gives a kernel's dynamic shared memory, __dyn_shared_alloca (PTXCodeGenerator.cs in
// ILGPU 1.5.3; the kernel must take its shared memory with SharedMemory.GetDynamic for the symbol to
// exist). Elsewhere (the CPU accelerator) the kernel copies with plain loads and stores.
// The bench times each inside a CUDA graph (Workloads.Floors.cs); differences between rows are the
// costs: Chase(4) - Chase(1) is three round trips, Barriers of 5 pairs - Barriers of 1 pair eight barriers.
//
// Each launcher checks its sizes; ProbeTests checks each kernel against its host twin below.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet.Kernels;

/// <summary>Kernels that do almost nothing, timed by the bench to say what a launch, a memory round trip, a count-in and a grid barrier cost.</summary>
public static partial class Probes
{
    // ---- kernels ----

    // Thread 0 of each group stores group + 1: nothing else, so the launch is all there is to time.
    internal static void TouchKernel(
        ArrayView<int> output) // (groups)
    {
        if (Group.IdxX == 0) output[Grid.IdxX] = Grid.IdxX + 1;
    }

    // Thread i follows `next` from i for `hops` loads, each one's address the value of the one before,
    // and stores where it ends: `hops` memory round trips that cannot overlap.
    internal static void ChaseKernel(
        ArrayView<int> next,   // (n) a permutation of 0..n-1
        ArrayView<int> output, // (n)
        int hops)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= output.Length) return;
        int j = i;
        for (int h = 0; h < hops; h++) j = next[j];
        output[i] = j;
    }

    // Every group counts itself in after a fence; the group that counts last fences again, zeroes the
    // count for the next launch and stores how many it saw: ProductTail's SumTail before its sum.
    // fences picks them: 0 as SumTail has them (every thread fences, ILGPU's sequentially consistent
    // fence), 1 thread 0 alone after the group's barrier (the grid barrier's way), 2 as 1 with
    // acquire-release fences (inline PTX on CUDA; ILGPU's elsewhere).
    internal static void CountInKernel(
        ArrayView<int> count,  // (1) groups in so far, 0 between launches
        ArrayView<int> output, // (1) groups the last one counted
        int fences)
    {
        var last = SharedMemory.Allocate<int>(1);
        int tid = Group.IdxX;
        if (fences == 0) MemoryFence.DeviceLevel();
        Group.Barrier();
        if (tid == 0)
        {
            if (fences != 0) GridBarrier.DeviceFence(fences == 2);
            last[0] = Atomic.Add(ref count[0], 1) == Grid.DimX - 1 ? 1 : 0;
        }
        Group.Barrier();
        if (last[0] == 0) return;
        if (fences == 0) MemoryFence.DeviceLevel();
        else if (tid == 0) GridBarrier.DeviceFence(fences == 2);
        if (tid == 0)
        {
            output[0] = Grid.DimX;
            count[0] = 0;
        }
    }

    // Groups pass `barriers` pairs of grid barriers. Before the first of pair b, group g stores b at g;
    // after it, group g reads group g + 1's and counts a mismatch: a barrier that let a group through
    // early shows as a count above 0.
    internal static void BarriersKernel(
        ArrayView<int> marks,  // (2 * groups): each group's last mark, then its mismatches
        GridBarrier barrier,   // over this grid, whose groups are all resident
        int barriers)
    {
        int g = Grid.IdxX, groups = Grid.DimX;
        int wrong = 0;
        for (int b = 0; b < barriers; b++)
        {
            if (Group.IdxX == 0) marks[g] = b;
            barrier.Wait();
            if (Group.IdxX == 0 && marks[(g + 1) % groups] != b) wrong++;
            // Nobody marks b + 1 before everyone has read b: the second barrier of the pair.
            barrier.Wait();
        }
        if (Group.IdxX == 0) marks[groups + g] = wrong;
    }

    // Each group copies its chunk of 4 x GroupSize floats into dynamic shared memory, 16 bytes a
    // thread (cp.async on CUDA), waits for it, then stores the chunk rotated by one thread's four:
    // every thread writes what another thread copied in, so the values went through shared memory.
    internal static void AsyncCopyKernel(
        ArrayView<float> input,  // (n), n a multiple of 4 x the group size; 16-byte aligned
        ArrayView<float> output, // (n)
        long inputAddress)       // input's device address (CUDA; unused elsewhere)
    {
        // Taken as Float4s so that ILGPU declares the symbol 16-byte aligned, as cp.async's 16-byte copies need.
        var tile = SharedMemory.GetDynamic<MatMulKernels.Float4>().Cast<float>(); // (4 x group size)
        int t = Group.IdxX, chunk = 4 * Group.DimX, start = Grid.IdxX * chunk;
        if (CudaAsm.IsSupported)
        {
            MatMulKernels.CopyAsync16(16 * t, inputAddress + 4L * (start + 4 * t));
            MatMulKernels.CommitCopies();
            MatMulKernels.WaitAllCopies();
        }
        else
        {
            for (int i = 0; i < 4; i++) tile[4 * t + i] = input[start + 4 * t + i];
        }
        Group.Barrier();
        int from = 4 * ((t + 1) % Group.DimX);
        for (int i = 0; i < 4; i++) output[start + 4 * t + i] = tile[from + i];
    }

    // ---- launchers ----

    /// <summary>Launches `groups` groups of the host's group size; thread 0 of group g stores g + 1 at output[g].</summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="output">(groups).</param>
    /// <param name="groups">Groups of the launch (at least 1).</param>
    public static void Touch(KernelHost host, ArrayView<int> output, int groups)
    {
        if (groups < 1 || output.Length != groups)
            throw new ArgumentException($"Probes.Touch: {groups} groups need an output of {groups} elements (at least 1), not {output.Length}.");
        var k = host.Load("ProbeTouch", null, acc => acc.LoadKernel<ArrayView<int>>(TouchKernel));
        k(host.Stream, new KernelConfig(groups, host.GroupSize), output);
    }

    /// <summary>output[i] = next applied `hops` times to i, one thread an element: `hops` dependent loads a thread.</summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="next">(n) a permutation of 0..n-1 (indices outside it are refused).</param>
    /// <param name="output">(n).</param>
    /// <param name="hops">Loads a thread, at least 1.</param>
    public static void Chase(KernelHost host, ArrayView<int> next, ArrayView<int> output, int hops)
    {
        if (next.Length != output.Length || next.Length == 0)
            throw new ArgumentException($"Probes.Chase: next has {next.Length} elements and output {output.Length}; both need the same n > 0.");
        if (hops < 1) throw new ArgumentOutOfRangeException(nameof(hops), hops, "Probes.Chase: hops must be at least 1.");
        int n = (int)output.Length, gs = host.GroupSize;
        var k = host.Load("ProbeChase", null, acc => acc.LoadKernel<ArrayView<int>, ArrayView<int>, int>(ChaseKernel));
        k(host.Stream, new KernelConfig((n + gs - 1) / gs, gs), next, output, hops);
    }

    /// <summary>`groups` groups count themselves in; the last stores the count at output[0] and zeroes count[0].</summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="count">(1), 0 before the first launch; 0 again after each.</param>
    /// <param name="output">(1).</param>
    /// <param name="groups">Groups of the launch (at least 1).</param>
    /// <param name="fences">
    /// 0: every thread fences, as ProductTail's SumTail does; 1: thread 0 alone after the group's
    /// barrier; 2: as 1, with acquire-release fences on CUDA.
    /// </param>
    public static void CountIn(KernelHost host, ArrayView<int> count, ArrayView<int> output, int groups, int fences = 0)
    {
        if (count.Length != 1 || output.Length != 1 || groups < 1)
            throw new ArgumentException($"Probes.CountIn: count and output take 1 element each (got {count.Length} and {output.Length}) and groups at least 1 (got {groups}).");
        if (fences is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(fences), fences, "Probes.CountIn: fences is 0 (every thread), 1 (thread 0) or 2 (thread 0, acquire-release).");
        var k = host.Load("ProbeCountIn", null, acc => acc.LoadKernel<ArrayView<int>, ArrayView<int>, int>(CountInKernel));
        k(host.Stream, new KernelConfig(groups, host.GroupSize), count, output, fences);
    }

    /// <summary>Groups that can all be resident at once for Barriers: the most its grid may hold.</summary>
    /// <param name="host">The accelerator's kernels.</param>
    public static int BarrierGroups(KernelHost host) => host.ResidentGroups(host.Peek("ProbeBarriers", null, null, LoadBarriers));

    /// <summary>
    /// `groups` resident groups pass 2 x `barriers` grid barriers; marks[groups + g] is how many times
    /// group g found its neighbour behind (0 when the barrier holds).
    /// </summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="state">(3) the barrier's state, zero before the first launch (it is left reusable).</param>
    /// <param name="marks">(2 * groups).</param>
    /// <param name="groups">Groups of the launch: 1 to BarrierGroups(host).</param>
    /// <param name="barriers">Pairs of barriers, at least 1.</param>
    public static void Barriers(KernelHost host, ArrayView<int> state, ArrayView<int> marks, int groups, int barriers)
    {
        int resident = BarrierGroups(host);
        if (groups < 1 || groups > resident)
            throw new ArgumentOutOfRangeException(nameof(groups), groups,
                $"Probes.Barriers: the grid must hold 1 to {resident} groups (all resident at once), or its barriers never return.");
        if (state.Length != 3 || marks.Length != 2 * groups || barriers < 1)
            throw new ArgumentException($"Probes.Barriers: state takes 3 elements (got {state.Length}), marks 2 x {groups} (got {marks.Length}), barriers at least 1 (got {barriers}).");
        var barrier = GridBarrier.For(host, state);
        host.Load("ProbeBarriers", null, null, LoadBarriers)(host.Stream, new KernelConfig(groups, host.GroupSize), marks, barrier, barriers);
    }

    private static Action<AcceleratorStream, KernelConfig, ArrayView<int>, GridBarrier, int> LoadBarriers(Accelerator acc) =>
        acc.LoadKernel<ArrayView<int>, GridBarrier, int>(BarriersKernel);

    /// <summary>
    /// Each group copies its 4 x GroupSize floats of input into shared memory (cp.async on CUDA) and
    /// stores them to output rotated by 4 within the chunk: output[c + i] = input[c + (i + 4) mod chunk].
    /// </summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="input">(n), n a positive multiple of 4 x the group size, 16-byte aligned.</param>
    /// <param name="output">(n).</param>
    public static void AsyncCopy(KernelHost host, ArrayView<float> input, ArrayView<float> output)
    {
        int chunk = 4 * host.GroupSize;
        if (input.Length != output.Length || input.Length == 0 || input.Length % chunk != 0)
            throw new ArgumentException($"Probes.AsyncCopy: input ({input.Length}) and output ({output.Length}) need the same length, a positive multiple of 4 x the group size ({chunk}).");
        long address = input.LoadEffectiveAddressAsPtr().ToInt64();
        if ((address & 15) != 0)
            throw new ArgumentException("Probes.AsyncCopy: cp.async copies 16 bytes from a 16-byte aligned address; start input on a multiple of 4 floats of its buffer.");
        var k = host.Load("ProbeAsyncCopy", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, long>(AsyncCopyKernel));
        k(host.Stream, new KernelConfig((int)(input.Length / chunk), host.GroupSize, SharedMemoryConfig.RequestDynamic<MatMulKernels.Float4>(host.GroupSize)), input, output, address);
    }

    // ---- host twins ----

    /// <summary>What Touch stores: g + 1 at g.</summary>
    /// <param name="groups">Groups of the launch.</param>
    public static int[] HostTouch(int groups) => Enumerable.Range(1, groups).ToArray();

    /// <summary>What Chase stores: next applied hops times to each index.</summary>
    /// <param name="next">The permutation.</param>
    /// <param name="hops">Loads a thread.</param>
    public static int[] HostChase(int[] next, int hops)
    {
        var output = new int[next.Length];
        for (int i = 0; i < next.Length; i++)
        {
            int j = i;
            for (int h = 0; h < hops; h++) j = next[j];
            output[i] = j;
        }
        return output;
    }

    /// <summary>What AsyncCopy stores: each chunk of 4 x groupSize rotated by 4.</summary>
    /// <param name="input">The input.</param>
    /// <param name="groupSize">Threads a group.</param>
    public static float[] HostAsyncCopy(float[] input, int groupSize)
    {
        int chunk = 4 * groupSize;
        var output = new float[input.Length];
        for (int c = 0; c < input.Length; c += chunk)
            for (int i = 0; i < chunk; i++) output[c + i] = input[c + (i + 4) % chunk];
        return output;
    }
}
