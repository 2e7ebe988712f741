// The persistent step kernel (Autograd.Kernels/Persistent.cs): a compiled step's launches as the
// phases of one kernel with a grid barrier between them. Each phase strides over its work by the
// grid's groups and sums in an order fixed by the thread, team and slice, so the persistent step
// must give the bits of the step's own launches. On the CPU accelerator a simulator with two
// multiprocessors runs a grid of two groups, so every barrier is a real wait between threads.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class PersistentTests : IClassFixture<SimulatorsReleased>
{
    // Groups of 4 threads (two 2-lane warps; the tiled kernel's 2x2 group), two multiprocessors.
    private static Device Sim => Device.CpuSimulator(2, 2, 2);

    // Pins a device's SGEMM kernel (null: leaves it) and PersistentSteps for one test; Dispose puts both back.
    private sealed class Pin : IDisposable
    {
        private readonly KernelHost _host;
        private readonly bool _saved, _savedChains, _savedRows;
        private readonly int _savedShares;
        private readonly MatMulPin? _matMul;

        public Pin(Device dev, MatMulPath? path, bool persistent, int? splitK = null, bool oneLaunch = true, bool chains = false, bool rows = false, int shares = 0)
        {
            _host = dev.Host;
            _saved = _host.PersistentSteps;
            _savedChains = _host.ChainTails;
            _savedRows = _host.RowChains;
            _savedShares = _host.RowShares;
            _host.RowChains = rows;
            _host.RowShares = shares;
            if (path is { } p) _matMul = new MatMulPin(_host, p, splitK: splitK, oneLaunch: oneLaunch);
            _host.PersistentSteps = persistent;
            _host.ChainTails = chains;
        }

        public void Dispose()
        {
            _host.PersistentSteps = _saved;
            _host.ChainTails = _savedChains;
            _host.RowChains = _savedRows;
            _host.RowShares = _savedShares;
            _matMul?.Dispose();
        }
    }

    // A two-layer net of small awkward shapes: x (7, 33), y (7, 5), w1 (33, 17), w2 (17, 5).
    private sealed record Net(Tensor X, Tensor Y, Tensor W1, Tensor W2) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { X, Y, W1, W2 }) t.Dispose();
        }
    }

    private static Net SmallNet(Device dev, ulong seed)
    {
        Tensor.ManualSeed(seed);
        return new Net(Tensor.Randn([7, 33], dev), Tensor.Randn([7, 5], dev),
            Tensor.Randn([33, 17], dev, requiresGrad: true), Tensor.Randn([17, 5], dev, requiresGrad: true));
    }

    private sealed record Trained(float[] Losses, float[] W1, float[] W2, string Describe, bool Persistent, long Launches);

    // Trainings already run, by their arguments: the launches each variant is compared with are the
    // same training in several tests (the step is deterministic, and a result is only read).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<object, object> Trainings = new();

    // A two-layer net of awkward shapes trained `steps` steps by Run(steps) and two more by Run(),
    // compiled with the persistent kernel or without.
    private static Trained Train(Device dev, MatMulPath path, bool persistent, int? splitK = null,
        int batch = 33, int inputs = 65, int hidden = 130, int outputs = 7, int steps = 4, bool oneLaunch = true, bool chains = false, bool rows = false,
        int shares = 0) =>
        (Trained)Trainings.GetOrAdd((dev, path, persistent, splitK, batch, inputs, hidden, outputs, steps, oneLaunch, chains, rows, shares),
            _ => TrainOnce(dev, path, persistent, splitK, batch, inputs, hidden, outputs, steps, oneLaunch, chains, rows, shares));

    private static Trained TrainOnce(Device dev, MatMulPath path, bool persistent, int? splitK,
        int batch, int inputs, int hidden, int outputs, int steps, bool oneLaunch, bool chains, bool rows, int shares)
    {
        var host = dev.Host;
        using var pin = new Pin(dev, path, persistent, splitK, oneLaunch, chains, rows, shares);
        Tensor.ManualSeed(41);
        using var x = Tensor.Randn([batch, inputs], dev);
        using var y = Tensor.Randn([batch, outputs], dev);
        using var w1 = Tensor.Randn([inputs, hidden], dev, requiresGrad: true);
        using var w2 = Tensor.Randn([hidden, outputs], dev, requiresGrad: true);
        // The seed's own rate at its shapes: at 1e-5 the seed's net diverges within 50 steps (run 9 on an
        // H200 compared infinities there), and a comparison of infinities and NaNs checks nothing.
        float lr = (long)inputs * hidden >= 100_000 ? 1e-6f : 1e-5f;
        using var opt = new Sgd([w1, w2], lr);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        var losses = step.Run(steps: steps).ToArray().ToList();
        losses.Add(step.Run().Item());
        losses.Add(step.Run().Item());
        losses.Should().OnlyContain(l => float.IsFinite(l), $"the training compared must not diverge ({dev.Name}, {path}, lr {lr})");
        return new Trained(losses.ToArray(), w1.ToArray(), w2.ToArray(), step.Describe(), step.IsPersistent, step.LaunchesPerStep);
    }

    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Warp, null, true)]
    [InlineData(MatMulPath.Tiled, null, true)]
    [InlineData(MatMulPath.Tiled, 3, true)]
    [InlineData(MatMulPath.Tiled, 3, false)]
    [InlineData(MatMulPath.Small, null, true)]
    public void Persistent_step_gives_the_bits_of_its_launches(MatMulPath path, int? splitK, bool oneLaunch)
    {
        var launches = Train(Sim, path, persistent: false, splitK, oneLaunch: oneLaunch);
        var persistent = Train(Sim, path, persistent: true, splitK, oneLaunch: oneLaunch);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Launches.Should().Be(1, persistent.Describe);
        string kernel = path.ToString();
        if (path == MatMulPath.Small)
        {
            // Small pairs nothing: the two gradient products are two launches, but, independent, one phase.
            launches.Launches.Should().Be(5, launches.Describe);
            persistent.Describe.Should().Contain("Persistent: 4 phases (Small, Small + sum, Small, Small & Small), 3 grid barriers");
        }
        else if (oneLaunch)
        {
            // h; y with the loss and its gradient; dH; the two gradient products with their updates.
            launches.Launches.Should().Be(4, launches.Describe);
            persistent.Describe.Should().Contain($"Persistent: 4 phases ({kernel}, {kernel} + sum, {kernel}, {kernel} pair), 3 grid barriers, 2 groups of 4");
        }
        else
        {
            // Each split product's slices, then their sum (with the epilogue, or the loss's tail) after a barrier.
            persistent.Describe.Should().Contain("Tiled slices, Sum of slices, Tiled slices, Sum of slices + sum");
        }
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

    // On a GPU with the barriers fenced acquire-release (inline PTX): the same bits as the launches,
    // and the program says so.
    [Fact]
    public void Persistent_seed_step_on_a_GPU_with_acquire_release_barriers_gives_the_bits_of_its_launches()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU accelerator's barriers always use ILGPU's fences");
        var dev = Device.Get("cuda");
        var saved = dev.Host.BarrierFence;
        try
        {
            dev.Host.BarrierFence = BarrierFence.AcquireRelease;
            var launches = Train(dev, MatMulPath.Warp, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
            var persistent = Train(dev, MatMulPath.Warp, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
            persistent.Persistent.Should().BeTrue(persistent.Describe);
            persistent.Describe.Should().Contain("barriers fenced acquire-release");
            persistent.Losses.Should().Equal(launches.Losses, persistent.Describe);
            persistent.W1.Should().Equal(launches.W1);
            persistent.W2.Should().Equal(launches.W2);
        }
        finally
        {
            dev.Host.BarrierFence = saved;
        }
    }

    // The seed's own shapes (64, 1000, 100, 10) for two steps: the tiled products split K there.
    [CpuOnly]
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
    [CpuOnly]
    [Fact]
    public void Persistent_step_follows_a_new_learning_rate()
    {
        float[] Run(bool persistent)
        {
            var dev = Sim;
            using var pin = new Pin(dev, MatMulPath.Warp, persistent);
            using var net = SmallNet(dev, 43);
            var (x, y, w1, w2) = net;
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
        Run(persistent: true).Should().Equal(Run(persistent: false));
    }

    private sealed record Trained3(float[] Values, string Describe, long Launches, bool Persistent);

    // A 3-layer net with biases, tanh and sigmoid and a mean loss on the warp kernel, trained 3 steps
    // by Run(steps) and one by Run(): the 4 losses, then the parameters.
    private static Trained3 TrainThreeLayer(string optimizer, bool persistent, bool chains = false, bool rows = false) =>
        (Trained3)Trainings.GetOrAdd((optimizer, persistent, chains, rows), _ => TrainThreeLayerOnce(optimizer, persistent, chains, rows));

    private static Trained3 TrainThreeLayerOnce(string optimizer, bool persistent, bool chains, bool rows)
    {
        var dev = Sim;
        using var pin = new Pin(dev, MatMulPath.Warp, persistent, chains: chains, rows: rows);
        Tensor.ManualSeed(48);
        using var x = Tensor.Randn([33, 65], dev);
        using var y = Tensor.Randn([33, 5], dev);
        Tensor[] p =
        [
            Tensor.Randn([65, 33], dev) * 0.1f, Tensor.Randn([33], dev) * 0.1f,
            Tensor.Randn([33, 7], dev) * 0.1f, Tensor.Randn([7], dev) * 0.1f, Tensor.Randn([7, 5], dev) * 0.5f,
        ];
        foreach (var t in p) t.RequiresGrad = true;
        using Optimizer opt = optimizer switch
        {
            "sgd" => new Sgd(p, 0.05f),
            "momentum" => new Sgd(p, 0.05f, momentum: 0.9f),
            _ => new Adam(p, 1e-2f),
        };
        using var step = Graph.Compile(() =>
        {
            var h1 = (x.MatMul(p[0]) + p[1]).Tanh();
            var h2 = (h1.MatMul(p[2]) + p[3]).Sigmoid();
            return (h2.MatMul(p[4]) - y).Pow(2).Mean();
        }, opt);
        var losses = step.Run(steps: 3).ToArray();
        float[] values = [.. losses, step.Run().Item(), .. p.SelectMany(t => t.ToArray())];
        var result = new Trained3(values, step.Describe(), step.LaunchesPerStep, step.IsPersistent);
        foreach (var t in p) t.Dispose();
        return result;
    }

    // A 3-layer net with biases, tanh and sigmoid, a mean loss, for each optimizer: the bias
    // gradients' batch sums, the elementwise chains and the momentum and Adam updates run as phases
    // too, and the step keeps the bits of its launches.
    [CpuOnly]
    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("adam")]
    public void Three_layer_persistent_step_gives_the_bits_of_its_launches(string optimizer)
    {
        var launches = TrainThreeLayer(optimizer, persistent: false);
        var persistent = TrainThreeLayer(optimizer, persistent: true);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        // Between two barriers, the phases that touch nothing another writes: the SGD-folded gradient
        // products and bias sums all at once; the five momentum or Adam updates at once.
        persistent.Describe.Should().Contain(optimizer switch
        {
            "sgd" => "Persistent: 6 phases (Warp, Warp, Warp + sum, Warp, Warp, Warp & Sum down columns & Warp & Sum down columns & Warp), 5 grid barriers",
            "momentum" => ", Momentum & Momentum & Momentum & Momentum & Momentum), 6 grid barriers",
            _ => " & Count, Adam & Adam & Adam & Adam & Adam), 6 grid barriers",
        });
        persistent.Values.Should().Equal(launches.Values, persistent.Describe);
        persistent.Values[3].Should().BeLessThan(persistent.Values[0], "the net trains");
    }

    // A launch that cannot be a phase (here Wide16, whose 128x128 tiles are numbered by the launch's
    // grid) keeps the step on its launches, and Describe says which.
    [CpuOnly]
    [Fact]
    public void A_step_with_a_launch_that_is_not_a_phase_keeps_its_launches()
    {
        var dev = Device.CpuSimulator(16, 16, 1);
        using var pin = new Pin(dev, MatMulPath.Wide16, true);
        Tensor.ManualSeed(44);
        using var x = Tensor.Randn([7, 33], dev);
        using var y = Tensor.Randn([7, 5], dev);
        using var w = Tensor.Randn([33, 5], dev, requiresGrad: true);
        using var opt = new Sgd([w], 1e-3f);
        using var step = Graph.Compile(() => (x.MatMul(w) - y).Pow(2).Sum(), opt);
        var first = step.Run().Item();
        step.Run().Item().Should().BeLessThan(first);
        step.IsPersistent.Should().BeFalse();
        step.Describe().Should().Contain("Persistent: refused, MatMulWide16 cannot run as a phase of the persistent kernel")
            .And.Contain("the step replays its launches");
        step.LaunchesPerStep.Should().BeGreaterThan(1);
    }

    // The barrier's state is a buffer of the device's allocator taken at compile time: replays,
    // single or many steps a launch, allocate nothing, and disposing the step gives every buffer back.
    [CpuOnly]
    [Fact]
    public void Persistent_replays_allocate_nothing_and_dispose_gives_everything_back()
    {
        var dev = Sim;
        using var pin = new Pin(dev, MatMulPath.Warp, true);
        using var net = SmallNet(dev, 50);
        var (x, y, w1, w2) = net;
        using var opt = new Sgd([w1, w2], 1e-4f);
        Memory.Collect();
        long before = dev.LiveBuffers;
        var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        step.Run();
        step.Run(steps: 5);
        dev.Synchronize();
        step.IsPersistent.Should().BeTrue(step.Describe());
        long allocations = Memory.DeviceAllocations, buffers = dev.LiveBuffers;
        for (int i = 0; i < 200; i++) step.Run();
        for (int i = 0; i < 20; i++) step.Run(steps: 5);
        dev.Synchronize();
        Memory.DeviceAllocations.Should().Be(allocations);
        dev.LiveBuffers.Should().Be(buffers);
        float.IsFinite(step.Output.Item()).Should().BeTrue();
        step.Dispose();
        step.Dispose();
        dev.LiveBuffers.Should().Be(before, "the step's planned buffers, histories and barrier state are given back");
    }

    // A program whose kernel does not load (here ILGPU cannot compile a phase; on a GPU the driver
    // may refuse one whose parameters pass 4 KB) is refused with the reason, the step keeps its
    // launches, and ILGPU still compiles kernels afterwards.
    [CpuOnly]
    [Fact]
    public void A_program_that_does_not_load_is_refused_and_kernels_still_load()
    {
        var host = Sim.Host;
        using var t = Tensor.Randn([5], Sim);
        var program = PersistentProgram.TryBuild(host, h => h.Recorder!.Add(new UncompilablePhase(t.View), "Uncompilable"), out var refusal);
        program.Should().BeNull();
        refusal.Should().StartWith("the persistent kernel of 1 phases did not load (");
        // A kernel never loaded before: a device of its own shape has an empty kernel cache.
        var fresh = Device.CpuSimulator(2, 1, 7);
        using var x = Tensor.FromArray([0.5f, -1f, 2f], [3], fresh);
        x.Tanh().ToArray().Should().Equal([MathF.Tanh(0.5f), MathF.Tanh(-1f), MathF.Tanh(2f)], (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public void The_cpu_device_runs_host_loops_and_refuses_the_persistent_kernel()
    {
        var dev = Device.Cpu;
        using var pin = new Pin(dev, null, true);
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

    // The CPU accelerator's barriers wait as long as a phase takes: its limit is never reached, not at
    // 2^31 spins (where, counted as a plain limit, it gave up: a group starved for ~30 s on a loaded
    // machine ended its wait early and the step's bits changed), nor once the count wraps.
    [Fact]
    public void A_barrier_without_a_spin_limit_never_gives_up()
    {
        foreach (int spins in new[] { 0, 63, 20000, 1 << 22, int.MaxValue - 1, int.MaxValue, int.MinValue, -1 })
            GridBarrier.GivesUp(spins, GridBarrier.NoSpinLimit).Should().BeFalse($"spins = {spins}");
        GridBarrier.GivesUp(19999, 20000).Should().BeFalse();
        GridBarrier.GivesUp(20000, 20000).Should().BeTrue();
        GridBarrier.GivesUp(PersistentProgram.GpuSpinLimit, PersistentProgram.GpuSpinLimit).Should().BeTrue();
        // What the CPU accelerator's programs take.
        using var y = Tensor.Zeros([5], Sim);
        using var program = PersistentProgram.TryBuild(Sim.Host, h => Elementwise.Fill(h, y.View, 1f), out var refusal);
        program.Should().NotBeNull(refusal);
        program!.SpinLimit.Should().Be(GridBarrier.NoSpinLimit);
    }

    // A grid with more groups than run at once: the first groups wait on a barrier for a group that
    // starts only when one of them ends. The guard gives up, marks the run, and the host's counters
    // are zeroed so the next launches are right.
    [CpuOnly]
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
        // Two phases, the second reading what the first writes: a barrier between them.
        void Record(KernelHost h)
        {
            MatMulKernels.MatMul(h, a.View, false, b.View, false, c.View, 9, 6, 13);
            Elementwise.Map(h, c.View, d.View, new IdentityOp());
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
    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Warp)]
    [InlineData(MatMulPath.Tiled)]
    public void Persistent_seed_kernel_compiles_to_PTX(MatMulPath path)
    {
        var kernel = SeedProgramKernel(path);
        var ptx = PtxCompileTests.PtxOf(kernel);
        ptx.Should().Contain(".entry").And.Contain(".maxntid 256, 1, 1").And.Contain("atom.add").And.Contain("atom.exch");
        ptx.Should().NotContain(".local", "the program's values stay in registers");
        // The host's count of the program's shared memory, which decides whether a device can hold it, is the PTX's.
        var program = (IPhase)Activator.CreateInstance(kernel.GetGenericArguments()[0])!;
        SharedBytes(ptx).Should().Be(program.SharedBytes).And.BeLessThan(48 * 1024);
        // The program is the kernel's parameter: the driver takes up to 4 KB of them (the seed's: 1.2-1.5 KB).
        // Only the entry's count: each phase's function takes its own part of the program as parameters too.
        string entry = ptx[ptx.IndexOf(".entry", StringComparison.Ordinal)..];
        entry = entry[..entry.IndexOf(')')];
        int parameters = System.Text.RegularExpressions.Regex.Matches(entry, @"\.param \.align \d+ \.b8 \w+\[(\d+)\]").Sum(m => int.Parse(m.Groups[1].Value));
        parameters.Should().BeInRange(1, 4095);
        // Each phase is a function of its own (PhaseCall), and so is each rest of the program after one:
        // Then<P0, Then<P1, Then<P2, P3>>> calls P0 and the rest, which calls P1 and the rest, ...: 6.
        System.Text.RegularExpressions.Regex.Matches(ptx, @"^\.visible \.func Run_\d+\($", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Value).Distinct().Count().Should().Be(6, "each phase is a call");
    }

    // Every kind of phase in one program (maps and zips with and without broadcasting, a fill, the
    // optimizer updates, every sum): on groups of 256 with two multiprocessors it gives the bits of
    // the same launches, and it compiles to PTX with its values in registers.
    [CpuOnly]
    [Fact]
    public void A_program_of_every_phase_gives_the_bits_of_its_launches_and_compiles_to_PTX()
    {
        // Two multiprocessors: a sum of many elements then takes partials and a second pass.
        var dev = Device.CpuSimulator(16, 16, 2);
        var host = dev.Host;
        Tensor[] State()
        {
            Tensor.ManualSeed(49);
            // a, b, c, a step count, row sums, a matrix over the one-group sum's 64K on the CPU accelerator, scratch.
            return [Tensor.Randn([64, 130], dev), Tensor.Randn([130], dev), Tensor.Randn([64, 130], dev), Tensor.Randn([1], dev),
                Tensor.Randn([64], dev), Tensor.Randn([300, 300], dev), Tensor.Zeros([Math.Max(Reduce.SumAllScratch(host), 64 * 130)], dev)];
        }
        Action<KernelHost> Record(Tensor[] t) => h =>
        {
            var (a, b, c, one, sums, big, scratch) = (t[0].View, t[1].View, t[2].View, t[3].View, t[4].View, t[5].View, t[6].View);
            Elementwise.Map(h, a, c, new TanhOp());
            Elementwise.MapBroadcast(h, b, [130], c, [64, 130], new ExpOp());
            Elementwise.Zip(h, a, [64, 130], c, [64, 130], c, [64, 130], new AddOp());
            Elementwise.Zip(h, a, [64, 130], b, [130], c, [64, 130], new AddOp());
            OptimizerKernels.Momentum(h, a, c, scratch.SubView(0, 64 * 130), 0.1f, 0.9f);
            OptimizerKernels.Count(h, one);
            OptimizerKernels.Adam(h, a, c, scratch.SubView(0, 64 * 130), c, one, 1e-3f, 0.9f, 0.999f, 1e-8f);
            Reduce.SumAxes(h, a, [64, 130], [1], sums);
            Reduce.SumAxes(h, a, [64, 130], [0], b);
            Elementwise.Fill(h, scratch, 0f);
            Reduce.SumAll(h, big, one, scratch);
        };
        var launched = State();
        Record(launched)(host);
        var want = launched.Take(6).Select(t => t.ToArray()).ToArray();
        var persistent = State();
        using var program = PersistentProgram.TryBuild(host, Record(persistent), out var refusal)!;
        program.Should().NotBeNull(refusal);
        // Between two barriers, the runs of phases that touch nothing another writes.
        program.PhaseNames.Should().Equal("Map", "Map", "Zip", "Zip", "Momentum & Count", "Adam", "Sum of rows & Sum down columns & Fill",
            "Sum", "Sum of partials");
        program.Launch(host);
        program.TimedOut().Should().BeFalse();
        for (int i = 0; i < want.Length; i++) persistent[i].ToArray().Should().Equal(want[i], $"tensor {i}");
        foreach (var t in launched.Concat(persistent)) t.Dispose();
        var kernel = typeof(PersistentProgram).GetMethod("StepKernel", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(program.ProgramType);
        var ptx = PtxCompileTests.PtxOf(kernel);
        ptx.Should().Contain(".entry").And.Contain("bar.sync");
        ptx.Should().NotContain(".local", "the program's values stay in registers");
        SharedBytes(ptx).Should().Be(program.SharedBytes, "the host counts each phase's shared arrays as ILGPU allocates them");
    }

    // The static shared memory a kernel's PTX declares (bytes).
    private static int SharedBytes(string ptx) =>
        System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]").Sum(m => int.Parse(m.Groups[1].Value));

    // StepKernel closed over the program a seed-like step (7x33, 33x17, 17x5) records on groups of
    // 256 with every product on one path: the phases' types are the seed's (epilogues, tail, pair).
    internal static System.Reflection.MethodInfo SeedProgramKernel(MatMulPath path) =>
        SeedProgramKernels.GetOrAdd(path, p => new Lazy<System.Reflection.MethodInfo>(() => MakeSeedProgramKernel(p))).Value;

    // Made once a path: this test and SassTests' ask for the same kernels, and each making runs a step
    // on the CPU simulator's groups of 256 (5-7 s on 2 cores).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<MatMulPath, Lazy<System.Reflection.MethodInfo>> SeedProgramKernels = new();

    private static System.Reflection.MethodInfo MakeSeedProgramKernel(MatMulPath path)
    {
        var dev = Device.CpuSimulator(16, 16, 1);
        using var pin = new Pin(dev, path, true);
        using var net = SmallNet(dev, 47);
        var (x, y, w1, w2) = net;
        using var opt = new Sgd([w1, w2], 1e-3f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        step.Run();
        step.IsPersistent.Should().BeTrue(step.Describe());
        return typeof(PersistentProgram).GetMethod("StepKernel", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(step.PersistentProgramType!);
    }
}

/// <summary>A phase ILGPU cannot compile (Volatile.Read): for the test of a program that does not load.</summary>
public readonly struct UncompilablePhase : IPhase
{
    private readonly ArrayView<float> _x;

    internal UncompilablePhase(ArrayView<float> x) => _x = x;

    /// <inheritdoc/>
    public void Run(GridBarrier barrier) => _x[1] = System.Threading.Volatile.Read(ref _x[0]);

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => 1;

    /// <inheritdoc/>
    public int SharedBytes => 0;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access) => access.Write(_x);
}
