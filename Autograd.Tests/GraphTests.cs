// The compiled static graph against eager mode, its memory behaviour, and its guards (its fusion: GraphTests.Fusion.cs).
using AutogradNet.Kernels;
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class GraphTests : IClassFixture<SimulatorsReleased>
{
    public static TheoryData<string> Optimizers() => new() { "sgd", "momentum", "adam" };

    private static Optimizer MakeOptimizer(string kind, Tensor[] parameters, float lr) => kind switch
    {
        "sgd" => new Sgd(parameters, lr),
        "momentum" => new Sgd(parameters, lr, momentum: 0.9f),
        _ => new Adam(parameters, lr),
    };

    private static Tensor[] Copy(Tensor[] ps) => ps.Select(p => Tensor.FromArray(p.ToArray(), p.Shape.ToArray(), p.Device, requiresGrad: true)).ToArray();

    /// <summary>Trains `steps` steps eagerly and compiled from the same start; returns both loss curves.</summary>
    private static (float[] Eager, float[] Compiled) Train(Tensor[] start, Func<Tensor[], Tensor> loss, string opt, float lr, int steps)
    {
        // Compiled first: on a GPU that tunes the products' shapes, and the eager run then takes the same
        // kernels, so the two differ by fusion alone, not by the kernels' orders of summation.
        var pc = Copy(start);
        using var compiledOpt = MakeOptimizer(opt, pc, lr);
        using var step = Graph.Compile(() => loss(pc), compiledOpt);
        var pe = Copy(start);
        using var eagerOpt = MakeOptimizer(opt, pe, lr);
        var eager = new float[steps];
        for (int t = 0; t < steps; t++)
        {
            var l = loss(pe);
            eager[t] = l.Item();
            l.Backward();
            eagerOpt.Step();
            eagerOpt.ZeroGrad();
        }
        var compiled = new float[steps];
        for (int t = 0; t < steps; t++) compiled[t] = step.Run().Item();
        return (eager, compiled);
    }

    private static void ShouldAgree(float[] eager, float[] compiled, string what)
    {
        ShouldMatchEachStep(eager, compiled, $"{what}, eager vs compiled");
        compiled[^1].Should().BeLessThan(compiled[0], $"{what}: the loss falls");
    }

    // Each step's loss within 1e-5 relative of the reference's (as many steps as got has).
    private static void ShouldMatchEachStep(float[] reference, float[] got, string what)
    {
        for (int t = 0; t < got.Length; t++)
        {
            double rel = Math.Abs(reference[t] - got[t]) / Math.Max(Math.Abs(reference[t]), 1e-30);
            rel.Should().BeLessThan(1e-5, $"{what}: step {t}, {reference[t]} vs {got[t]}");
        }
    }

    [Theory]
    [MemberData(nameof(Optimizers))]
    public void Seed_net_compiled_equals_eager_over_100_steps(string opt)
    {
        var dev = TestData.Device;
        Tensor.ManualSeed(11);
        var x = Tensor.Randn([64, 1000], dev);
        var y = Tensor.Randn([64, 10], dev);
        Tensor[] start = [Tensor.Randn([1000, 100], dev, requiresGrad: true), Tensor.Randn([100, 10], dev, requiresGrad: true)];
        float lr = opt == "adam" ? 1e-2f : 1e-6f;
        var (eager, compiled) = Train(start, p => (x.MatMul(p[0]).Clamp(min: 0).MatMul(p[1]) - y).Pow(2).Sum(), opt, lr, 100);
        ShouldAgree(eager, compiled, $"seed/{opt}");
    }

    [Theory]
    [MemberData(nameof(Optimizers))]
    public void Three_layer_net_with_bias_tanh_sigmoid_compiled_equals_eager(string opt)
    {
        var dev = TestData.Device;
        var x = TestData.Tensor([33, 65], 1);
        var y = TestData.Tensor([33, 5], 2);
        Tensor[] start =
        [
            Tensor.FromArray(TestData.Normal(65 * 130, 3, 0.1f), [65, 130], dev, true),
            Tensor.FromArray(TestData.Normal(130, 4, 0.1f), [130], dev, true),
            Tensor.FromArray(TestData.Normal(130 * 7, 5, 0.1f), [130, 7], dev, true),
            Tensor.FromArray(TestData.Normal(7, 6, 0.1f), [7], dev, true),
            Tensor.FromArray(TestData.Normal(7 * 5, 7, 0.5f), [7, 5], dev, true),
        ];
        Tensor Loss(Tensor[] p)
        {
            var h1 = (x.MatMul(p[0]) + p[1]).Tanh();
            var h2 = (h1.MatMul(p[2]) + p[3]).Sigmoid();
            return (h2.MatMul(p[4]) - y).Pow(2).Mean();
        }
        float lr = opt == "adam" ? 1e-2f : 0.05f;
        var (eager, compiled) = Train(start, Loss, opt, lr, 100);
        ShouldAgree(eager, compiled, $"3-layer/{opt}");
        if (opt != "sgd") return;
        using var rule = MatMulPin.Rule(dev.Host);
        // Each bias and its activation ride in the forward product, each activation's backward in
        // the product that makes its input gradient, each SGD update in its gradient's product or sum.
        var p = Copy(start);
        using var o = new Sgd(p, lr);
        using var step = Graph.Compile(() => Loss(p), o);
        step.Run();
        var text = step.Describe();
        text.Should().Contain("MatMul(NN) -> Add with [130] -> Tanh").And.Contain("TanhGrad (flipped) with [33, 130]")
            .And.Contain("Sum([0], keepDim) -> SGD update of [130]").And.Contain("Sum([0], keepDim) -> SGD update of [7]");
        step.LaunchesPerStep.Should().Be(10, text);
    }

    [Fact]
    public void Replays_allocate_nothing_on_the_device()
    {
        var dev = TestData.Device;
        var x = TestData.Tensor([64, 100], 1);
        var y = TestData.Tensor([64, 10], 2);
        var w1 = TestData.Tensor([100, 50], 3, requiresGrad: true);
        var w2 = TestData.Tensor([50, 10], 4, requiresGrad: true);
        using var opt = new Adam([w1, w2], 1e-3f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Relu().MatMul(w2) - y).Pow(2).Sum(), opt);
        step.Run();
        dev.Synchronize();
        long allocations = Memory.DeviceAllocations, buffers = Memory.LiveBuffers, bytes = Memory.LiveBytes;
        for (int i = 0; i < 1000; i++) step.Run();
        dev.Synchronize();
        Memory.DeviceAllocations.Should().Be(allocations);
        // At most, not exactly: tensors of earlier tests may still be finalized meanwhile.
        Memory.LiveBuffers.Should().BeLessThanOrEqualTo(buffers);
        Memory.LiveBytes.Should().BeLessThanOrEqualTo(bytes);
        float.IsFinite(step.Output.Item()).Should().BeTrue();
    }

    [Fact]
    public void Rebinding_an_input_changes_the_result_and_a_mismatched_shape_throws()
    {
        var x = TestData.Tensor([7, 33], 1);
        var w = TestData.Tensor([33, 5], 2);
        using var step = Graph.Compile(() => x.MatMul(w).Sum());
        float first = step.Run().Item();
        var x2 = TestData.Tensor([7, 33], 3);
        step.SetInput(x, x2);
        float second = step.Run().Item();
        double expected = Reference.MatMul(x2.ToArray(), false, w.ToArray(), false, 7, 5, 33).Sum();
        second.Should().BeApproximately((float)expected, 1e-3f);
        second.Should().NotBe(first);
        var bad = TestData.Tensor([8, 33], 4);
        var act = () => step.SetInput(x, bad);
        act.Should().Throw<GraphSignatureException>().WithMessage("SetInput: expected shape [7, 33] on *, got [8, 33] on *");
    }

    [Fact]
    public void Describe_names_the_SGEMM_kernel_of_each_product()
    {
        var (x, y, w1, w2) = TestData.SeedNet(29);
        var host = TestData.Device.Host;
        using var pin = new MatMulPin(host, MatMulPath.Tiled);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum());
        var (gx, gy) = host.TiledGroup;
        // The second product carries the loss's sum where its launch can (on a GPU), and says so.
        bool sumInLaunch = MatMulKernels.SumInSameLaunch(host, 64, 10, 100);
        step.Describe().Should().Contain($"-> [64, 100] [Tiled {gx}x{gy}")
            .And.Contain($"[{MatMulKernels.Describe(host, 64, 10, 100, withSum: sumInLaunch)}]");
    }

    [Fact]
    public void Changed_kernel_settings_are_refused_until_put_back()
    {
        // The scratch of a split product and a captured CUDA graph belong to the settings of Compile.
        var x = TestData.Tensor([7, 33], 1);
        var w = TestData.Tensor([33, 5], 2);
        var host = TestData.Device.Host;
        using var step = Graph.Compile(() => x.MatMul(w).Sum());
        float before = step.Run().Item();
        var compiledUnder = host.MatMulPath;
        using (new MatMulPin(host, MatMulPath.Small))
        {
            var act = () => step.Run();
            act.Should().Throw<GraphSignatureException>()
                .WithMessage($"Run: *kernel settings changed*compiled under MatMulPath {compiledUnder}*now MatMulPath Small*compile the step again*");
        }
        step.Run().Item().Should().Be(before);
    }

    [Fact]
    public void Run_steps_returns_every_loss_without_host_reads()
    {
        var x = TestData.Tensor([33, 7], 1);
        var y = TestData.Tensor([33, 1], 2);
        var w = TestData.Tensor([7, 1], 3, requiresGrad: true);
        using var opt = new Sgd([w], 0.01f);
        using var step = Graph.Compile(() => (x.MatMul(w) - y).Pow(2).Sum(), opt);
        var history = step.Run(steps: 20).ToArray();
        history.Should().HaveCount(20);
        for (int i = 1; i < 20; i++) history[i].Should().BeLessThan(history[i - 1]);
        float next = step.Run().Item();
        next.Should().BeLessThan(history[^1]);
    }

    // Run(steps) has the launch that computes the loss write it into the history: no copy launch per
    // step (one at the end, into Output). Where the loss comes out of a view (a reshape), it is copied
    // after each step instead. Either way each count keeps its own history, so alternating counts
    // (each a CUDA graph of its own on CUDA) never write into another's.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Run_steps_writes_each_loss_into_its_history_and_alternating_counts_agree_with_single_steps(bool reshaped)
    {
        var x = TestData.Tensor([33, 7], 11);
        var y = TestData.Tensor([33, 1], 12);
        Tensor[] Start() => [TestData.Tensor([7, 1], 13, requiresGrad: true)];
        Tensor Loss(Tensor w) => reshaped ? (x.MatMul(w) - y).Pow(2).Sum().Reshape([1]) : (x.MatMul(w) - y).Pow(2).Sum();
        var wa = Start();
        var wb = Start();
        using var oa = new Sgd(wa, 0.002f);
        using var ob = new Sgd(wb, 0.002f);
        using var chunked = Graph.Compile(() => Loss(wa[0]), oa);
        using var single = Graph.Compile(() => Loss(wb[0]), ob);
        var expected = new List<float>();
        var got = new List<float>();
        var seen = new HashSet<int>();
        foreach (int n in new[] { 3, 5, 3, 1, 5, 1 })
        {
            long before = TestData.Device.Host.Launches;
            var history = chunked.Run(steps: n);
            long launches = TestData.Device.Host.Launches - before;
            // Counted once the count's history exists (making it fills it) and the first step has run;
            // a CUDA graph's replay calls no launcher, so there the count is the capture's, not counted here.
            if (!seen.Add(n) && !chunked.UsesCudaGraphs)
                launches.Should().Be(n * chunked.LaunchesPerStep + (reshaped ? n : 1),
                    reshaped ? "a copy after each step" : "the loss written by its own launch, one copy into Output at the end");
            var h = history.ToArray();
            h.Should().HaveCount(n);
            chunked.Output.ToArray()[0].Should().Be(h[^1], "Output holds the last step's loss");
            got.AddRange(h);
            for (int i = 0; i < n; i++) expected.Add(single.Run().ToArray()[0]);
        }
        got.Should().Equal(expected);
    }

    [Fact]
    public void Host_reads_and_in_place_updates_inside_the_traced_function_are_refused()
    {
        var w = TestData.Tensor([5], 1, requiresGrad: true);
        var read = () => Graph.Compile(() => { var s = (w * 2f).Sum(); _ = s.Item(); return s; });
        read.Should().Throw<GraphTraceException>().WithMessage("Cannot read tensor [] (Item, ToArray or ToString) inside a function being compiled*");
        var inplace = () => Graph.Compile(() => { using (Autograd.NoGrad()) w.SubInPlace(w); return w.Sum(); });
        inplace.Should().Throw<GraphTraceException>().WithMessage("SubInPlace inside a function being compiled*optimizer*");
        Autograd.IsGradEnabled.Should().BeTrue();
        (w * 2f).Sum().Item().Should().NotBe(0, "tracing ended: eager mode works again");
    }

    [Fact]
    public void Disposing_a_compiled_step_frees_every_buffer_it_owns()
    {
        // A device of its own: no other test's tensors are finalized into its counts meanwhile.
        var dev = Device.CpuSimulator(2, 1, 4);
        var x = Tensor.FromArray(TestData.Normal(7 * 33, 1), [7, 33], dev);
        var w = Tensor.FromArray(TestData.Normal(33 * 5, 2), [33, 5], dev, requiresGrad: true);
        using var opt = new Sgd([w], 0.1f, momentum: 0.5f);
        Memory.Collect();
        long before = dev.LiveBuffers;
        var step = Graph.Compile(() => x.MatMul(w).Tanh().Sum(), opt);
        step.Run(steps: 3);
        step.Run();
        long velocity = 1;
        dev.LiveBuffers.Should().BeGreaterThan(before + velocity);
        step.Dispose();
        step.Dispose();
        Memory.Collect();
        dev.LiveBuffers.Should().Be(before + velocity, "only the optimizer's velocity (the caller's) remains");
        var act = () => step.Run();
        act.Should().Throw<ObjectDisposedException>();
    }

    [Fact]
    public void Describe_and_dot_show_the_plan_and_the_seed_step_launch_count()
    {
        var dev = TestData.Device;
        var x = TestData.Tensor([64, 1000], 1);
        var y = TestData.Tensor([64, 10], 2);
        var w1 = TestData.Tensor([1000, 100], 3, requiresGrad: true);
        var w2 = TestData.Tensor([100, 10], 4, requiresGrad: true);
        using var opt = new Sgd([w1, w2], 1e-6f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        step.Run();
        string text = step.Describe();
        text.Should().Contain("launches per step: ").And.Contain("buffer plan:").And.Contain("MatMul(TN) -> SGD update of [1000, 100]) [64, 1000], [64, 100] -> [1000, 100]");
        step.Nodes.Should().BeLessThan(step.RecordedNodes, "the Expand of the gradient seed is folded into its consumer");
        step.LaunchesPerStep.Should().BeGreaterThan(0);
        step.ToDot().Should().StartWith("digraph step {").And.Contain("param [1000, 100]").And.EndWith("}\n");
    }

    [Fact]
    public void A_new_learning_rate_reaches_the_compiled_step()
    {
        // loss = sum(x w): dL/dw = x^T 1 does not depend on w, so each step moves w by exactly lr * that.
        var x = TestData.Tensor([7, 33], 1);
        var w = TestData.Tensor([33, 5], 2, requiresGrad: true);
        using var opt = new Sgd([w], 1e-3f);
        using var step = Graph.Compile(() => x.MatMul(w).Sum(), opt);
        var w0 = w.ToArray();
        step.Run();
        var w1 = w.ToArray();
        opt.LearningRate = 4e-3f;
        step.Run(steps: 2);
        var w3 = w.ToArray();
        var colSums = Enumerable.Range(0, 33).Select(k => Enumerable.Range(0, 7).Sum(i => (double)x.ToArray()[i * 33 + k])).ToArray();
        for (int i = 0; i < w0.Length; i++)
        {
            double g = colSums[i / 5];
            (w0[i] - w1[i]).Should().BeApproximately((float)(1e-3 * g), 2e-5f, "step 1 at lr 1e-3");
            (w1[i] - w3[i]).Should().BeApproximately((float)(2 * 4e-3 * g), 8e-5f, "steps 2-3 at lr 4e-3");
        }
    }

    [Fact]
    public void Compiled_seed_agrees_across_SGEMM_paths()
    {
        // On the CPU accelerator Auto runs the host SGEMM; the ILGPU kernels must give the same training.
        float[] Losses(MatMulPath path, int steps = 20)
        {
            var (x, y, w1, w2) = TestData.SeedNet(21);
            using var pin = new MatMulPin(TestData.Device.Host, path);
            using var opt = new Sgd([w1, w2], 1e-6f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            var losses = step.Run(steps: steps).ToArray();
            // On the tiled and warp kernels the two gradient products with their updates run in one launch.
            if (path is MatMulPath.Tiled or MatMulPath.Warp) step.Describe().Should().Contain("in one launch\n").And.Contain("launches per step: 4;");
            return losses;
        }
        var auto = Losses(MatMulPath.Auto);
        var small = Losses(MatMulPath.Small);
        // Tiled on the test device's own group (2x1 on the CPU accelerator, 16x16 on a GPU).
        var tiled = Losses(MatMulPath.Tiled);
        // The warp kernel's simulated shuffles are slow on the CPU: a few steps.
        var warp = Losses(MatMulPath.Warp, 3);
        ShouldMatchEachStep(small, warp, "Small vs Warp");
        ShouldMatchEachStep(small, auto, "Small vs Auto");
        ShouldMatchEachStep(small, tiled, "Small vs Tiled");
        auto[^1].Should().BeLessThan(auto[0]);
    }

    // The warp kernel in teams of 4 warps (a simulator of groups of 4 two-lane warps) trains the
    // compiled seed as Small does.
    [Fact]
    public void Compiled_seed_trains_the_same_on_warp_teams()
    {
        var dev = Device.CpuSimulator(2, 4, 1);
        float[] Losses(MatMulPath path, int? team)
        {
            Tensor.ManualSeed(21);
            var x = Tensor.Randn([64, 1000], dev);
            var y = Tensor.Randn([64, 10], dev);
            var w1 = Tensor.Randn([1000, 100], dev, requiresGrad: true);
            var w2 = Tensor.Randn([100, 10], dev, requiresGrad: true);
            using var pin = new MatMulPin(dev.Host, path, warpTeam: team);
            using var opt = new Sgd([w1, w2], 1e-6f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            // Two steps: the simulator runs its one group through every block with two barriers each.
            var losses = step.Run(steps: 2).ToArray();
            if (team is { } t) step.Describe().Should().Contain($"Warp, teams of {t} warps").And.Contain("in one launch\n").And.Contain("launches per step: 4;");
            foreach (var tensor in new[] { x, y, w1, w2 }) tensor.Dispose();
            return losses;
        }
        ShouldMatchEachStep(Losses(MatMulPath.Small, null), Losses(MatMulPath.Warp, 4), "Small vs Warp in teams of 4");
    }

    [Theory]
    [InlineData("momentum", 7)]
    [InlineData("adam", 8)]
    public void Optimizer_state_is_made_at_compile_time(string opt, int launches)
    {
        using var rule = MatMulPin.Rule(TestData.Device.Host);
        var (x, y, w1, w2) = TestData.SeedNet(23);
        using var o = MakeOptimizer(opt, [w1, w2], opt == "adam" ? 1e-3f : 1e-6f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), o);
        // Earlier tests' dropped tensors must not give their buffers back in the middle (finalizers).
        Memory.Collect();
        long live = Memory.LiveBuffers;
        step.Run();
        Memory.LiveBuffers.Should().Be(live, "the moments were allocated by Compile, not by the first Run");
        // 5 kernels (the five products, the loss in the second one's launch), then one update per
        // parameter (and Adam's step counter); no state fills.
        // The gradient products dW2 and dH are independent: paired, one launch on a GPU, two on the CPU accelerator.
        step.Describe().Should().Contain("Paired: MatMul(TN) [64, 100], [64, 10] -> [100, 10]");
        step.LaunchesPerStep.Should().Be(TestData.OnGpu ? launches - 1 : launches, step.Describe());
    }
}
