// MatMulSum: a product whose sum over all elements is taken in its own launch (a SumTail), against
// the double host twin, on every SGEMM path: the loss, the side op written over C, the number of
// launches (one where the tail runs, two where the sum needs a launch of its own), the bits of a
// repeat, and the host's sum against the sum kernel's bits.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, int, int, bool, string> MatMulSumCases()
    {
        var d = new TheoryData<int, int, int, bool, string>();
        var sizes = new (int, int, int)[] { (1, 1, 1), (7, 33, 65), (65, 7, 33), (64, 10, 100), (33, 130, 1) };
        foreach (var path in Paths.Except(SumCoveredElsewhere))
            foreach (var (m, n, k) in sizes.Where(s => Affordable(path, s.Item1, s.Item2)))
                foreach (var side in new[] { false, true })
                    d.Add(m, n, k, side, path);
        return d;
    }

    // The 128x128-tile paths never sum in their own launch: their MatMulSum is their MatMul (every
    // layout and epilogue is tested above) and then Reduce's sum launch, which is the same code for
    // all of them. Wide16 (the GPU's) and Large with K split stand in for these four, which took
    // some 22 s of the suite on 256-thread simulator groups.
    private static readonly string[] SumCoveredElsewhere = ["large", "wide", "wide-split3", "wide16-split3"];

    // The seed's loss: v = A B - Y (Y through the epilogue), loss = 0.5 * sum of v^2, and with the
    // side op C = PowGrad(v, s) = 2 v s with s broadcast from one element; without it C = v.
    [Theory]
    [MemberData(nameof(MatMulSumCases))]
    public void MatMulSum_matches_host_twin_on_every_path(int m, int n, int k, bool side, string path)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        var a = TestData.Normal(m * k, m * 7 + k);
        var b = TestData.Normal(k * n, n * 5 + k);
        var y = TestData.Normal(m * n, m + n);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var yb = Upload(host, y);
        using var sb = Upload(host, [0.75f]);
        using var loss = Upload(host, [float.NaN]);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)MatMulKernels.MatMulSumScratch(host, m, n, k)).ToArray());
        var tail = side
            ? new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 0.5f, new PowGradOp(2f), sb.View, 0)
            : new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 0.5f);

        var p = Reference.MatMul(a, false, b, false, m, n, k);
        var v = p.Select((x, i) => x - y[i]).ToArray();
        double expectedLoss = 0.5 * v.Sum(x => x * x);
        var expectedC = side ? v.Select(x => 2 * x * 0.75).ToArray() : v;
        string what = $"{MatMulKernels.Describe(host, m, n, k, withSum: true)} {m}x{n}x{k} side={side}";
        bool oneLaunch = PathOf(path) == MatMulPath.Host || MatMulKernels.SumInSameLaunch(host, m, n, k);
        // Split K in two launches: the tiled kernel where asked, Large, Wide and Wide16 always.
        int productLaunches = path is "split3-two-launches" or "large-split3" or "wide-split3" or "wide16-split3" && MatMulKernels.SplitK(host, m, n, k) > 1 ? 2 : 1;

        var runs = new List<(float Loss, float[] C)>();
        for (int rep = 0; rep < 2; rep++)
        {
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            long launches = host.Launches;
            MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                new AxpyOp(-1f), yb.View, n, 1, tail);
            (host.Launches - launches).Should().Be(productLaunches + (oneLaunch ? 0 : 1), what);
            runs.Add((Download(host, loss, 1)[0], Download(host, cb, m * n)));
        }
        TestData.ShouldMatch([runs[0].Loss], [expectedLoss], 1e-4, 1e-5, what + ": loss");
        TestData.ShouldMatch(runs[0].C, expectedC, 1e-4, 2e-5 * Math.Sqrt(k), what + ": C");
        // The count of groups went back to zero (or the repeat's last group would not know it is last).
        runs[1].Loss.Should().Be(runs[0].Loss, what + ": a repeat has the same bits");
        runs[1].C.Should().Equal(runs[0].C, what);

        // KernelHost.SumTailInLaunch = false: the same work, the sum always in a launch of its own.
        host.SumTailInLaunch = false;
        MatMulKernels.SumInSameLaunch(host, m, n, k).Should().BeFalse();
        using var c2 = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        long before = host.Launches;
        MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, c2.View, m, n, k, 1f, 0f, scratch.View,
            new AxpyOp(-1f), yb.View, n, 1, tail);
        (host.Launches - before).Should().Be(productLaunches + (PathOf(path) == MatMulPath.Host ? 0 : 1), what + ", sum not in the launch");
        Download(host, c2, m * n).Should().Equal(runs[0].C, "the product and side op are the same element by element");
        var apart = Download(host, loss, 1);
        TestData.ShouldMatch(apart, [expectedLoss], 1e-4, 1e-5, what + ", sum not in the launch: loss");
        // A tail on a group of Reduce's size adds in Reduce's one-group order: the same bits.
        int tailThreads = PathOf(path) is MatMulPath.Small or MatMulPath.Warp || productLaunches == 2
            ? host.GroupSize : host.TiledGroup.X * host.TiledGroup.Y;
        if (oneLaunch && PathOf(path) != MatMulPath.Host && tailThreads == host.ReduceGroupSize)
            apart[0].Should().Be(runs[0].Loss, what + ": the tail's order is Reduce's");
    }

    // With 2 simulated multiprocessors groups run at the same time, so which group counts in last
    // varies from run to run; the loss must not. Tiled split 5 (the fixup, then the tail), and Small.
    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Tiled)]
    [InlineData(MatMulPath.Small)]
    public void MatMulSum_with_groups_running_at_once_repeats_bit_for_bit(MatMulPath path)
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, path, path == MatMulPath.Tiled ? 5 : null);
        int m = 64, n = 60, k = 160;
        var a = TestData.Normal(m * k, 41);
        var b = TestData.Normal(k * n, 42);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var sb = Upload(host, [1f]);
        using var loss = Upload(host, [float.NaN]);
        using var scratch = Upload(host, new float[MatMulKernels.MatMulSumScratch(host, m, n, k)]);
        MatMulKernels.SumInSameLaunch(host, m, n, k).Should().BeTrue();
        var tail = new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 1f, new PowGradOp(2f), sb.View, 0);
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        var losses = new List<float>();
        for (int rep = 0; rep < 3; rep++)
        {
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                new FirstOp(), cb.View, 0, 0, tail);
            losses.Add(Download(host, loss, 1)[0]);
            TestData.ShouldMatch(Download(host, cb, m * n), p.Select(v => 2 * v).ToArray(), 1e-4, 1e-4, $"{path}: C = 2 AB");
        }
        TestData.ShouldMatch([losses[0]], [p.Sum(v => v * v)], 1e-4, 1e-3, $"{path}: sum of (AB)^2");
        losses.Should().AllBeEquivalentTo(losses[0], "the order of the sum does not depend on which group is last");
    }

    // The tail walks four elements a thread a trip, every load first, and its last trip adds only the
    // elements it has. On groups of 256, outputs of part of one trip and of several with a partial
    // last trip: a side operand per element (stride 1: C = 2 v s element by element, and the loss),
    // and a map that is not 0 at 0 (x + 1: the sum is sum(AB) + M N, not more).
    [Theory]
    [InlineData(MatMulPath.Tiled, 7, 33, 65)]
    [InlineData(MatMulPath.Tiled, 33, 65, 17)]
    [InlineData(MatMulPath.Small, 65, 33, 7)]
    public void MatMulSum_tail_trips_match_host_twin(MatMulPath path, int m, int n, int k)
    {
        var host = Device.CpuSimulator(16, 16, 1).Host;
        using var pin = new MatMulPin(host, path, null);
        var a = TestData.Normal(m * k, 51);
        var b = TestData.Normal(k * n, 52);
        var s = TestData.Normal(m * n, 53);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var sb = Upload(host, s);
        using var loss = Upload(host, [float.NaN]);
        using var scratch = Upload(host, new float[MatMulKernels.MatMulSumScratch(host, m, n, k)]);
        MatMulKernels.SumInSameLaunch(host, m, n, k).Should().BeTrue();
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        string what = $"{path} {m}x{n}x{k}";
        float[] Run<TMap, TSide>(SumTail<TMap, TSide> tail)
            where TMap : struct, IUnaryOp
            where TSide : struct, IBinaryOp
        {
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                new FirstOp(), cb.View, 0, 0, tail);
            return Download(host, cb, m * n);
        }

        var c = Run(new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 1f, new PowGradOp(2f), sb.View, 1));
        TestData.ShouldMatch(c, p.Select((v, i) => 2 * v * s[i]).ToArray(), 1e-4, 1e-4, what + ": C = 2 AB s");
        TestData.ShouldMatch(Download(host, loss, 1), [p.Sum(v => v * v)], 1e-4, 1e-3, what + ": sum of (AB)^2");
        Run(new SumTail<AddScalarOp, FirstOp>(loss.View, new AddScalarOp(1f)));
        TestData.ShouldMatch(Download(host, loss, 1), [p.Sum() + m * n], 1e-4, 1e-3, what + ": sum of AB + 1");
    }

    // Past what one group of Reduce's sum takes (64K elements on the CPU accelerator), the sum runs
    // in a second launch, and the host's twin takes two passes: both as Reduce.SumAllMap does.
    [Theory]
    [InlineData("small")]
    [InlineData("host")]
    public void MatMulSum_of_a_large_output_sums_in_two_passes(string path)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        int m = 260, n = 270, k = 3;
        MatMulKernels.SumInSameLaunch(host, m, n, k).Should().BeFalse("one group would walk 70,200 elements");
        var a = TestData.Normal(m * k, 1);
        var b = TestData.Normal(k * n, 2);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        using var loss = Upload(host, [float.NaN]);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)MatMulKernels.MatMulSumScratch(host, m, n, k)).ToArray());
        MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
            new FirstOp(), cb.View, 0, 0, new SumTail<IdentityOp, FirstOp>(loss.View, new IdentityOp()));
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        TestData.ShouldMatch(Download(host, loss, 1), [p.Sum()], 1e-4, 1e-3, $"{path}: sum of a 260x270 product");
        TestData.ShouldMatch(Download(host, cb, m * n), p, 1e-4, 1e-5, $"{path}: C left as the product");
    }

    // The host's sum (the CPU accelerator's tail) must have the sum kernel's bits: a compiled step
    // with and without fusion then trains bit for bit alike there (FusionTests).
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(640)]
    [InlineData(65536)]
    [InlineData(65537)]
    [InlineData(200003)]
    public void Host_sum_has_the_bits_of_the_sum_kernel(int count)
    {
        Assert.SkipUnless(Host.IsCpu, "the host sum reads host memory: CPU accelerator only");
        var x = TestData.Normal(count, count);
        using var s = Upload(Host, [1.5f]);
        using var scratch = Upload(Host, new float[Reduce.SumAllScratch(Host)]);
        using var xk = Upload(Host, x);
        using var sideK = Upload(Host, new float[count]);
        using var lossK = Upload(Host, [float.NaN]);
        Reduce.SumAllMap(Host, xk.View, lossK.View, scratch.View, new PowOp(2f), sideK.View, s.View, 0, new PowGradOp(2f), 0.25f);
        using var xh = Upload(Host, x);
        using var lossH = Upload(Host, [float.NaN]);
        Reduce.HostSumAllMap(Host, xh.View, new SumTail<PowOp, PowGradOp>(lossH.View, new PowOp(2f), 0.25f, new PowGradOp(2f), s.View, 0));
        Download(Host, lossH, 1).Should().Equal(Download(Host, lossK, 1), $"{count} elements");
        Download(Host, xh, count).Should().Equal(Download(Host, sideK, count), "the side op, in place");
    }

    [Fact]
    public void The_tail_takes_at_most_MaxTailElements()
    {
        using var pin = new MatMulPin(Host, MatMulPath.Small);
        MatMulKernels.MaxTailElements.Should().Be(4096);
        MatMulKernels.SumInSameLaunch(Host, 64, 64, 10).Should().BeTrue("4096 elements");
        MatMulKernels.SumInSameLaunch(Host, 64, 65, 10).Should().BeFalse("4160 elements: a second launch");
        MatMulKernels.Describe(Host, 64, 65, 10, withSum: true).Should().Be("Small, sum in a second launch");
        MatMulKernels.Describe(Host, 64, 64, 10, withSum: true).Should().Be("Small, sum in the same launch");
    }

    [Fact]
    public void MatMulSum_refuses_an_empty_product_and_a_short_scratch()
    {
        using var one = Upload(Host, [1f]);
        var tail = new SumTail<IdentityOp, FirstOp>(one.View, new IdentityOp());
        Action empty = () => MatMulKernels.MatMulSum(Host, one.View.SubView(0, 0), false, one.View.SubView(0, 0), false,
            one.View.SubView(0, 0), 0, 1, 0, 1f, 0f, default, new FirstOp(), one.View, 0, 0, tail);
        empty.Should().Throw<ArgumentException>().WithMessage("MatMulSum: C is 0x1*nothing to sum*");
        using var big = Upload(Host, new float[64 * 64]);
        Action shortScratch = () => MatMulKernels.MatMulSum(Host, big.View.SubView(0, 64), false, big.View.SubView(0, 64), false, big.View, 64, 64, 1, 1f, 0f,
            default, new FirstOp(), big.View, 0, 0, tail);
        shortScratch.Should().Throw<ArgumentException>().WithMessage("MatMulSum: scratch has 0 elements, needs *MatMulSumScratch*");
        Action badStride = () => _ = new SumTail<IdentityOp, FirstOp>(one.View, new IdentityOp(), 1f, new FirstOp(), one.View, 2);
        badStride.Should().Throw<ArgumentException>().WithMessage("SumTail: sStride must be 0 or 1, got 2.");
    }
}
