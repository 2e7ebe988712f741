// The SGEMM kernels against their double-precision host twin: every path (host, small, tiled on
// three group shapes, split-K in one and two launches, large, wide), every layout, every fused
// epilogue, at awkward shapes, with the output poisoned (NaN) before the kernel writes it.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, int, int, bool, bool, string> MatMulCases()
    {
        var d = new TheoryData<int, int, int, bool, bool, string>();
        var sizes = new (int, int, int)[] { (1, 1, 1), (7, 33, 65), (65, 7, 33), (130, 65, 7), (33, 130, 1), (1, 65, 130), (64, 100, 200), (260, 132, 24), (9, 13, 301) };
        foreach (var path in Paths)
            foreach (var (m, n, k) in sizes.Where(s => Affordable(path, s.Item1, s.Item2)))
                foreach (var ta in new[] { false, true })
                    foreach (var tb in new[] { false, true })
                        // Split-K in two launches reads A and B with split3's kernel and slicing (its raw
                        // slices are that kernel without the fixup): two layouts, both or neither transposed.
                        if (ta == tb || path != "split3-two-launches")
                            d.Add(m, n, k, ta, tb, path);
        return d;
    }

    // Every SGEMM path. The tiled kernel runs on three of its group shapes: the GPU's 16x16, 8x8, and
    // the 2x1 that the CPU accelerator's groups of 2 give it; "split3" cuts K into 3 slices. The warp
    // kernel runs on the device's warps (2 lanes on the CPU accelerator), on warps of 16 (its team
    // chosen by shape, and teams of 4), and in teams of 2 and 4 two-lane warps (a simulator of groups of 4 warps).
    private static readonly string[] Paths =
        ["host", "small", "tiled", "tiled-8x8", "tiled-2x1", "split3", "split3-2x1", "split3-two-launches", "large", "wide", "wide16", "large-split3", "wide-split3", "wide16-split3", "warp", "warp-16",
         "warp-16-team4", "warp-team2", "warp-team4"];

    // The CPU simulator pays a 16-thread rendezvous per shuffle: warps of 16 take only products of
    // up to ~40 blocks of C, and in teams (two 128-thread group barriers a block as well) up to 12.
    // The 2-lane warps take every size.
    private static bool Affordable(string path, int m, int n)
    {
        // Large and Wide with K split (two launches): one size spanning several 128x128 tiles, one with
        // a deep K, one with ragged slices; the simulator's groups of 256 threads are slow.
        if (path.EndsWith("-split3", StringComparison.Ordinal) && !path.StartsWith("split3", StringComparison.Ordinal))
            return (m, n) is (65, 7) or (260, 132) or (9, 13);
        // 260x132 spans several 128x128 tiles, for Large and Wide. The 16x16 tiles and the warp teams
        // meet ragged edges on both sides at 130x65 already (and the teams stride over more 4x4 blocks
        // than the simulator has threads); on the simulator 260x132 was their slowest size (0.2-1.4 s
        // a layout).
        if ((m, n) is (260, 132) && path is "tiled" or "split3" or "split3-two-launches" or "warp-team2" or "warp-team4")
            return false;
        if (!path.StartsWith("warp-16", StringComparison.Ordinal) || Host.Accelerator.WarpSize >= 16) return true;
        return (m + 3) / 4 * ((n + 3) / 4) <= (path == "warp-16" ? 40 : 12);
    }

    private static MatMulPath PathOf(string path) => path switch
    {
        "host" => MatMulPath.Host,
        "small" => MatMulPath.Small,
        _ when path.StartsWith("large", StringComparison.Ordinal) => MatMulPath.Large,
        _ when path.StartsWith("wide16", StringComparison.Ordinal) => MatMulPath.Wide16,
        _ when path.StartsWith("wide", StringComparison.Ordinal) => MatMulPath.Wide,
        _ when path.StartsWith("warp", StringComparison.Ordinal) => MatMulPath.Warp,
        _ => MatMulPath.Tiled,
    };

    // The tiled kernel's group for a test path: 16x16 unless the path names one.
    private static (int X, int Y) GroupOf(string path) =>
        path.EndsWith("8x8", StringComparison.Ordinal) ? (8, 8) : path.EndsWith("2x1", StringComparison.Ordinal) ? (2, 1) : (16, 16);

    // Groups of more than 2 threads run on a CPU simulator when the test device is the CPU accelerator
    // (groups of 2), each on a simulator of its own group's size: a simulator keeps an OS thread for
    // every thread of the largest group it has run, and each launch wakes them all, so a group of 64
    // launched on the 256 threads of the 16x16 simulator cost ~22 ms a launch where its own simulator
    // takes ~2 (PERF.md, "Simulators the size of their groups"). The warp kernel's warps of 16 run
    // 8 a group, as a GPU's groups of 256 hold 8 warps of 32. The host path exists only on the CPU
    // accelerator.
    private static KernelHost HostFor(string path)
    {
        if (path == "host")
        {
            Assert.SkipUnless(Host.IsCpu, "the Host SGEMM path runs only on the CPU accelerator");
            return Host;
        }
        if (path == "small" || path == "warp") return Host;
        if (path.StartsWith("warp-16", StringComparison.Ordinal)) return Host.Accelerator.WarpSize >= 16 ? Host : Device.CpuSimulator(16, 8, 1).Host;
        if (path.StartsWith("warp-team", StringComparison.Ordinal))
            return Host.GroupSize / Host.Accelerator.WarpSize >= 4 ? Host : Device.CpuSimulator(2, 4, 1).Host;
        var (x, y) = PathOf(path) == MatMulPath.Tiled ? GroupOf(path) : (16, 16);
        int threads = x * y, lanes = Math.Min(16, threads);
        return threads > Host.Accelerator.MaxNumThreadsPerGroup ? Device.CpuSimulator(lanes, threads / lanes, 1).Host : Host;
    }

    private static MatMulPin PinFor(KernelHost host, string path) =>
        new(host, PathOf(path), path.Contains("split3", StringComparison.Ordinal) ? 3 : 1, path != "split3-two-launches",
            PathOf(path) == MatMulPath.Tiled ? GroupOf(path) : null,
            path.EndsWith("team2", StringComparison.Ordinal) ? 2 : path.EndsWith("team4", StringComparison.Ordinal) ? 4 : null);

    [Theory]
    [MemberData(nameof(MatMulCases))]
    public void MatMul_matches_host_twin_in_every_layout(int m, int n, int k, bool ta, bool tb, string path)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        var a = TestData.Normal(m * k, m * 31 + k);
        var b = TestData.Normal(k * n, n * 17 + k);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        long need = MatMulKernels.SplitKScratch(host, m, n, k);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, need)).ToArray());
        MatMulKernels.MatMul(host, ab.View, ta, bb.View, tb, cb.View, m, n, k, scratch: scratch.View);
        var expected = Reference.MatMul(a, ta, b, tb, m, n, k);
        TestData.ShouldMatch(Download(host, cb, m * n), expected, 1e-4, 2e-5 * Math.Sqrt(k),
            $"{path} ({MatMulKernels.Describe(host, m, n, k)}) {m}x{n}x{k} ta={ta} tb={tb}");
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    public void MatMul_accumulates_with_alpha_and_beta(bool tiled, int split)
    {
        var host = tiled ? HostFor("tiled") : Host;
        using var pin = new MatMulPin(host, tiled ? MatMulPath.Tiled : MatMulPath.Small, split);
        int m = 33, n = 65, k = 40;
        var a = TestData.Normal(m * k, 1);
        var b = TestData.Normal(k * n, 2);
        var c0 = TestData.Normal(m * n, 3);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, c0);
        using var scratch = Upload(host, new float[Math.Max(1, (int)MatMulKernels.SplitKScratch(host, m, n, k))]);
        MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, alpha: -0.5f, beta: 1f, scratch: scratch.View);
        MatMulKernels.SplitK(host, m, n, k).Should().Be(split);
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        var expected = p.Select((v, i) => -0.5 * v + c0[i]).ToArray();
        TestData.ShouldMatch(Download(host, cb, m * n), expected, 1e-4, 1e-5, "C = -0.5 AB + C");
    }

    [Fact]
    public void Wide_SGEMM_reads_vectors_only_where_aligned_and_is_right_either_way()
    {
        var host = HostFor("wide");
        using var pin = new MatMulPin(host, MatMulPath.Wide);
        int m = 132, n = 68, k = 40;
        var a = TestData.Normal(m * k, 1);
        var b = TestData.Normal(k * n, 2);
        // A one float into its buffer: not 16-byte aligned, so A's slices are read as scalars.
        using var ab = Upload(host, [0.5f, .. a]);
        using var bb = Upload(host, b);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        var aView = ab.View.SubView(1, m * k);
        var g = new GemmArgs(m, n, k, false, false, 1f, 0f);
        MatMulKernels.WideVectorizable(aView, bb.View, g).Should().Be(2, "B is aligned with N % 4 == 0, A is not aligned");
        MatMulKernels.WideVectorizable(ab.View.SubView(0, m * k), bb.View, g).Should().Be(3);
        MatMulKernels.WideVectorizable(ab.View.SubView(0, m * k), bb.View, new GemmArgs(m, n, k, true, false, 1f, 0f)).Should().Be(3, "A^T has rows of M = 132");
        MatMulKernels.WideVectorizable(ab.View.SubView(0, 65 * 7), bb.View.SubView(0, 7 * 33), new GemmArgs(65, 33, 7, false, false, 1f, 0f)).Should().Be(0, "K = 7 and N = 33 are not multiples of 4");
        MatMulKernels.MatMul(host, aView, false, bb.View, false, cb.View, m, n, k);
        TestData.ShouldMatch(Download(host, cb, m * n), Reference.MatMul(a, false, b, false, m, n, k), 1e-4, 2e-5 * Math.Sqrt(k), "wide, unaligned A");
    }

    // Wide16 reads the same fragments as Wide, 16 k a slice instead of 8, and each element of C is the
    // same chain of FMAs in k order: the same bits, at K that ends mid-half (7, 33), mid-slice (40),
    // on slice boundaries (64), and with K split in 3 (slices ending wherever the split puts them).
    [Theory]
    [InlineData(130, 68, 7, false, false, 1)]
    [InlineData(65, 33, 33, true, false, 1)]
    [InlineData(132, 130, 40, false, true, 1)]
    [InlineData(7, 260, 64, true, true, 1)]
    [InlineData(129, 65, 130, false, false, 3)]
    public void Wide16_gives_the_same_bits_as_Wide(int m, int n, int k, bool ta, bool tb, int split)
    {
        var host = HostFor("wide");
        float[] Run(MatMulPath path)
        {
            using var pin = new MatMulPin(host, path, split, oneLaunch: false);
            using var ab = Upload(host, TestData.Normal(m * k, 7));
            using var bb = Upload(host, TestData.Normal(k * n, 8));
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, MatMulKernels.SplitKScratch(host, m, n, k))).ToArray());
            MatMulKernels.MatMul(host, ab.View, ta, bb.View, tb, cb.View, m, n, k, scratch: scratch.View);
            MatMulKernels.SplitK(host, m, n, k).Should().Be(split);
            return Download(host, cb, m * n);
        }
        var wide = Run(MatMulPath.Wide);
        var wide16 = Run(MatMulPath.Wide16);
        wide.Should().NotContain(float.NaN);
        for (int i = 0; i < wide.Length; i++)
            BitConverter.SingleToInt32Bits(wide16[i]).Should().Be(BitConverter.SingleToInt32Bits(wide[i]),
                $"element ({i / n}, {i % n}) of {m}x{n}x{k} ta={ta} tb={tb} split {split}: Wide16 {wide16[i]}, Wide {wide[i]}");
    }

    // With 2 simulated multiprocessors the K-slice groups of a tile run at the same time, so the
    // group that finishes last is not always the last layer.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void One_launch_split_K_leaves_its_counters_at_zero_and_repeats_bit_for_bit(int multiprocessors)
    {
        var host = Host.CanUseLargeMatMul ? Host : Device.CpuSimulator(16, 16, multiprocessors).Host;
        using var pin = new MatMulPin(host, MatMulPath.Tiled, 5);
        int m = 130, n = 70, k = 160; // 3 x 2 tiles, 5 slices of 32
        var a = TestData.Normal(m * k, 31);
        var b = TestData.Normal(k * n, 32);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)MatMulKernels.SplitKScratch(host, m, n, k)).ToArray());
        MatMulKernels.SplitK(host, m, n, k).Should().Be(5);
        var runs = new List<float[]>();
        for (int rep = 0; rep < 3; rep++)
        {
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            long launches = host.Launches;
            MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, scratch: scratch.View);
            (host.Launches - launches).Should().Be(1, "the slices are summed in the same launch");
            runs.Add(Download(host, cb, m * n));
            var counters = new int[6];
            host.SplitKArrivals.SubView(0, 6).CopyToCPU(host.Stream, counters);
            host.Synchronize();
            counters.Should().AllBeEquivalentTo(0, "the last layer of each tile resets its count");
        }
        TestData.ShouldMatch(runs[0], Reference.MatMul(a, false, b, false, m, n, k), 1e-4, 2e-5 * Math.Sqrt(k), "one-launch split-K");
        runs[1].Should().Equal(runs[0]);
        runs[2].Should().Equal(runs[0]);
        host.SplitKInOneLaunch = false;
        using var c2 = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        long before = host.Launches;
        MatMulKernels.MatMul(host, ab.View, false, bb.View, false, c2.View, m, n, k, scratch: scratch.View);
        (host.Launches - before).Should().Be(2, "the slices, then their sum");
        Download(host, c2, m * n).Should().Equal(runs[0], "the same sum in the same order as the two-launch form");
    }

    [Theory]
    [InlineData(1024, 49152, 16, 16)]  // an H100 or H200
    [InlineData(256, 8324, 16, 16)]    // exactly 16x16's slices (16 rows of 65 floats each) and flag
    [InlineData(256, 8323, 8, 8)]      // one byte short: the next shape down
    [InlineData(64, 49152, 8, 8)]
    [InlineData(16, int.MaxValue, 4, 4)] // ILGPU's default CPU accelerator
    [InlineData(8, int.MaxValue, 2, 2)]
    [InlineData(2, int.MaxValue, 2, 1)]  // this library's CPU accelerator
    [InlineData(1, int.MaxValue, 1, 1)]
    public void Tiled_group_is_the_largest_the_limits_allow(int threads, long shared, int x, int y)
    {
        MatMulKernels.TiledGroupFor(threads, shared).Should().Be((x, y));
        MatMulKernels.TiledSharedBytes((16, 16)).Should().Be(4 * 16 * 2 * (64 + 1) + 4);
    }

    [Fact]
    public void Tiled_group_follows_the_accelerator_and_refuses_what_does_not_fit()
    {
        var acc = Host.Accelerator;
        Host.TiledGroup.Should().Be(MatMulKernels.TiledGroupFor(acc.MaxNumThreadsPerGroup, acc.MaxSharedMemoryPerGroup));
        Device.CpuSimulator(16, 16, 1).Host.TiledGroup.Should().Be((16, 16));
        var cpu = Device.CpuSimulator(2, 1, 10).Host; // groups of 2, a device of its own (its settings change here)
        cpu.TiledGroup.Should().Be((2, 1));
        cpu.Invoking(h => h.TiledGroup = (8, 8)).Should().Throw<ArgumentException>()
            .WithMessage("*8x8 needs 64 threads*allows 2 threads*Use a smaller group*");
        cpu.Invoking(h => h.TiledGroup = (3, 3)).Should().Throw<ArgumentException>()
            .WithMessage("*3x3 is not a tiled-SGEMM group*16x16, 8x8*");
        cpu.TiledGroup.Should().Be((2, 1), "a refused group changes nothing");
        // Large and Wide need 16x16 threads; Tiled runs on groups of 2, and Auto keeps the host SGEMM there.
        using var pin = new MatMulPin(cpu, MatMulPath.Large);
        cpu.Invoking(h => MatMulKernels.Choose(h, 64, 64)).Should().Throw<InvalidOperationException>()
            .WithMessage("*Large kernel needs groups of 256*allows 2*Use Tiled*");
        cpu.MatMulPath = MatMulPath.Tiled;
        MatMulKernels.Choose(cpu, 64, 64).Should().Be(MatMulPath.Tiled);
        cpu.MatMulPath = MatMulPath.Auto;
        MatMulKernels.Choose(cpu, 64, 64).Should().Be(MatMulPath.Host);
    }

    [Fact]
    public void WarpMaxOutputs_refuses_a_negative_count()
    {
        var host = Device.CpuSimulator(2, 1, 10).Host;
        host.Invoking(h => h.WarpMaxOutputs = -1).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*0 or more*");
        host.WarpMaxOutputs.Should().Be(0, "off by default, and a refused value changes nothing");
    }

    // The team grows while it cuts a thread's round trips to memory (four k a trip) and the threads fit
    // the device: on a simulator of 16 warps of 16 lanes, 256 resident threads.
    [Fact]
    public void Warp_teams_follow_K_within_the_group_and_the_device()
    {
        var host = Device.CpuSimulator(16, 16, 1).Host;
        long resident = (long)host.MaxGroups * host.GroupSize;
        resident.Should().Be(256, "the rule below is worked for one group of 256 resident threads");
        using var pin = new MatMulPin(host, MatMulPath.Warp);
        MatMulKernels.WarpTeam(host, 4, 4, 1000).Should().Be(16, "one block: 16 warps take K = 1000 in one trip (4 k a thread) where one warp takes 16");
        MatMulKernels.WarpTeam(host, 4, 4, 128).Should().Be(2, "K = 128: 2 warps take 4 k a thread, one trip");
        MatMulKernels.WarpTeam(host, 4, 4, 64).Should().Be(1, "K = 64: one warp takes it in one trip");
        MatMulKernels.WarpTeam(host, 8, 8, 1000).Should().Be(4, "4 blocks: 4 warps each fill the 256 threads");
        MatMulKernels.WarpTeam(host, 64, 100, 1000).Should().Be(1, "400 blocks already fill the device a warp each");
        MatMulKernels.Describe(host, 4, 4, 1000).Should().Be("Warp, teams of 16 warps");
        MatMulKernels.Describe(host, 64, 100, 1000).Should().Be("Warp");
        host.WarpTeam = 4;
        MatMulKernels.WarpTeam(host, 64, 100, 1000).Should().Be(4, "forced");
        host.WarpTeam = 32;
        host.Invoking(h => MatMulKernels.WarpTeam(h, 4, 4, 1000)).Should().Throw<NotSupportedException>()
            .WithMessage("*team of 32 warps does not fit*groups of 16 warps*KernelHost.WarpTeam*");
        host.Invoking(h => h.WarpTeam = 3).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*power of two*");
        host.WarpTeam.Should().Be(32, "a refused value changes nothing");
    }

    // Each loaded kernel, named as its launcher loads it; on CUDA with what ptxas gave it.
    [Fact]
    public void KernelResources_lists_every_loaded_kernel_and_on_CUDA_its_registers_and_shared_memory()
    {
        bool cuda = Device.Available.Any(d => d.Kind == DeviceKind.Cuda);
        var host = cuda ? Device.Get("cuda").Host : Device.CpuSimulator(16, 16, 1).Host;
        using var pin = new MatMulPin(host, MatMulPath.Wide);
        int m = 130, n = 68, k = 40;
        using var ab = Upload(host, TestData.Normal(m * k, 1));
        using var bb = Upload(host, TestData.Normal(k * n, 2));
        using var cb = Upload(host, new float[m * n]);
        MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k);
        var wide = host.KernelResources().Where(r => r.Name == "MatMulWide").ToList();
        wide.Should().ContainSingle(r => r.Specialization == "FirstOp", string.Join("\n", host.KernelResources()));
        var r = wide.Single(r => r.Specialization == "FirstOp");
        if (!cuda)
        {
            (r.Registers, r.LocalBytes, r.SharedBytes).Should().Be((-1, -1, -1), "only the CUDA driver says");
            return;
        }
        r.Registers.Should().BeInRange(64, 255, "64 accumulators at least");
        r.LocalBytes.Should().BeGreaterThanOrEqualTo(0);
        // Rows padded to 132 floats (twelfth session) so that a slice's scalar stores fall in different banks.
        r.SharedBytes.Should().Be(2 * 2 * 8 * (128 + 4) * sizeof(float), "two stages of A's and B's 8x128 slices, each row padded by 4 floats");
        r.GroupsOf256PerMultiprocessor.Should().BeGreaterThan(0);
    }

    // Launch bounds change what ptxas may do, never the sums: with and without them the warp kernel gives
    // the same bits, and the two builds are cached apart (the CPU accelerator ignores the bounds, so
    // this checks the load path and the cache; SassTests checks what the bounds do on a GPU).
    [Fact]
    public void The_warp_kernel_with_and_without_launch_bounds_gives_the_same_bits()
    {
        // Groups of 256, as the bounds declare (a simulator of smaller groups loads it without them).
        var host = Device.CpuSimulator(16, 16, 1).Host;
        using var pin = new MatMulPin(host, MatMulPath.Warp, warpTeam: 4);
        host.LaunchBounds.Should().BeTrue("on by default");
        int m = 9, n = 13, k = 301;
        using var ab = Upload(host, TestData.Normal(m * k, 5));
        using var bb = Upload(host, TestData.Normal(k * n, 6));
        float[] Run(KernelHost h)
        {
            using var cb = Upload(h, Enumerable.Repeat(float.NaN, m * n).ToArray());
            MatMulKernels.MatMul(h, ab.View, false, bb.View, false, cb.View, m, n, k);
            return Download(h, cb, m * n);
        }
        var bounded = Run(host);
        var unbounded = Run(host.WithLaunchBounds(false));
        unbounded.Should().Equal(bounded);
        TestData.RelativeError(bounded, Reference.MatMul(TestData.Normal(m * k, 5), false, TestData.Normal(k * n, 6), false, m, n, k))
            .Should().BeLessThan(1e-5);
        var names = host.KernelResources().Select(r => r.Name).ToList();
        names.Should().Contain("MatMulWarp/bounded").And.Contain("MatMulWarp");
        // The team rule counts residency by the threads alone off a GPU, bounds or not.
        host.GroupsPerMultiprocessor(MatMulKernels.WarpBounds).Should().Be(host.MaxGroups / host.Accelerator.NumMultiprocessors);
    }

    // On a GPU the rule counts the groups the bounds guarantee: 2 of 256 a multiprocessor, not the 8 its threads allow.
    [Fact]
    public void On_a_GPU_the_warp_team_rule_counts_the_groups_its_launch_bounds_leave()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU accelerator ignores launch bounds");
        var host = Device.Get("cuda").Host;
        host.GroupsPerMultiprocessor(host.Bounds(MatMulKernels.WarpBounds)).Should().Be(2);
        var off = host.WithLaunchBounds(false);
        off.GroupsPerMultiprocessor(off.Bounds(MatMulKernels.WarpBounds)).Should().Be(host.MaxGroups / host.Accelerator.NumMultiprocessors);
    }

    // A team's sum is in a fixed order (lanes by the shuffle tree, then warps in order): a repeat has the same bits.
    [Fact]
    public void A_warp_team_repeats_bit_for_bit()
    {
        var host = HostFor("warp-team4");
        using var pin = PinFor(host, "warp-team4");
        int m = 9, n = 13, k = 301;
        using var ab = Upload(host, TestData.Normal(m * k, 5));
        using var bb = Upload(host, TestData.Normal(k * n, 6));
        float[] Run()
        {
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k);
            return Download(host, cb, m * n);
        }
        Run().Should().Equal(Run());
    }

    // The warp kernel's sums in a fixed order, emulated here in float: thread r of a team of `team`
    // warps of w lanes adds its k = r, r + span, ... in order; a warp's lanes are added by halving (lane
    // l adds lane l + d, d = w/2, ..., 1, as a shuffle tree pairs them); the team's warps in order.
    // The kernel must give exactly these bits on warps of 2 (this accelerator), 16 and 32 (a GPU's),
    // alone and in teams of 4: however it moves its sums between lanes (the CPU accelerator rounds
    // each multiply and add as this emulation does, with no fused multiply-add; a GPU fuses them, so
    // in the CUDA suite too the kernel runs on CPU simulators).
    [Theory]
    [InlineData(2, 1)]
    [InlineData(2, 4)]
    [InlineData(16, 1)]
    [InlineData(16, 4)]
    [InlineData(32, 1)]
    [InlineData(32, 4)]
    public void The_warp_kernel_sums_in_its_fixed_tree_bit_for_bit(int lanes, int team)
    {
        // Warps of 16 and 32 run 8 to a group (a GPU's groups of 256); two-lane teams on groups of 4 warps.
        var host = Host.IsCpu && Host.Accelerator.WarpSize == lanes && team == 1 ? Host : Device.CpuSimulator(lanes, lanes == 2 ? 4 : 8, 1).Host;
        host.Accelerator.WarpSize.Should().Be(lanes);
        using var pin = new MatMulPin(host, MatMulPath.Warp, warpTeam: team);
        int m = 5, n = 6, k = 301;
        var a = TestData.Normal(m * k, 41);
        var b = TestData.Normal(k * n, 42);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k);
        var c = Download(host, cb, m * n);
        var expected = new float[m * n];
        int span = lanes * team;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float total = 0f;
                for (int w = 0; w < team; w++)
                {
                    var sums = new float[lanes];
                    for (int l = 0; l < lanes; l++)
                        for (int kk = w * lanes + l; kk < k; kk += span) sums[l] += a[i * k + kk] * b[kk * n + j];
                    for (int d = lanes / 2; d > 0; d /= 2)
                        for (int l = 0; l < d; l++) sums[l] += sums[l + d];
                    total = w == 0 ? sums[0] : total + sums[0];
                }
                expected[i * n + j] = total;
            }
        c.Should().Equal(expected, $"warps of {lanes}, teams of {team}");
    }

    [Fact]
    public void On_a_GPU_Auto_takes_the_warp_kernel_up_to_WarpMaxOutputs()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda),
            "the rule is for GPUs (the CPU accelerator always takes the host SGEMM); no CUDA device on this machine");
        var host = Device.Get("cuda").Host;
        try
        {
            host.WarpMaxOutputs = 64 * 100;
            MatMulKernels.Choose(host, 64, 100).Should().Be(MatMulPath.Warp);
            MatMulKernels.Choose(host, 1000, 100).Should().NotBe(MatMulPath.Warp);
            MatMulKernels.SplitKScratch(host, 64, 100, 1000).Should().Be(0, "the warp kernel needs no scratch");
        }
        finally
        {
            host.WarpMaxOutputs = 0;
        }
    }

    [Fact]
    public void AUTOGRAD_MATMUL_names_the_initial_path_and_junk_is_refused()
    {
        using var env = new EnvironmentScope("AUTOGRAD_MATMUL");
        env.Set("Wide");
        KernelHost.PathFromEnvironment().Should().Be(MatMulPath.Wide);
        new KernelHost(Host.Accelerator).MatMulPath.Should().Be(MatMulPath.Wide);
        env.Set(null);
        KernelHost.PathFromEnvironment().Should().Be(MatMulPath.Auto);
        env.Set("fastest");
        var act = () => KernelHost.PathFromEnvironment();
        act.Should().Throw<ArgumentException>().WithMessage("*AUTOGRAD_MATMUL=fastest*wide*");
    }

    public static TheoryData<string, string, int, int, int> EpilogueCases()
    {
        var d = new TheoryData<string, string, int, int, int>();
        foreach (var path in Paths)
            foreach (var epi in new[] { "relu", "bias-relu", "mask", "col-axpy", "sgd" })
                foreach (var (m, n, k) in new[] { (1, 7, 33), (65, 130, 7), (130, 33, 65) })
                    if (Affordable(path, m, n)) d.Add(path, epi, m, n, k);
        return d;
    }

    // The fused epilogues the compiled graph uses, each against a double host loop:
    //   relu      C = max(AB, 0)                    (BinaryThen<FirstOp, ClampOp>)
    //   bias-relu C = max(AB + bias[j], 0)          (BinaryThen<AddOp, ClampOp>, operand strides (0, 1))
    //   mask      C = AB where 0 < Y[i,j], else 0   (Flip<ClampGradOp>, operand strides (N, 1))
    //   col-axpy  C = 2 AB + 0.5 C - 3 v[i]         (AxpyOp(-3), operand strides (1, 0), beta 0.5)
    //   sgd       C = C - 0.1 AB                    (FirstOp, alpha -0.1, beta 1: the fused SGD update)
    [Theory]
    [MemberData(nameof(EpilogueCases))]
    public void MatMul_epilogue_matches_host_twin(string path, string epi, int m, int n, int k)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        var a = TestData.Normal(m * k, m + 5 * k);
        var b = TestData.Normal(k * n, n + 3 * k);
        var c0 = TestData.Normal(m * n, 11);
        var bias = TestData.Normal(n, 12);
        var mask = TestData.Normal(m * n, 13).Select(v => Math.Max(v, 0f)).ToArray(); // a relu output: about half 0
        var col = TestData.Normal(m, 14);
        bool keepsC = epi is "col-axpy" or "sgd";
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, keepsC ? c0 : Enumerable.Repeat(float.NaN, m * n).ToArray());
        using var eb = Upload(host, epi switch { "bias-relu" => bias, "mask" => mask, "col-axpy" => col, _ => [float.NaN] });
        long need = MatMulKernels.SplitKScratch(host, m, n, k);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, need)).ToArray());
        var relu = new ClampOp(0f, float.PositiveInfinity);
        switch (epi)
        {
            case "relu":
                MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                    new BinaryThen<FirstOp, ClampOp>(default, relu), eb.View, 0, 0);
                break;
            case "bias-relu":
                MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                    new BinaryThen<AddOp, ClampOp>(default, relu), eb.View, 0, 1);
                break;
            case "mask":
                MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                    new Flip<ClampGradOp>(new ClampGradOp(0f, float.PositiveInfinity)), eb.View, n, 1);
                break;
            case "col-axpy":
                MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, 2f, 0.5f, scratch.View,
                    new AxpyOp(-3f), eb.View, 1, 0);
                break;
            default:
                MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, alpha: -0.1f, beta: 1f, scratch: scratch.View);
                break;
        }
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        var expected = p.Select((v, idx) =>
        {
            int i = idx / n, j = idx % n;
            return epi switch
            {
                "relu" => Math.Max(v, 0),
                "bias-relu" => Math.Max(v + bias[j], 0),
                "mask" => mask[idx] > 0 ? v : 0,
                "col-axpy" => 2 * v + 0.5 * c0[idx] - 3 * col[i],
                _ => c0[idx] - 0.1 * v,
            };
        }).ToArray();
        TestData.ShouldMatch(Download(host, cb, m * n), expected, 1e-4, 4e-5 * Math.Sqrt(k), $"{epi} on {path} {m}x{n}x{k}");
    }
}
