// The floors: what a launch, a memory round trip, a count-in, a grid barrier and cold code cost on this device,
// each alone (Autograd.Kernels/Probes.cs), so the seed step's launches can be read against them.
//
// Why: issue #3 asks where the step's time goes when it misses 15 us. Runs 6-8 gave each launch's
// time (CompiledStep.Profile) but not what a launch of that grid costs with nothing in it, nor what
// one trip to memory or one count-in adds inside a kernel: a tiny product (64x10x100) took 4.2 us
// against an empty kernel's ~1.0 in a graph of 500 (H100, ilgpu-facts.md). Each row here is one of a
// tiny product's parts; differences between rows are the costs (PERF.md, "The floors").
//
// On CUDA each row is 100 launches captured in one CUDA graph and replayed, as a compiled step runs
// them; elsewhere the launches are direct (and the figures say only that the probes run).
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Bench;

public static partial class Workloads
{
    /// <summary>The seed's hidden activations, 64 x 100: the thread count of the Chase rows.</summary>
    private const int FloorThreads = 6400;

    /// <summary>
    /// Times each probe (a launch of 1 group and of a full grid, 1 and 4 dependent loads a thread, a
    /// count-in of a full grid, a resident grid through 1 and 5 pairs of barriers with each fence the
    /// device allows, a copy into shared memory with cp.async), each checked against
    /// its host twin first, and returns the rows and a one-line reading (the differences between rows).
    /// </summary>
    public static (List<Result> Rows, string Reading) Floors(Device d)
    {
        var h = d.Kernels;
        var acc = h.Accelerator;
        var rows = new List<Result>();
        int full = h.MaxGroups, resident = Probes.BarrierGroups(h);
        bool cuda = acc is ILGPU.Runtime.Cuda.CudaAccelerator;
        // The CPU accelerator's launches wake threads for ~0.1 ms and its rows say only that the probes run: a few will do.
        int reps = cuda ? 100 : 3;

        double Row(string name, Action<KernelHost> launch, Action check, string checkText)
        {
            launch(h);
            h.Synchronize();
            check();
            double us = GraphedMicroseconds(d, launch, reps);
            rows.Add(new Result($"floor: {name}", us, null, null, checkText));
            return us;
        }

        double Touch(int groups)
        {
            using var output = acc.Allocate1D<int>(groups);
            output.MemSetToZero();
            return Row($"launch of {groups} group{(groups == 1 ? "" : "s")} of {h.GroupSize}, one store a group", x => Probes.Touch(x, output.View, groups),
                () => Expect(output.GetAsArray1D(), Probes.HostTouch(groups), "Touch"), "every group's mark");
        }

        var next = Enumerable.Range(0, FloorThreads).OrderBy(i => (i * 2654435761u) % 1000003u).ToArray();
        using var nextBuffer = acc.Allocate1D(next);
        double Chase(int hops)
        {
            using var output = acc.Allocate1D<int>(FloorThreads);
            output.MemSetToZero();
            return Row($"{hops} dependent load{(hops == 1 ? "" : "s")} a thread, {FloorThreads} threads", x => Probes.Chase(x, nextBuffer.View, output.View, hops),
                () => Expect(output.GetAsArray1D(), Probes.HostChase(next, hops), "Chase"), $"{FloorThreads} ends of the chase");
        }

        double CountIn(int groups, int fences)
        {
            using var count = acc.Allocate1D<int>(1);
            using var output = acc.Allocate1D<int>(1);
            count.MemSetToZero();
            output.MemSetToZero();
            string how = fences switch { 0 => "every thread's fences, as the tail", 1 => "thread 0's fences", _ => "thread 0's acquire-release fences" };
            return Row($"count-in of {groups} groups (a product tail without its sum), {how}", x => Probes.CountIn(x, count.View, output.View, groups, fences),
                () => Expect([.. output.GetAsArray1D(), .. count.GetAsArray1D()], [groups, 0], "CountIn"), "the last group counted them all and reset the count");
        }

        double Barriers(int pairs, BarrierFence fence)
        {
            using var state = acc.Allocate1D<int>(3);
            using var marks = acc.Allocate1D<int>(2 * resident);
            state.MemSetToZero();
            marks.MemSetToZero();
            var want = Enumerable.Repeat(pairs - 1, resident).Concat(Enumerable.Repeat(0, resident)).Append(0).ToArray();
            var saved = h.BarrierFence;
            h.BarrierFence = fence;
            try
            {
                return Row($"{resident} resident groups through {2 * pairs} grid barriers ({Fences(fence)})", x => Probes.Barriers(x, state.View, marks.View, resident, pairs),
                    () => Expect([.. marks.GetAsArray1D(), state.GetAsArray1D()[2]], want, "Barriers"), "no group early, no barrier gave up");
            }
            finally
            {
                h.BarrierFence = saved;
            }
        }

        // cp.async (inline PTX) into shared memory, 16 bytes a thread: the way in for an SGEMM's slices; the check is the point.
        void AsyncCopy(int groups)
        {
            int n = groups * 4 * h.GroupSize;
            var input = Enumerable.Range(0, n).Select(i => (float)Math.Sin(i)).ToArray();
            using var inputBuffer = acc.Allocate1D(input);
            using var output = acc.Allocate1D<float>(n);
            output.MemSetToZero();
            Row($"copy of 16 bytes a thread into shared memory ({(cuda ? "cp.async" : "plain loads")}), {groups} groups",
                x => Probes.AsyncCopy(x, inputBuffer.View, output.View),
                () => Expect(output.GetAsArray1D(), Probes.HostAsyncCopy(input, h.GroupSize), "AsyncCopy"), "every element through shared memory");
        }

        // The same multiply-adds a thread as straight-line code (~17 or ~65 KB of SASS) and as a loop
        // (~2 KB), one group a multiprocessor (each fetches the code; more groups would only add
        // multiply-adds). The 65 KB kernel once as the same copy each launch and once as its three
        // copies in turn (~195 KB, as the step's nodes): their difference is what cold code costs a
        // launch (Probes.Code.cs).
        int sms = Math.Max(1, acc.NumMultiprocessors);
        double Code(int depth, bool straight, bool inTurn = false)
        {
            int threads = sms * h.GroupSize, next = 0;
            var x = Enumerable.Range(0, 1024).Select(i => (float)Math.Sin(i)).ToArray();
            using var xs = acc.Allocate1D(x);
            using var output = acc.Allocate1D<float>(threads);
            output.MemSetToZero();
            string form = !straight ? "a loop (~2 KB of code)"
                : $"straight-line code (~{(8 * depth + 72) * 16 / 1024} KB), " + (inTurn ? "three copies in turn" : "the same copy each launch");
            return Row($"{8 * depth} multiply-adds a thread, {form}, {sms} groups",
                x2 => Probes.Code(x2, xs.View, output.View, 0.999f, 0.25f, depth, straight, inTurn ? next++ % 3 : 0),
                () => ExpectClose(output.GetAsArray1D(), Probes.HostCode(x, threads, 0.999f, 0.25f, depth), "Code"), $"{threads} sums of 8 chains against a double twin");
        }

        double one = Touch(1), grid = Touch(full);
        double hop1 = Chase(1), hop4 = Chase(4);
        double count = CountIn(full, 0);
        double countOne = CountIn(full, 1);
        double countLight = cuda ? CountIn(full, 2) : double.NaN;
        // Each fence a barrier can have (KernelHost.BarrierFence); the CPU accelerator has ILGPU's only.
        var barriers = new List<string>();
        foreach (var fence in cuda ? Enum.GetValues<BarrierFence>() : [BarrierFence.SequentiallyConsistent])
        {
            double pair1 = Barriers(1, fence), pair5 = Barriers(5, fence);
            barriers.Add($"{(pair5 - pair1) / 8:F2} us ({Fences(fence)})");
        }
        AsyncCopy(full);
        double loop65 = Code(512, false), warm65 = Code(512, true), cold65 = Code(512, true, inTurn: true);
        double loop17 = Code(128, false), warm17 = Code(128, true);
        string reading = $"floors on {d.Name}: launch {one:F2} us (1 group), {grid:F2} us ({full} groups); " +
            $"a dependent load {(hop4 - hop1) / 3:F2} us; a count-in {count - grid:F2} us over its launch " +
            $"({countOne - grid:F2} with thread 0's fences, {countLight - grid:F2} acquire-release); " +
            $"a grid barrier {string.Join(", ", barriers)}; " +
            $"cold code {cold65 - warm65:F2} us a launch of ~65 KB (three copies in turn minus the same copy), warm {warm65 - loop65:F2} (the same copy minus a loop), " +
            $"~17 KB warm {warm17 - loop17:F2}";
        return (rows, reading);
    }

    private static string Fences(BarrierFence fence) => fence == BarrierFence.AcquireRelease ? "acquire-release fences" : "ILGPU's fences";

    private static void ExpectClose(float[] got, double[] want, string probe)
    {
        if (got.Length != want.Length) throw new InvalidOperationException($"floor probe {probe}: {got.Length} values, expected {want.Length}");
        for (int i = 0; i < got.Length; i++)
            if (!(Math.Abs(got[i] - want[i]) <= 1e-4 * Math.Max(1, Math.Abs(want[i]))))
                throw new InvalidOperationException($"floor probe {probe}: element {i} is {got[i]}, expected {want[i]:G9}");
    }

    private static void Expect<T>(T[] got, T[] want, string probe) where T : IEquatable<T>
    {
        if (got.Length != want.Length) throw new InvalidOperationException($"floor probe {probe}: {got.Length} values, expected {want.Length}");
        for (int i = 0; i < got.Length; i++)
            if (!got[i].Equals(want[i])) throw new InvalidOperationException($"floor probe {probe}: element {i} is {got[i]}, expected {want[i]}");
    }
}
