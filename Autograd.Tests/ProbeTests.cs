// The latency probes (Autograd.Kernels/Probes.cs) against their host twins. The bench times them to
// say where a tiny launch's time goes; a probe that stored the wrong thing (or none) would time a
// different kernel, so each result is checked here on the CPU simulators, over outputs poisoned first.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed class ProbeTests : IClassFixture<SimulatorsReleased>
{
    // Groups of 8 (two 4-lane warps), three multiprocessors: Barriers runs a grid of up to 3 groups.
    private static KernelHost Sim => Device.CpuSimulator(4, 2, 3).Host;

    private static MemoryBuffer1D<int, Stride1D.Dense> Poisoned(KernelHost host, int n)
    {
        var b = host.Accelerator.Allocate1D<int>(n);
        b.View.CopyFromCPU(Enumerable.Repeat(-7, n).ToArray());
        return b;
    }

    private static int[] Read(KernelHost host, MemoryBuffer1D<int, Stride1D.Dense> b)
    {
        host.Synchronize();
        return b.GetAsArray1D();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(33)]
    public void Touch_stores_one_mark_a_group(int groups)
    {
        var host = Sim;
        using var output = Poisoned(host, groups);
        Probes.Touch(host, output.View, groups);
        Read(host, output).Should().Equal(Probes.HostTouch(groups));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(65, 1)]
    [InlineData(130, 4)]
    [InlineData(33, 7)]
    public void Chase_follows_the_permutation_hops_times(int n, int hops)
    {
        var host = Sim;
        var rng = new Random(n * 31 + hops); // seeded: a failure must repeat
        var next = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
        using var nextBuffer = host.Accelerator.Allocate1D(next);
        using var output = Poisoned(host, n);
        Probes.Chase(host, nextBuffer.View, output.View, hops);
        Read(host, output).Should().Equal(Probes.HostChase(next, hops));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(7, 0)]
    [InlineData(65, 0)]
    [InlineData(7, 1)]
    [InlineData(65, 2)]
    public void CountIn_counts_every_group_and_leaves_the_count_at_zero(int groups, int fences)
    {
        var host = Sim;
        using var count = host.Accelerator.Allocate1D<int>(1);
        count.MemSetToZero();
        for (int launch = 0; launch < 3; launch++)
        {
            using var output = Poisoned(host, 1);
            Probes.CountIn(host, count.View, output.View, groups, fences);
            Read(host, output).Should().Equal([groups], "the last group to count in saw every group");
            Read(host, count).Should().Equal([0], "the last group zeroes the count for the next launch");
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 5)]
    public void Barriers_hold_every_group_until_all_arrive(int groups, int barriers)
    {
        var host = Sim;
        Probes.BarrierGroups(host).Should().Be(3, "the CPU accelerator runs one group a simulated multiprocessor");
        using var state = host.Accelerator.Allocate1D<int>(3);
        state.MemSetToZero();
        for (int launch = 0; launch < 2; launch++)
        {
            using var marks = Poisoned(host, 2 * groups);
            Probes.Barriers(host, state.View, marks.View, groups, barriers);
            var got = Read(host, marks);
            got[..groups].Should().AllBeEquivalentTo(barriers - 1, "each group's last mark is the last pair's number");
            got[groups..].Should().AllBeEquivalentTo(0, "no group passed a barrier before its neighbour arrived");
            Read(host, state)[2].Should().Be(0, "no barrier gave up");
        }
    }

    // The CPU accelerator has no inline PTX: whatever KernelHost.BarrierFence says, its barriers use
    // ILGPU's fences, and hold.
    [Fact]
    public void Barriers_on_the_CPU_use_ILGPUs_fences_whatever_the_host_says()
    {
        var host = Sim;
        var saved = host.BarrierFence;
        try
        {
            host.BarrierFence = BarrierFence.AcquireRelease;
            using var state = host.Accelerator.Allocate1D<int>(3);
            state.MemSetToZero();
            GridBarrier.For(host, state.View, 1000).Fences.Should().Be(BarrierFence.SequentiallyConsistent);
            using var marks = Poisoned(host, 6);
            Probes.Barriers(host, state.View, marks.View, 3, 4);
            Read(host, marks).Should().Equal([3, 3, 3, 0, 0, 0]);
        }
        finally
        {
            host.BarrierFence = saved;
        }
    }

    [Fact]
    public void AUTOGRAD_BARRIER_FENCE_chooses_the_barriers_fences_and_junk_is_refused()
    {
        using var env = new EnvironmentScope(KernelHost.BarrierFenceVariable);
        var acc = Sim.Accelerator;
        env.Set(null);
        new KernelHost(acc).BarrierFence.Should().Be(BarrierFence.SequentiallyConsistent, "unset: ILGPU's");
        env.Set("acqrel");
        var host = new KernelHost(acc);
        host.BarrierFence.Should().Be(BarrierFence.AcquireRelease);
        host.WithStream(acc.DefaultStream).BarrierFence.Should().Be(BarrierFence.AcquireRelease, "a view on another stream keeps the setting");
        env.Set("sc");
        new KernelHost(acc).BarrierFence.Should().Be(BarrierFence.SequentiallyConsistent);
        env.Set("light");
        FluentActions.Invoking(() => new KernelHost(acc)).Should().Throw<ArgumentException>().WithMessage("AUTOGRAD_BARRIER_FENCE=light: use sc*acqrel*");
    }

    // On CUDA the light fence is inline PTX in every kernel that holds a barrier (taken or not at run
    // time): it must survive ILGPU's PTX backend and ptxas as a fence that is not sequentially consistent.
    [Fact]
    public void Barrier_fences_acquire_release_in_PTX_and_SASS()
    {
        PtxCompileTests.PtxOf("Probes.BarriersKernel").Should().Contain("fence.acq_rel.gpu;").And.Contain("membar.gl;");
        PtxCompileTests.PtxOf("Probes.CountInKernel").Should().Contain("fence.acq_rel.gpu;").And.Contain("membar.gl;");
        var sass = SassTests.Opcodes("Probes.BarriersKernel");
        sass.Should().Contain("MEMBAR.SC.GPU", "ILGPU's fence, the default")
            .And.Contain("MEMBAR.ALL.GPU", "the acquire-release fence");
    }

    // On the card: the barrier holds with either fence (no group early, none gave up).
    [Fact]
    public void On_a_GPU_barriers_hold_with_either_fence()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulator runs the barrier tests above");
        var host = Device.Get("cuda").Host;
        var saved = host.BarrierFence;
        try
        {
            foreach (var fence in Enum.GetValues<BarrierFence>())
            {
                host.BarrierFence = fence;
                int groups = Probes.BarrierGroups(host);
                using var state = host.Accelerator.Allocate1D<int>(3);
                state.MemSetToZero();
                GridBarrier.For(host, state.View, PersistentProgram.GpuSpinLimit).Fences.Should().Be(fence);
                using var marks = Poisoned(host, 2 * groups);
                Probes.Barriers(host, state.View, marks.View, groups, 50);
                var got = Read(host, marks);
                got[..groups].Should().AllBeEquivalentTo(49, $"{fence}: each group's last mark");
                got[groups..].Should().AllBeEquivalentTo(0, $"{fence}: no group passed a barrier early");
                Read(host, state)[2].Should().Be(0, $"{fence}: no barrier gave up");
            }
        }
        finally
        {
            host.BarrierFence = saved;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void AsyncCopy_passes_each_chunk_through_shared_memory(int groups) => AsyncCopyShouldMatchItsTwin(Sim, groups);

    // `groups` chunks of random values copied through shared memory, over a NaN-poisoned output.
    private static void AsyncCopyShouldMatchItsTwin(KernelHost host, int groups)
    {
        int n = groups * 4 * host.GroupSize;
        var input = TestData.Normal(n, seed: groups);
        using var inputBuffer = host.Accelerator.Allocate1D(input);
        using var output = host.Accelerator.Allocate1D(Enumerable.Repeat(float.NaN, n).ToArray());
        Probes.AsyncCopy(host, inputBuffer.View, output.View);
        host.Synchronize();
        output.GetAsArray1D().Should().Equal(Probes.HostAsyncCopy(input, host.GroupSize));
    }

    // The way in for an SGEMM that stages its slices with cp.async: on a GPU the inline PTX must copy
    // what the plain loads would.
    [Fact]
    public void AsyncCopy_on_a_GPU_copies_what_plain_loads_would()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulator runs the plain-load path above, ptxas the PTX below");
        AsyncCopyShouldMatchItsTwin(Device.Get("cuda").Host, 33);
    }

    // On CUDA the copy is sm_80's cp.async, written as inline PTX that names ILGPU's dynamic shared
    // memory symbol: it must survive ILGPU's PTX backend and ptxas as an LDGSTS, the instruction that
    // copies global to shared without a register.
    [Fact]
    public void AsyncCopy_on_CUDA_is_an_LDGSTS_in_SASS()
    {
        PtxCompileTests.PtxOf("Probes.AsyncCopyKernel").Should().Contain("cp.async.cg.shared.global").And.Contain("__dyn_shared_alloca")
            .And.Contain(".extern .shared .align 16 .b8 __dyn_shared_alloca[]", "cp.async copies 16 bytes to a 16-byte aligned shared address");
        SassTests.Opcodes("Probes.AsyncCopyKernel").Should().Contain(o => o.StartsWith("LDGSTS", StringComparison.Ordinal))
            .And.Contain(o => o.StartsWith("LDGDEPBAR", StringComparison.Ordinal) || o.StartsWith("DEPBAR", StringComparison.Ordinal));
    }

    // The code-size probe: the same chains as straight-line code and as a loop, each against the
    // double twin. a = 0.999 keeps the chains far from their limit b / (1 - a) after 512 steps (a
    // chain cut to 256 steps ends ~40% lower), and float rounding within ~1e-5 of it.
    [CpuOnly]
    [Theory]
    [InlineData(true, 128, 0)]
    [InlineData(true, 512, 0)]
    [InlineData(true, 512, 1)]
    [InlineData(true, 512, 2)]
    [InlineData(false, 128, 0)]
    [InlineData(false, 7, 0)]
    public void Code_runs_the_chains_as_the_host_twin(bool straight, int depth, int copy)
    {
        var host = Sim;
        var x = TestData.Normal(33, seed: depth + (straight ? 1 : 0));
        const int threads = 65;
        using var xs = host.Accelerator.Allocate1D(x);
        using var output = host.Accelerator.Allocate1D(Enumerable.Repeat(float.NaN, threads).ToArray());
        Probes.Code(host, xs.View, output.View, 0.999f, 0.25f, depth, straight, copy);
        host.Synchronize();
        var got = output.GetAsArray1D();
        var want = Probes.HostCode(x, threads, 0.999f, 0.25f, depth);
        for (int i = 0; i < threads; i++)
            ((double)got[i]).Should().BeApproximately(want[i], 1e-4 * Math.Max(1, Math.Abs(want[i])), $"thread {i}, {(straight ? "straight" : "looped")} {depth}, copy {copy}");
    }

    // What the rows compare is code size at the same work: the straight kernels must stay unrolled
    // (a multiply-add an instruction, ~16 and ~64 KB) and the loop small.
    [CpuOnly]
    [Fact]
    public void Code_probe_is_straight_line_code_of_16_and_64_KB_against_a_loop_of_a_few()
    {
        var short16 = SassTests.Opcodes("Probes.StraightKernel<Depth128>");
        var long64 = SassTests.Opcodes("Probes.StraightKernel<Depth512>");
        // The copies the bench takes in turn: the same code, so the rows differ only in where it lies.
        SassTests.Opcodes("Probes.StraightKernel<Depth512B>").Should().Equal(long64);
        SassTests.Opcodes("Probes.StraightKernel<Depth512C>").Should().Equal(long64);
        var looped = SassTests.Opcodes("Probes.LoopedKernel");
        short16.Count(o => o == "FFMA").Should().Be(8 * 128, "8 chains x 128 steps, unrolled");
        long64.Count(o => o == "FFMA").Should().Be(8 * 512, "8 chains x 512 steps, unrolled");
        (16 * short16.Count).Should().BeInRange(16 * 1024, 20 * 1024, "bytes of SASS, 16 an instruction");
        (16 * long64.Count).Should().BeInRange(64 * 1024, 72 * 1024);
        (16 * looped.Count).Should().BeLessThan(4 * 1024, "a loop of 8 multiply-adds a trip, whatever ptxas unrolls");
        looped.Should().Contain(o => o.StartsWith("BRA", StringComparison.Ordinal), "a loop");
    }

    [Fact]
    public void Probes_refuse_sizes_that_do_not_match_naming_the_probe()
    {
        var host = Sim;
        using var one = host.Accelerator.Allocate1D<int>(1);
        using var three = host.Accelerator.Allocate1D<int>(3);
        using var eight = host.Accelerator.Allocate1D<int>(8);
        FluentActions.Invoking(() => Probes.Touch(host, three.View, 2)).Should().Throw<ArgumentException>().WithMessage("Probes.Touch: 2 groups*");
        using var four = host.Accelerator.Allocate1D<float>(4);
        using var none = host.Accelerator.Allocate1D<float>(0);
        FluentActions.Invoking(() => Probes.Code(host, four.View, four.View, 0.5f, 0.25f, 100, straight: true)).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("Probes.Code: straight-line code is built for 128 or 512 steps*");
        FluentActions.Invoking(() => Probes.Code(host, four.View, four.View, 0.5f, 0.25f, 0, straight: false)).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => Probes.Code(host, four.View, four.View, 0.5f, 0.25f, 128, straight: true, copy: 1)).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("Probes.Code: the 512-step straight kernel has copies 0, 1 and 2*");
        FluentActions.Invoking(() => Probes.Code(host, four.View, four.View, 0.5f, 0.25f, 512, straight: true, copy: 3)).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => Probes.Code(host, none.View, four.View, 0.5f, 0.25f, 128, straight: true)).Should().Throw<ArgumentException>().WithMessage("Probes.Code: x (0)*");
        FluentActions.Invoking(() => Probes.Chase(host, three.View, one.View, 1)).Should().Throw<ArgumentException>().WithMessage("Probes.Chase:*same n*");
        FluentActions.Invoking(() => Probes.Chase(host, one.View, one.View, 0)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("Probes.Chase: hops*");
        FluentActions.Invoking(() => Probes.CountIn(host, three.View, one.View, 2)).Should().Throw<ArgumentException>().WithMessage("Probes.CountIn:*");
        FluentActions.Invoking(() => Probes.CountIn(host, one.View, one.View, 2, 3)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("Probes.CountIn: fences is 0*");
        FluentActions.Invoking(() => Probes.Barriers(host, three.View, eight.View, 4, 1)).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("Probes.Barriers: the grid must hold 1 to 3 groups*");
        FluentActions.Invoking(() => Probes.Barriers(host, one.View, eight.View, 3, 1)).Should().Throw<ArgumentException>().WithMessage("Probes.Barriers: state takes 3*");
        using var floats = host.Accelerator.Allocate1D<float>(64);
        FluentActions.Invoking(() => Probes.AsyncCopy(host, floats.View.SubView(0, 40), floats.View.SubView(0, 40))).Should().Throw<ArgumentException>()
            .WithMessage("Probes.AsyncCopy:*multiple of 4 x the group size (32)*");
        FluentActions.Invoking(() => Probes.AsyncCopy(host, floats.View.SubView(1, 32), floats.View.SubView(32, 32))).Should().Throw<ArgumentException>()
            .WithMessage("Probes.AsyncCopy: cp.async copies 16 bytes from a 16-byte aligned address*");
    }
}
