// The persistent step kernel (Autograd.Kernels/Persistent.cs): a compiled step's launches as the
// phases of one kernel with a grid barrier between them. Each phase strides over its work by the
// grid's groups and sums in an order fixed by the thread, team and slice, so the persistent step
// must give the bits of the step's own launches. On the CPU accelerator a simulator with two
// multiprocessors runs a grid of two groups, so every barrier is a real wait between threads.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class PersistentTests
{
    // Groups of 4 threads (two 2-lane warps; the tiled kernel's 2x2 group), two multiprocessors.
    private static Device Sim => Device.CpuSimulator(2, 2, 2);

    private sealed record Trained(float[] Losses, float[] W1, float[] W2, string Describe, bool Persistent, long Launches);

    // A two-layer net of awkward shapes trained `steps` steps by Run(steps) and two more by Run(),
    // compiled with the persistent kernel or without.
    private static Trained Train(Device dev, MatMulPath path, bool persistent, int? splitK = null,
        int batch = 33, int inputs = 65, int hidden = 130, int outputs = 7, int steps = 4)
    {
        var host = dev.Host;
        bool saved = host.PersistentSteps;
        using var pin = new MatMulPin(host, path, splitK: splitK);
        host.PersistentSteps = persistent;
        try
        {
            Tensor.ManualSeed(41);
            using var x = Tensor.Randn([batch, inputs], dev);
            using var y = Tensor.Randn([batch, outputs], dev);
            using var w1 = Tensor.Randn([inputs, hidden], dev, requiresGrad: true);
            using var w2 = Tensor.Randn([hidden, outputs], dev, requiresGrad: true);
            using var opt = new Sgd([w1, w2], 1e-5f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            var losses = step.Run(steps: steps).ToArray().ToList();
            losses.Add(step.Run().Item());
            losses.Add(step.Run().Item());
            return new Trained(losses.ToArray(), w1.ToArray(), w2.ToArray(), step.Describe(), step.IsPersistent, step.LaunchesPerStep);
        }
        finally
        {
            host.PersistentSteps = saved;
        }
    }

    [Theory]
    [InlineData(MatMulPath.Warp, null)]
    [InlineData(MatMulPath.Tiled, null)]
    [InlineData(MatMulPath.Tiled, 3)]
    public void Persistent_step_gives_the_bits_of_its_launches(MatMulPath path, int? splitK)
    {
        var launches = Train(Sim, path, persistent: false, splitK);
        var persistent = Train(Sim, path, persistent: true, splitK);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Launches.Should().Be(1, persistent.Describe);
        launches.Launches.Should().Be(4, launches.Describe);
        // h; y with the loss and its gradient; dH; the two gradient products with their updates.
        string kernel = path == MatMulPath.Warp ? "Warp" : "Tiled";
        persistent.Describe.Should().Contain($"Persistent: 4 phases ({kernel}, {kernel} + sum, {kernel}, {kernel} pair), 3 grid barriers, 2 groups of 4");
        launches.Describe.Should().NotContain("Persistent");
        persistent.Losses.Should().Equal(launches.Losses, "each phase sums in its launch's order, whatever the grid");
        persistent.W1.Should().Equal(launches.W1);
        persistent.W2.Should().Equal(launches.W2);
        persistent.Losses[^1].Should().BeLessThan(persistent.Losses[0], "the net trains");
    }

    // On a GPU: the grid is as many groups as the driver says fit at once, the barrier is the GPU's
    // atomics and fences, and each step is a node of a CUDA graph. Auto follows the tuned table, whose
    // choices may include a launch that is not a phase (then the step must say so and keep its launches).
    [Theory]
    [InlineData(MatMulPath.Warp)]
    [InlineData(MatMulPath.Tiled)]
    [InlineData(MatMulPath.Auto)]
    public void Persistent_seed_step_on_a_GPU_gives_the_bits_of_its_launches(MatMulPath path)
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulators run the same test above");
        var dev = Device.Get("cuda");
        var launches = Train(dev, path, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
        var persistent = Train(dev, path, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
        if (path != MatMulPath.Auto) persistent.Persistent.Should().BeTrue(persistent.Describe);
        if (!persistent.Persistent)
        {
            persistent.Describe.Should().Contain("Persistent: refused, ");
            return;
        }
        persistent.Launches.Should().Be(1);
        persistent.Losses.Should().Equal(launches.Losses, persistent.Describe);
        persistent.W1.Should().Equal(launches.W1);
        persistent.W2.Should().Equal(launches.W2);
    }

    // The seed's own shapes (64, 1000, 100, 10) for two steps: the tiled products split K there.
    [Fact]
    public void Persistent_seed_step_gives_the_bits_of_its_launches()
    {
        var launches = Train(Sim, MatMulPath.Tiled, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 1);
        var persistent = Train(Sim, MatMulPath.Tiled, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 1);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Losses.Should().Equal(launches.Losses);
        persistent.W1.Should().Equal(launches.W1);
        persistent.W2.Should().Equal(launches.W2);
    }

    // A new learning rate is baked into the recorded phases: the program is recorded again.
    [Fact]
    public void Persistent_step_follows_a_new_learning_rate()
    {
        float[] Run(bool persistent)
        {
            var dev = Sim;
            bool saved = dev.Host.PersistentSteps;
            using var pin = new MatMulPin(dev.Host, MatMulPath.Warp);
            dev.Host.PersistentSteps = persistent;
            try
            {
                Tensor.ManualSeed(43);
                using var x = Tensor.Randn([7, 33], dev);
                using var y = Tensor.Randn([7, 5], dev);
                using var w1 = Tensor.Randn([33, 17], dev, requiresGrad: true);
                using var w2 = Tensor.Randn([17, 5], dev, requiresGrad: true);
                using var opt = new Sgd([w1, w2], 1e-3f);
                using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
                step.Run(steps: 2);
                opt.LearningRate = 5e-3f;
                var losses = step.Run(steps: 3).ToArray();
                long before = dev.Host.Launches;
                losses = [.. losses, .. step.Run(steps: 3).ToArray()];
                step.IsPersistent.Should().Be(persistent);
                // Run(steps: 3) on a persistent step is one launch: the step three times with a barrier after each.
                if (persistent) (dev.Host.Launches - before).Should().Be(1, step.Describe());
                return [.. losses, .. w1.ToArray()];
            }
            finally
            {
                dev.Host.PersistentSteps = saved;
            }
        }
        Run(persistent: true).Should().Equal(Run(persistent: false));
    }

    // A launch that cannot be a phase (here the bias gradient's batch sum) keeps the step on its
    // launches, and Describe says which.
    [Fact]
    public void A_step_with_a_launch_that_is_not_a_phase_keeps_its_launches()
    {
        var dev = Sim;
        bool saved = dev.Host.PersistentSteps;
        using var pin = new MatMulPin(dev.Host, MatMulPath.Warp);
        dev.Host.PersistentSteps = true;
        try
        {
            Tensor.ManualSeed(44);
            using var x = Tensor.Randn([7, 33], dev);
            using var y = Tensor.Randn([7, 5], dev);
            using var w = Tensor.Randn([33, 5], dev, requiresGrad: true);
            using var b = Tensor.Randn([5], dev, requiresGrad: true);
            using var opt = new Sgd([w, b], 1e-3f);
            using var step = Graph.Compile(() => (x.MatMul(w).Add(b).Tanh() - y).Pow(2).Sum(), opt);
            var first = step.Run().Item();
            step.Run().Item().Should().BeLessThan(first);
            step.IsPersistent.Should().BeFalse();
            step.Describe().Should().Contain("Persistent: refused, ").And.Contain("cannot run as a phase of the persistent kernel")
                .And.Contain("the step replays its launches");
            step.LaunchesPerStep.Should().BeGreaterThan(1);
        }
        finally
        {
            dev.Host.PersistentSteps = saved;
        }
    }

    [Fact]
    public void The_cpu_device_runs_host_loops_and_refuses_the_persistent_kernel()
    {
        var dev = Device.Cpu;
        bool saved = dev.Host.PersistentSteps;
        dev.Host.PersistentSteps = true;
        try
        {
            Tensor.ManualSeed(45);
            var (x, y) = (Tensor.Randn([64, 1000], dev), Tensor.Randn([64, 10], dev));
            var (w1, w2) = (Tensor.Randn([1000, 100], dev, requiresGrad: true), Tensor.Randn([100, 10], dev, requiresGrad: true));
            using var opt = new Sgd([w1, w2], 1e-6f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            step.Run();
            step.IsPersistent.Should().BeFalse();
            step.Describe().Should().Contain("Persistent: refused, the host runs host loops");
            foreach (var t in new[] { x, y, w1, w2 }) t.Dispose();
        }
        finally
        {
            dev.Host.PersistentSteps = saved;
        }
    }

    // A grid with more groups than run at once: the first groups wait on a barrier for a group that
    // starts only when one of them ends. The guard gives up, marks the run, and the host's counters
    // are zeroed so the next launches are right.
    [Fact]
    public void A_barrier_over_groups_that_are_not_resident_gives_up_and_says_so()
    {
        var host = Sim.Host;
        using var pin = new MatMulPin(host, MatMulPath.Warp);
        Tensor.ManualSeed(46);
        using var a = Tensor.Randn([9, 13], Sim);
        using var b = Tensor.Randn([13, 6], Sim);
        using var c = Tensor.Full([9, 6], float.NaN, Sim);
        using var d = Tensor.Full([9, 6], float.NaN, Sim);
        void Record(KernelHost h)
        {
            MatMulKernels.MatMul(h, a.View, false, b.View, false, c.View, 9, 6, 13);
            MatMulKernels.MatMul(h, a.View, false, b.View, false, d.View, 9, 6, 13);
        }
        using var program = PersistentProgram.TryBuild(host, Record, out var refusal, spinLimit: 20000, state: default, repeat: null, groups: 3)!;
        program.Should().NotBeNull(refusal);
        program.GridGroups.Should().Be(3);
        program.Launch(host);
        program.TimedOut().Should().BeTrue("three groups cannot all be resident on two multiprocessors");
        // The same program on a resident grid: no time-out, and the product's bits.
        using var fits = PersistentProgram.TryBuild(host, Record, out refusal)!;
        fits.GridGroups.Should().Be(2);
        fits.Launch(host);
        fits.TimedOut().Should().BeFalse();
        var want = Reference.MatMul(a.ToArray(), false, b.ToArray(), false, 9, 6, 13);
        c.ToArray().Should().Equal(d.ToArray());
        for (int i = 0; i < want.Length; i++) ((double)c.ToArray()[i]).Should().BeApproximately(want[i], 1e-4 * (1 + Math.Abs(want[i])));
    }

    // The persistent kernels of the seed's program, all Warp and all Tiled, on groups of 256 (a GPU's
    // group and tiled shape), compile to PTX for SM_90: registers only, the slices and team sums in
    // shared memory within a group's 48 KB, atomics (count, generation, give-up mark) for the barrier.
    [Theory]
    [InlineData(MatMulPath.Warp)]
    [InlineData(MatMulPath.Tiled)]
    public void Persistent_seed_kernel_compiles_to_PTX(MatMulPath path)
    {
        var ptx = PtxCompileTests.PtxOf(SeedProgramKernel(path));
        ptx.Should().Contain(".entry").And.Contain(".maxntid 256, 1, 1").And.Contain("atom.add").And.Contain("atom.exch");
        ptx.Should().NotContain(".local", "the program's values stay in registers");
        var shared = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]").Sum(m => int.Parse(m.Groups[1].Value));
        shared.Should().BeLessThan(48 * 1024);
    }

    // StepKernel closed over the program a seed-like step (7x33, 33x17, 17x5) records on groups of
    // 256 with every product on one path: the phases' types are the seed's (epilogues, tail, pair).
    internal static System.Reflection.MethodInfo SeedProgramKernel(MatMulPath path)
    {
        var dev = Device.CpuSimulator(16, 16, 1);
        bool saved = dev.Host.PersistentSteps;
        using var pin = new MatMulPin(dev.Host, path);
        dev.Host.PersistentSteps = true;
        try
        {
            Tensor.ManualSeed(47);
            using var x = Tensor.Randn([7, 33], dev);
            using var y = Tensor.Randn([7, 5], dev);
            using var w1 = Tensor.Randn([33, 17], dev, requiresGrad: true);
            using var w2 = Tensor.Randn([17, 5], dev, requiresGrad: true);
            using var opt = new Sgd([w1, w2], 1e-3f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            step.Run();
            step.IsPersistent.Should().BeTrue(step.Describe());
            return typeof(PersistentProgram).GetMethod("StepKernel", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                .MakeGenericMethod(step.PersistentProgramType!);
        }
        finally
        {
            dev.Host.PersistentSteps = saved;
        }
    }
}
