// Autotuning: the candidates, the table a device keeps per product shape, the views that launch a
// tuned choice, and the Tune pass of Graph.Compile. The timer is replaced by a fake clock where a test
// needs a given winner (the CPU accelerator's real timings would always pick its host SGEMM); every
// candidate still runs and is checked against a double sum. Each test tunes shapes of its own: a
// device's table is written once per shape.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed class TuningTests : IClassFixture<SimulatorsReleased>
{
    // Autotuning on for the test device, the fake clocks and the eager threshold put back after it.
    private sealed class Tuning : IDisposable
    {
        private readonly KernelHost _host = TestData.Device.Host;
        private readonly MatMulSettings _saved;
        private readonly double _eagerMinFlops = Tune.EagerMinFlops;
        private readonly long _eagerSumMinElements = Tune.EagerSumMinElements;

        public Tuning()
        {
            _saved = _host.MatMulSettings;
            _host.Autotune = true;
        }

        public void Dispose()
        {
            Tune.Clock = null;
            Tune.PairClock = null;
            Tune.SumClock = null;
            Tune.EagerMinFlops = _eagerMinFlops;
            Tune.EagerSumMinElements = _eagerSumMinElements;
            _host.MatMulSettings = _saved;
        }
    }

    private static KernelHost Host => TestData.Device.Host;

    private static KernelHost Simulator => Device.CpuSimulator(16, 16, 1).Host;

    // The seed's net at a size of its own, (rows, inputs) -> hidden -> outputs, compiled with SGD on the
    // test device with autotuning on or off, after 20 steps.
    private sealed class SeedShaped : IDisposable
    {
        public readonly Tensor X, W1;
        public readonly CompiledStep Step;
        public readonly float[] Losses;
        private readonly Sgd _opt;

        public SeedShaped(ulong seed, int rows, int inputs, int hidden, int outputs, bool tune)
        {
            var device = TestData.Device;
            Tensor.ManualSeed(seed);
            var x = X = Tensor.Randn([rows, inputs], device);
            var y = Tensor.Randn([rows, outputs], device);
            var w1 = W1 = Tensor.Randn([inputs, hidden], device, requiresGrad: true);
            var w2 = Tensor.Randn([hidden, outputs], device, requiresGrad: true);
            device.Host.Autotune = tune;
            _opt = new Sgd([w1, w2], 1e-5f);
            Step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), _opt);
            Losses = Step.Run(steps: 20).ToArray();
        }

        public void Dispose()
        {
            Step.Dispose();
            _opt.Dispose();
        }
    }

    // Choices of every kind, each on a host whose groups run it: the CPU accelerator's groups of 2, and
    // a simulator of 16x16 for the GPU-shaped ones.
    public static TheoryData<string, bool> Choices() => new()
    {
        { "Host", false }, { "Small", false }, { "Warp", false }, { "Tiled 2x1", false }, { "Tiled 2x1, split-K 3 in one launch", false },
        { "Tiled 2x1, split-K 3 in two launches", false }, { "Tiled 1x1, split-K 2 in one launch", false },
        { "Warp, teams of 4 warps", true }, { "Tiled 16x16, split-K 4 in one launch", true }, { "Tiled 8x8, split-K 2 in two launches", true },
        { "Large", true }, { "Wide", true }, { "Large, split-K 3 in two launches", true }, { "Wide, split-K 2 in two launches", true },
    };

    private static MatMulChoice Parse(string text, KernelHost host)
    {
        var neutral = host.DefaultTiledGroup;
        var parts = text.Split(' ', ',');
        if (!text.StartsWith("Tiled", StringComparison.Ordinal))
            return text.StartsWith("Warp", StringComparison.Ordinal)
                ? new(MatMulPath.Warp, neutral, WarpTeam: text.Contains("teams of 4") ? 4 : 1)
                : text.Contains("split-K") ? new(Enum.Parse<MatMulPath>(parts[0]), neutral, int.Parse(parts[3]), false)
                : new(Enum.Parse<MatMulPath>(text), neutral);
        var xy = parts[1].Split('x');
        int split = text.Contains("split-K") ? int.Parse(parts[4]) : 1;
        return new(MatMulPath.Tiled, (int.Parse(xy[0]), int.Parse(xy[1])), split, !text.Contains("two launches"));
    }

    [Theory]
    [MemberData(nameof(Choices))]
    public void A_tuned_choice_is_what_MatMul_launches_and_it_matches_the_host_twin(string text, bool simulator)
    {
        if (text == "Host") Assert.SkipUnless(Host.IsCpu, "the Host SGEMM path runs only on the CPU accelerator");
        var shared = simulator ? Simulator : Host;
        // A host of its own: the table is written once per shape.
        var host = new KernelHost(shared.Accelerator) { Autotune = true };
        var choice = Parse(text, host);
        choice.ToString().Should().Be(text);
        int m = 9, n = 13, k = 301;
        host.SetTuned(m, n, k, choice);
        MatMulKernels.Describe(host, m, n, k).Should().Be(text + ", autotuned");
        MatMulKernels.Choose(host, m, n, k).Should().Be(choice.Path);
        MatMulKernels.Choose(host, m, n).Should().Be(MatMulKernels.RuleChoice(host, m, n, k).Path, "without K, Choose is the rule");
        var a = TestData.Normal(m * k, 3);
        var b = TestData.Normal(k * n, 4);
        foreach (var (ta, tb) in new[] { (false, false), (true, true) })
        {
            var (ha, hb) = (ta ? Transposed(a, m, k) : a, tb ? Transposed(b, k, n) : b);
            using var ab = KernelTests.Upload(host, ha);
            using var bb = KernelTests.Upload(host, hb);
            using var cb = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            long need = MatMulKernels.SplitKScratch(host, m, n, k);
            need.Should().Be(choice.SplitK > 1 ? (long)choice.SplitK * m * n : 0);
            using var scratch = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, need)).ToArray());
            long before = host.Launches;
            MatMulKernels.MatMul(host, ab.View, ta, bb.View, tb, cb.View, m, n, k, scratch: scratch.View);
            host.Launches.Should().Be(before + (choice is { SplitK: > 1, SplitKInOneLaunch: false } ? 2 : 1),
                "a tuned view counts its launches on the host it came from");
            TestData.ShouldMatch(KernelTests.Download(host, cb, m * n), Reference.MatMul(ha, ta, hb, tb, m, n, k), 1e-4, 2e-5 * Math.Sqrt(k), $"{text} ta={ta} tb={tb}");
        }
    }

    private static float[] Transposed(float[] x, int rows, int cols)
    {
        var t = new float[x.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                t[j * rows + i] = x[i * cols + j];
        return t;
    }

    [Fact]
    public void A_setting_pinned_by_hand_keeps_the_rule_and_a_shape_is_tuned_once()
    {
        var host = new KernelHost(Host.Accelerator) { Autotune = true };
        var small = new MatMulChoice(MatMulPath.Small, host.DefaultTiledGroup);
        host.SetTuned(7, 33, 65, small);
        host.FollowsTuning.Should().BeTrue();
        MatMulKernels.Describe(host, 7, 33, 65).Should().Be("Small, autotuned");
        MatMulKernels.Describe(host, 7, 33, 66).Should().Be(MatMulKernels.RuleChoice(host, 7, 33, 66).ToString(), "another shape has no entry");
        var saved = host.MatMulSettings;
        foreach (Action<KernelHost> pin in new Action<KernelHost>[]
                 {
                     h => h.Autotune = false, h => h.MatMulPath = MatMulPath.Tiled, h => h.MatMulSplitK = 1, h => h.WarpTeam = 1,
                     h => h.SplitKInOneLaunch = false, h => h.WarpMaxOutputs = 1, h => h.TiledGroup = (1, 1),
                 })
        {
            pin(host);
            host.FollowsTuning.Should().BeFalse();
            MatMulKernels.Describe(host, 7, 33, 65).Should().NotContain("autotuned");
            host.MatMulSettings = saved;
        }
        MatMulKernels.Describe(host, 7, 33, 65).Should().Be("Small, autotuned");
        host.SetTuned(7, 33, 65, small); // the same choice again is no change
        var act = () => host.SetTuned(7, 33, 65, new MatMulChoice(MatMulPath.Warp, host.DefaultTiledGroup));
        act.Should().Throw<InvalidOperationException>().WithMessage("SetTuned: 7x33x65 was tuned to Small already*KernelHost.With*");
        var auto = () => host.SetTuned(1, 2, 3, new MatMulChoice(MatMulPath.Auto, host.DefaultTiledGroup));
        auto.Should().Throw<ArgumentException>().WithMessage("*not Auto*");
        // The CPU accelerator's groups of 2 refuse a 16x16 group (a GPU's would take it).
        var cpu = new KernelHost(Device.Cpu.Accelerator);
        var big = () => cpu.SetTuned(1, 2, 3, new MatMulChoice(MatMulPath.Tiled, (16, 16)));
        big.Should().Throw<ArgumentException>().WithMessage("TiledGroup: 16x16 needs 256 threads*");
        cpu.Tuned(1, 2, 3).Should().BeNull("a refused choice is not recorded");
    }

    [Fact]
    public void Two_halves_of_a_pair_share_a_launch_only_when_their_choices_agree()
    {
        var acc = Simulator.Accelerator;
        var group = (8, 8);
        var agree = new KernelHost(acc) { Autotune = true };
        agree.SetTuned(9, 13, 40, new MatMulChoice(MatMulPath.Tiled, group, 2));
        agree.SetTuned(5, 6, 40, new MatMulChoice(MatMulPath.Tiled, group));
        MatMulKernels.PairInOneLaunch(agree, 9, 13, 40, 5, 6, 40).Should().BeTrue();
        var differ = new KernelHost(acc) { Autotune = true };
        differ.SetTuned(9, 13, 40, new MatMulChoice(MatMulPath.Tiled, group, 2));
        differ.SetTuned(5, 6, 40, new MatMulChoice(MatMulPath.Tiled, (4, 4)));
        MatMulKernels.PairInOneLaunch(differ, 9, 13, 40, 5, 6, 40).Should().BeFalse("one launch has one group shape");
        MatMulKernels.MatMulPairScratch(differ, 9, 13, 40, 5, 6, 40).Should().Be(2 * 9 * 13);
        foreach (var host in new[] { agree, differ })
        {
            var a1 = TestData.Normal(9 * 40, 1); var b1 = TestData.Normal(40 * 13, 2);
            var a2 = TestData.Normal(5 * 40, 3); var b2 = TestData.Normal(40 * 6, 4);
            using var ba1 = KernelTests.Upload(host, a1); using var bb1 = KernelTests.Upload(host, b1); using var bc1 = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, 9 * 13).ToArray());
            using var ba2 = KernelTests.Upload(host, a2); using var bb2 = KernelTests.Upload(host, b2); using var bc2 = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, 5 * 6).ToArray());
            using var scratch = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, 2 * 9 * 13).ToArray());
            long before = host.Launches;
            MatMulKernels.MatMulPair(host,
                new GemmCall(ba1.View, false, bb1.View, false, bc1.View, 9, 13, 40, 1f, 0f, bc1.View, 0, 0), new FirstOp(),
                new GemmCall(ba2.View, false, bb2.View, false, bc2.View, 5, 6, 40, 1f, 0f, bc2.View, 0, 0), new FirstOp(), scratch.View);
            host.Launches.Should().Be(before + (host == agree ? 1 : 2));
            TestData.ShouldMatch(KernelTests.Download(host, bc1, 9 * 13), Reference.MatMul(a1, false, b1, false, 9, 13, 40), 1e-4, 2e-4, "first");
            TestData.ShouldMatch(KernelTests.Download(host, bc2, 5 * 6), Reference.MatMul(a2, false, b2, false, 5, 6, 40), 1e-4, 2e-4, "second");
        }
    }

    [Fact]
    public void The_candidates_start_with_the_rule_and_each_runs_as_it_says()
    {
        foreach (var host in new[] { Host, Simulator })
            foreach (var (m, n, k) in new[] { (64, 100, 1000), (1000, 100, 64), (7, 5, 33), (300, 260, 40) })
            {
                var list = MatMulKernels.Candidates(host, m, n, k);
                list[0].Should().Be(MatMulKernels.RuleChoice(host, m, n, k));
                list.Should().OnlyHaveUniqueItems();
                foreach (var c in list)
                {
                    var on = host.With(c);
                    MatMulKernels.Describe(on, m, n, k).Should().Be(c.ToString(), $"{m}x{n}x{k} on {host.Accelerator.Name}");
                    MatMulKernels.SplitK(on, m, n, k).Should().Be(c.SplitK);
                }
                list.Any(c => c.Path == MatMulPath.Host).Should().Be(host.IsCpu);
                long bigTiles = (long)((m + MatMulKernels.LargeTile - 1) / MatMulKernels.LargeTile) * ((n + MatMulKernels.LargeTile - 1) / MatMulKernels.LargeTile);
                list.Any(c => c.Path == MatMulPath.Wide).Should().Be(
                    host.CanUseLargeMatMul && MatMulKernels.BigTilesWorthTuning(bigTiles, k, host.Accelerator.NumMultiprocessors),
                    $"{m}x{n}x{k} on {host.Accelerator.Name}: 128x128 tiles only where they can fill half the device");
                list.Any(c => c.Path is MatMulPath.Small or MatMulPath.Warp).Should().Be((long)m * n <= MatMulKernels.TuneSmallMaxOutputs);
            }
        // 64x100x1000 on 16x16 groups: two 64x64 tiles, so K is split, in one launch and in two.
        var seed = MatMulKernels.Candidates(Simulator, 64, 100, 1000);
        seed.Should().Contain(new MatMulChoice(MatMulPath.Tiled, (16, 16), 2)).And.Contain(new MatMulChoice(MatMulPath.Tiled, (16, 16), 2, false))
            .And.Contain(new MatMulChoice(MatMulPath.Warp, Simulator.DefaultTiledGroup, WarpTeam: 4))
            .And.Contain(new MatMulChoice(MatMulPath.Wide, Simulator.DefaultTiledGroup, 2, false), "one 128x128 tile is under two waves of one multiprocessor");
    }

    // The 128x128-tile kernels are timed only where their tiles, K split in up to 8 parts of at least
    // 128, give half the multiprocessors a group: on an H200's 132 not for the seed's products (1 to 8
    // tiles, each 1.8-5x slower there than its tuned kernel, run 10), but for 1024^3, where Wide16 won.
    [Fact]
    public void The_128_tile_kernels_are_timed_only_where_their_tiles_can_fill_half_the_device()
    {
        MatMulKernels.BigTilesWorthTuning(1, 1000, 132).Should().BeFalse("64x100x1000: one tile, 7 parts at most");
        MatMulKernels.BigTilesWorthTuning(8, 64, 132).Should().BeFalse("1000x100x64: 8 tiles, K too shallow to split");
        MatMulKernels.BigTilesWorthTuning(64, 1024, 132).Should().BeTrue("1024^3: 64 tiles, 8 parts");
        MatMulKernels.BigTilesWorthTuning(66, 64, 132).Should().BeTrue("half the device in tiles alone");
        MatMulKernels.BigTilesWorthTuning(1, 1000, 2).Should().BeTrue("a device of 2 multiprocessors");
        MatMulKernels.BigTilesWorthTuning(1, 1000, 14).Should().BeTrue("7 parts fill half of 14");
        MatMulKernels.BigTilesWorthTuning(1, 1000, 15).Should().BeFalse();
    }

    [Fact]
    public void TuneMatMul_times_every_candidate_and_records_the_fastest()
    {
        var device = TestData.Device;
        var host = device.Host;
        using var scope = new Tuning();
        int m = 13, n = 21, k = 77;
        var candidates = MatMulKernels.Candidates(host, m, n, k);
        var winner = candidates[^1];
        Tune.Clock = (_, c) => c == winner ? 1 : 10;
        var tuning = device.TuneMatMul(m, n, k, transposeA: true);
        tuning.Trials.Select(t => t.Candidate).Should().Equal(candidates);
        tuning.Trials.Should().OnlyContain(t => t.Rejected == null, "every candidate computes the right product");
        tuning.Choice.Should().Be(winner);
        host.Tuned(m, n, k).Should().Be(winner);
        tuning.ToString().Should().Contain($"* {winner}");
        // A second run measures again and keeps the recorded choice.
        Tune.Clock = (_, c) => c == candidates[0] ? 1 : 10;
        device.TuneMatMul(m, n, k).Choice.Should().Be(winner);
    }

    [Fact]
    public void A_tie_keeps_the_rule_and_a_failing_candidate_is_never_chosen()
    {
        var device = TestData.Device;
        var host = device.Host;
        using var scope = new Tuning();
        var rule = MatMulKernels.RuleChoice(host, 5, 9, 67);
        Tune.Clock = (_, c) => c == rule ? 1.02 : c.Path == MatMulPath.Small ? 1.0 : 10;
        device.TuneMatMul(5, 9, 67).Choice.Should().Be(rule, "within 3% the rule stays");
        Tune.Clock = (_, c) => c.Path == MatMulPath.Small ? throw new InvalidOperationException("boom") : c.Path == MatMulPath.Warp ? 1 : 10;
        var tuning = device.TuneMatMul(11, 19, 29);
        tuning.Choice.Path.Should().Be(MatMulPath.Warp);
        tuning.Trials.Single(t => t.Candidate.Path == MatMulPath.Small).Rejected.Should().Be("InvalidOperationException: boom");
    }

    [Fact]
    public void The_tuning_cache_carries_choices_to_a_later_run_on_the_same_device_only()
    {
        var device = TestData.Device;
        string path = Path.GetTempFileName();
        using var scope = new Tuning();
        using var env = new EnvironmentScope(Tune.CacheVariable);
        try
        {
            env.Set(path);
            Tune.Clock = (_, c) => c.Path == MatMulPath.Small ? 1 : 10;
            device.TuneMatMul(23, 29, 41).Choice.Path.Should().Be(MatMulPath.Small);
            var lines = File.ReadAllLines(path);
            lines.Should().ContainSingle().Which.Should().Contain("\"M\":23").And.Contain(Tune.DeviceKey(device.Host));
            File.AppendAllText(path, lines[0].Replace(Tune.DeviceKey(device.Host), "another card").Replace("\"M\":23", "\"M\":24") + "\n");
            // The same version with other kernels (an older build): its timings say nothing of these.
            lines[0].Should().Contain(Tune.LibraryKey);
            Tune.LibraryKey.Should().MatchRegex(@"^[0-9.]+ build [0-9a-f]{32}$", "the version, then the kernel assembly's build");
            File.AppendAllText(path, lines[0].Replace(Tune.LibraryKey, Tune.LibraryKey.Split(' ')[0] + " build " + new string('0', 32)).Replace("\"M\":23", "\"M\":25") + "\n");
            File.AppendAllText(path, "not a line of ours\n");
            // A later process: a fresh host of the same accelerator takes the choice before timing anything.
            var later = new KernelHost(device.Accelerator) { Autotune = true };
            Tune.ReadCache(later, path);
            later.Tuned(23, 29, 41).Should().Be(new MatMulChoice(MatMulPath.Small, later.DefaultTiledGroup));
            later.Tuned(24, 29, 41).Should().BeNull("that line is another device's");
            later.Tuned(25, 29, 41).Should().BeNull("that line is another build's");
            later.TunedShapes.Should().HaveCount(1);
            MatMulKernels.Describe(later, 23, 29, 41).Should().Be("Small, autotuned");
            // A sum's chunk count travels the same way.
            Tune.SumClock = chunks => chunks == 2 ? 1 : 10;
            Tune.Sum(device, 2, 160, 3);
            var again = new KernelHost(device.Accelerator) { Autotune = true };
            Tune.ReadCache(again, path);
            again.TunedSumChunks(2, 160, 3).Should().Be(2);
            again.Tuned(23, 29, 41).Should().NotBeNull();
        }
        finally
        {
            File.Delete(path);
        }
    }

    // Sums along a middle run: the chunk count is a tuned choice too.
    [Fact]
    public void A_tuned_chunk_count_is_what_a_sum_along_a_dim_runs_with()
    {
        var host = new KernelHost(Host.Accelerator) { Autotune = true };
        int outer = 3, r = 200, inner = 5;
        int[] shape = [outer, r, inner];
        int[] axes = [1];
        Reduce.MiddleRun(host, shape, axes, out int o, out int rr, out int i).Should().BeTrue();
        (o, rr, i).Should().Be((outer, r, inner));
        long ruleScratch = Reduce.SumAxesScratch(host, shape, axes);
        host.SetTunedSumChunks(outer, r, inner, 4);
        Reduce.SumAxesScratch(host, shape, axes).Should().Be((long)outer * 4 * inner);
        var x = TestData.Normal(outer * r * inner, 5);
        using var xb = KernelTests.Upload(host, x);
        using var yb = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, outer * inner).ToArray());
        using var scratch = KernelTests.Upload(host, Enumerable.Repeat(float.NaN, outer * 4 * inner).ToArray());
        long before = host.Launches;
        Reduce.SumAxes(host, xb.View, shape, axes, yb.View, scratch: scratch.View);
        host.Launches.Should().Be(before + 2, "the chunks' partials, then their sum");
        var expected = new double[outer * inner];
        for (int a = 0; a < outer; a++)
            for (int p = 0; p < r; p++)
                for (int c = 0; c < inner; c++)
                    expected[a * inner + c] += x[(a * r + p) * inner + c];
        TestData.ShouldMatch(KernelTests.Download(host, yb, outer * inner), expected, 1e-5, 1e-5, "4 chunks");
        host.Autotune = false;
        Reduce.SumAxesScratch(host, shape, axes).Should().Be(ruleScratch, "with autotuning off the rule counts the chunks");
        var twice = () => host.SetTunedSumChunks(outer, r, inner, 2);
        twice.Should().Throw<InvalidOperationException>().WithMessage("*tuned to 4 chunks already*");
        Reduce.SumChunkCandidates(host, outer, r, inner).Should().Equal([1, 2, 4],
            "the rule's count (1: 15 outputs, 3000 elements) first, then powers of two while a chunk keeps 32 rows");
    }

    [Fact]
    public void Compile_and_a_big_eager_sum_tune_chunk_counts_and_the_results_hold()
    {
        var device = TestData.Device;
        var host = device.Host;
        using var scope = new Tuning();
        // Two chunks win on the fake clock.
        Tune.SumClock = chunks => chunks == 2 ? 1 : 10;
        var x = TestData.Tensor([96, 7], 21);
        host.Autotune = false;
        float rule;
        using (var plain = Graph.Compile(() => x.Sum(0).Pow(2).Sum())) rule = plain.Run().Item();
        host.Autotune = true;
        using var step = Graph.Compile(() => x.Sum(0).Pow(2).Sum());
        host.TunedSumChunks(1, 96, 7).Should().Be(2, "Graph.Compile tuned its sum along dim 0");
        step.Run().Item().Should().BeApproximately(rule, 1e-4f * Math.Abs(rule));
        // Eager: a sum of at least EagerSumMinElements is tuned on first use, a smaller one is not.
        Tune.EagerSumMinElements = 128 * 9;
        var big = TestData.Tensor([128, 9], 22);
        var small = TestData.Tensor([127, 9], 23);
        var sum = big.Sum(0);
        host.TunedSumChunks(1, 128, 9).Should().Be(2);
        var hb = big.ToArray();
        TestData.ShouldMatch(sum.ToArray(), Enumerable.Range(0, 9).Select(c => Enumerable.Range(0, 128).Sum(p => (double)hb[p * 9 + c])).ToArray(),
            1e-5, 1e-5, "tuned eager sum");
        _ = small.Sum(0);
        host.TunedSumChunks(1, 127, 9).Should().BeNull();
    }

    [Fact]
    public void A_wrong_sample_is_caught()
    {
        int m = 6, n = 5, k = 7;
        var a = TestData.Normal(m * k, 1);
        var b = TestData.Normal(k * n, 2);
        var c = Reference.MatMul(a, false, b, false, m, n, k).Select(v => (float)v).ToArray();
        Tune.Wrong(a, b, c, m, n, k, false, false).Should().BeNull();
        var off = (float[])c.Clone();
        off[7] += 0.01f;
        var bad = (float[])c.Clone();
        bad[7] = float.NaN;
        // 64 samples of 30 entries find the changed one.
        Tune.Wrong(a, b, off, m, n, k, false, false).Should().StartWith("C[1, 2]");
        Tune.Wrong(a, b, bad, m, n, k, false, false).Should().StartWith("C[1, 2] = NaN");
    }

    [Fact]
    public void Compile_tunes_each_product_and_the_step_trains_as_the_rule_does()
    {
        var host = TestData.Device.Host;
        using var scope = new Tuning();
        float[] rule;
        using (var plain = new SeedShaped(41, 17, 45, 23, 5, tune: false)) rule = plain.Losses;
        // The Small kernel wins every product on the fake clock.
        Tune.Clock = (_, c) => c.Path == MatMulPath.Small ? 1 : 10;
        using (var net = new SeedShaped(41, 17, 45, 23, 5, tune: true))
        {
            string text = net.Step.Describe();
            foreach (var (m, n, k) in new[] { (17, 23, 45), (17, 5, 23), (17, 23, 5), (45, 23, 17), (23, 5, 17) })
                host.Tuned(m, n, k).Should().Be(new MatMulChoice(MatMulPath.Small, host.DefaultTiledGroup), $"{m}x{n}x{k}");
            text.Should().Contain("[Small, autotuned, sum in the same launch]").And.Contain("[Small, autotuned]");
            net.Step.LaunchesPerStep.Should().Be(5, "five Small products, the loss in the second's launch: " + text);
            host.Autotune = false;
            var act = () => net.Step.Run();
            act.Should().Throw<GraphSignatureException>().WithMessage("*Autotune True*Autotune False*");
            host.Autotune = true;
            var eager = net.X.MatMul(net.W1);
            MatMulKernels.Describe(host, 17, 23, 45).Should().Be("Small, autotuned", "eager products follow the table too");
            eager.Dispose();
            TestData.ShouldMatch(net.Losses, rule.Select(v => (double)v).ToArray(), 1e-4, 1e-5, "tuned (Small) against the rule");
        }
    }

    [Fact]
    public void Paired_products_whose_winners_do_not_share_a_launch_get_the_faster_of_apart_and_together()
    {
        var host = TestData.Device.Host;
        using var scope = new Tuning();
        (int, int, int) dW2 = (27, 6, 19);
        float[] rule;
        using (var plain = new SeedShaped(43, 19, 37, 27, 6, tune: false)) rule = plain.Losses;
        // Alone, dW1 is fastest on Small and dW2 on Warp, which cannot share a launch; on the fake
        // clock the tiled kernel runs both in one launch in less than the two apart.
        // The loss's product would be fastest on the host SGEMM, which sums its loss apart: not a candidate there.
        Tune.Clock = (shape, c) => shape == dW2 ? (c.Path == MatMulPath.Warp ? 1 : 10)
            : shape == (19, 6, 27) && c.Path == MatMulPath.Host ? 0.5 : (c.Path == MatMulPath.Small ? 1 : 10);
        Tune.PairClock = (a, b) => a.Path == MatMulPath.Tiled && b.Path == MatMulPath.Tiled ? 1.5 : 3;
        using (var net = new SeedShaped(43, 19, 37, 27, 6, tune: true))
        {
            var c1 = host.Tuned(37, 27, 19); // dW1
            var c2 = host.Tuned(27, 6, 19);
            c1!.Value.Path.Should().Be(MatMulPath.Tiled);
            c2!.Value.Path.Should().Be(MatMulPath.Tiled);
            c2.Value.TiledGroup.Should().Be(c1.Value.TiledGroup);
            host.Tuned(19, 6, 27)!.Value.Path.Should().Be(MatMulPath.Small, "a product whose loss is summed in its launch keeps it there");
            string text = net.Step.Describe();
            text.Should().Contain("autotuned]").And.Contain("in one launch").And.Contain("[Small, autotuned, sum in the same launch]");
            net.Step.LaunchesPerStep.Should().Be(4, text);
            TestData.ShouldMatch(net.Losses, rule.Select(v => (double)v).ToArray(), 1e-4, 1e-5, "tuned (paired tiles) against the rule");
        }
    }

    [Fact]
    public void A_big_eager_product_and_its_gradients_are_tuned_on_first_use_and_a_small_one_is_not()
    {
        var device = TestData.Device;
        var host = device.Host;
        using var scope = new Tuning();
        // "Big" here: the threshold is lowered to this product's flops (the CPU simulator would take
        // seconds for a product of 1 GFLOP on some candidates).
        Tune.EagerMinFlops = 2.0 * 29 * 31 * 37;
        Tune.Clock = (_, c) => c.Path == MatMulPath.Small ? 1 : 10;
        var ha = TestData.Normal(29 * 37, 1);
        var hb = TestData.Normal(37 * 31, 2);
        var a = Tensor.FromArray(ha, [29, 37], device, requiresGrad: true);
        var b = Tensor.FromArray(hb, [37, 31], device);
        host.Tuned(29, 31, 37).Should().BeNull();
        var c = a.MatMul(b);
        host.Tuned(29, 31, 37).Should().Be(new MatMulChoice(MatMulPath.Small, host.DefaultTiledGroup));
        TestData.ShouldMatch(c.ToArray(), Reference.MatMul(ha, false, hb, false, 29, 31, 37), 1e-4, 1e-4, "tuned eager product");
        c.Sum().Backward();
        host.Tuned(29, 37, 31).Should().NotBeNull("dA = dC b^T, as big, is tuned on its first use too");
        var rowSums = Enumerable.Range(0, 37).Select(p => Enumerable.Range(0, 31).Sum(j => (double)hb[p * 31 + j])).ToArray();
        TestData.ShouldMatch(a.Grad!.ToArray(), Enumerable.Range(0, 29 * 37).Select(i => rowSums[i % 37]).ToArray(), 1e-4, 1e-4, "dA");
        _ = Tensor.FromArray(TestData.Normal(28 * 37, 3), [28, 37], device).MatMul(b);
        host.Tuned(28, 31, 37).Should().BeNull("below the threshold eager products follow the rule");
        host.Autotune = false;
        _ = Tensor.FromArray(TestData.Normal(30 * 37, 4), [30, 37], device).MatMul(b);
        host.Tuned(30, 31, 37).Should().BeNull("autotuning is off");
    }

    // A tuned shape's view (ForShape) is made once and kept. The switches that pick among kernels and
    // forms giving the same values must still follow the host after it is made: a view that kept its
    // first settings ran Wide16's whole-tile kernel after AsyncCopies was turned on, and kept a tail's
    // fences after OneThreadFences was.
    [Fact]
    public void A_tuned_view_follows_the_hosts_switches_set_after_it_was_made()
    {
        var host = new KernelHost(Simulator.Accelerator) { Autotune = true };
        host.SetTuned(128, 128, 32, new MatMulChoice(MatMulPath.Wide16, host.DefaultTiledGroup));
        host.AsyncCopies = false;
        MatMulKernels.Describe(host, 128, 128, 32, transA: true).Should().Be("Wide16, whole tiles, autotuned");
        host.AsyncCopies = true;
        MatMulKernels.Describe(host, 128, 128, 32, transA: true).Should().Be("Wide16, whole tiles, async copies, autotuned");
        MatMulKernels.Describe(host, 128, 128, 32).Should().Be("Wide16, whole tiles, autotuned", "NN's A goes along k");
        host.AsyncCopiesAlongK = true;
        MatMulKernels.Describe(host, 128, 128, 32).Should().Be("Wide16, whole tiles, async copies, autotuned");
        host.WholeTiles = false;
        MatMulKernels.Describe(host, 128, 128, 32).Should().Be("Wide16, autotuned");
        host.OneThreadFences = true;
        var view = host.ForShape(128, 128, 32);
        view.IsTunedView.Should().BeTrue();
        view.OneThreadFences.Should().BeTrue();
        view.MatMulPath.Should().Be(MatMulPath.Wide16, "the view keeps the choice it pins");
    }
}
