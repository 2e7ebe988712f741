// MatMulPair: two independent products in one launch of the tiled or the warp kernel, against the double host
// twin and against the same two products launched one by one (the same sums in the same order, so
// the same bits), on the tiled kernel's group shapes, with K split or not, on the warp kernel a warp
// and a team of 4 warps a block, and on the paths that do
// not pair (two launches).
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, int, int, int, int, int, string> MatMulPairCases()
    {
        var d = new TheoryData<int, int, int, int, int, int, string>();
        // The seed's gradient products shrunk (1000x100 and 100x10, K = 64), and awkward shapes.
        var pairs = new (int, int, int, int, int, int)[] { (130, 33, 40, 33, 7, 40), (1, 1, 1, 65, 7, 33), (7, 65, 130, 1, 33, 17) };
        foreach (var path in new[] { "tiled", "tiled-8x8", "tiled-2x1", "split3", "split3-2x1", "split3-two-launches", "warp", "warp-team4", "small", "host" })
            foreach (var (m1, n1, k1, m2, n2, k2) in pairs)
                d.Add(m1, n1, k1, m2, n2, k2, path);
        return d;
    }

    // First: C1 = -0.5 A1^T B1 + C1 (an SGD update's form, accumulating into data); second:
    // C2 = A2 B2 + bias row (an operand broadcast along rows), C2 poisoned first.
    [Theory]
    [MemberData(nameof(MatMulPairCases))]
    public void MatMulPair_matches_host_twin_and_the_products_one_by_one(int m1, int n1, int k1, int m2, int n2, int k2, string path)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        var a1 = TestData.Normal(k1 * m1, 1);
        var b1 = TestData.Normal(k1 * n1, 2);
        var c1 = TestData.Normal(m1 * n1, 3);
        var a2 = TestData.Normal(m2 * k2, 4);
        var b2 = TestData.Normal(k2 * n2, 5);
        var bias = TestData.Normal(n2, 6);
        using var a1b = Upload(host, a1);
        using var b1b = Upload(host, b1);
        using var a2b = Upload(host, a2);
        using var b2b = Upload(host, b2);
        using var biasb = Upload(host, bias);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN,
            (int)Math.Max(1, MatMulKernels.MatMulPairScratch(host, m1, n1, k1, m2, n2, k2))).ToArray());
        bool paired = MatMulKernels.PairInOneLaunch(host, m1, n1, k1, m2, n2, k2);
        string what = $"{path} {m1}x{n1}x{k1} + {m2}x{n2}x{k2}, {(paired ? "paired" : "one by one")}";
        if (path is "small" or "host" or "split3-two-launches") paired.Should().BeFalse(what);
        // The warp kernel pairs two products only when their teams agree; the team follows K and the
        // device's resident threads (a GPU gives 7x65x130 and 1x33x17 different teams).
        else if (path == "warp")
            paired.Should().Be(MatMulKernels.WarpTeam(host, m1, n1, k1) == MatMulKernels.WarpTeam(host, m2, n2, k2), what);
        else paired.Should().BeTrue(what);

        (float[] C1, float[] C2, long Launches) Run(bool pair)
        {
            using var c1b = Upload(host, c1);
            using var c2b = Upload(host, Enumerable.Repeat(float.NaN, m2 * n2).ToArray());
            var first = new GemmCall(a1b.View, true, b1b.View, false, c1b.View, m1, n1, k1, -0.5f, 1f, c1b.View, 0, 0);
            var second = new GemmCall(a2b.View, false, b2b.View, false, c2b.View, m2, n2, k2, 1f, 0f, biasb.View, 0, 1);
            long before = host.Launches;
            if (pair) MatMulKernels.MatMulPair(host, first, new FirstOp(), second, new AddOp(), scratch.View);
            else
            {
                MatMulKernels.MatMul(host, first.A, true, first.B, false, first.C, m1, n1, k1, -0.5f, 1f, scratch.View, new FirstOp(), first.C, 0, 0);
                MatMulKernels.MatMul(host, second.A, false, second.B, false, second.C, m2, n2, k2, 1f, 0f, scratch.View, new AddOp(), biasb.View, 0, 1);
            }
            return (Download(host, c1b, m1 * n1), Download(host, c2b, m2 * n2), host.Launches - before);
        }

        var p = Run(pair: true);
        var expected1 = Reference.MatMul(a1, true, b1, false, m1, n1, k1).Select((v, i) => -0.5 * v + c1[i]).ToArray();
        var expected2 = Reference.MatMul(a2, false, b2, false, m2, n2, k2).Select((v, i) => v + bias[i % n2]).ToArray();
        TestData.ShouldMatch(p.C1, expected1, 1e-4, 2e-5 * Math.Sqrt(k1), what + ": first");
        TestData.ShouldMatch(p.C2, expected2, 1e-4, 2e-5 * Math.Sqrt(k2), what + ": second");
        var apart = Run(pair: false);
        if (paired) p.Launches.Should().Be(1, what);
        else p.Launches.Should().Be(apart.Launches, what);
        p.C1.Should().Equal(apart.C1, what + ": the same sums as the first product alone");
        p.C2.Should().Equal(apart.C2, what + ": the same sums as the second product alone");
        var again = Run(pair: true);
        again.C1.Should().Equal(p.C1, "the split-K counters were left at zero");
        again.C2.Should().Equal(p.C2);
        host.PairProducts = false;
        MatMulKernels.PairInOneLaunch(host, m1, n1, k1, m2, n2, k2).Should().BeFalse("KernelHost.PairProducts is off");
    }

    // With 2 simulated multiprocessors the two products' groups run at the same time.
    [CpuOnly]
    [Fact]
    public void MatMulPair_with_groups_running_at_once_matches_the_products_one_by_one()
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, MatMulPath.Tiled, 3);
        int m1 = 130, n1 = 70, k1 = 100, m2 = 33, n2 = 7, k2 = 100;
        MatMulKernels.PairInOneLaunch(host, m1, n1, k1, m2, n2, k2).Should().BeTrue();
        var a1 = TestData.Normal(m1 * k1, 51);
        var b1 = TestData.Normal(k1 * n1, 52);
        var a2 = TestData.Normal(m2 * k2, 53);
        var b2 = TestData.Normal(k2 * n2, 54);
        using var a1b = Upload(host, a1);
        using var b1b = Upload(host, b1);
        using var a2b = Upload(host, a2);
        using var b2b = Upload(host, b2);
        using var scratch = Upload(host, new float[MatMulKernels.MatMulPairScratch(host, m1, n1, k1, m2, n2, k2)]);
        var e1 = Reference.MatMul(a1, false, b1, false, m1, n1, k1);
        var e2 = Reference.MatMul(a2, false, b2, false, m2, n2, k2);
        var runs = new List<(float[], float[])>();
        for (int rep = 0; rep < 3; rep++)
        {
            using var c1 = Upload(host, Enumerable.Repeat(float.NaN, m1 * n1).ToArray());
            using var c2 = Upload(host, Enumerable.Repeat(float.NaN, m2 * n2).ToArray());
            MatMulKernels.MatMulPair(host,
                new GemmCall(a1b.View, false, b1b.View, false, c1.View, m1, n1, k1, 1f, 0f, c1.View, 0, 0), new FirstOp(),
                new GemmCall(a2b.View, false, b2b.View, false, c2.View, m2, n2, k2, 1f, 0f, c2.View, 0, 0), new FirstOp(), scratch.View);
            runs.Add((Download(host, c1, m1 * n1), Download(host, c2, m2 * n2)));
        }
        TestData.ShouldMatch(runs[0].Item1, e1, 1e-4, 2e-5 * Math.Sqrt(k1), "first");
        TestData.ShouldMatch(runs[0].Item2, e2, 1e-4, 2e-5 * Math.Sqrt(k2), "second");
        foreach (var (c1, c2) in runs.Skip(1))
        {
            c1.Should().Equal(runs[0].Item1);
            c2.Should().Equal(runs[0].Item2);
        }
    }

    [Fact]
    public void MatMulPair_refuses_a_short_scratch_naming_what_it_needs()
    {
        var host = HostFor("split3");
        using var pin = PinFor(host, "split3");
        using var buf = Upload(host, new float[64 * 64]);
        var p = new GemmCall(buf.View.SubView(0, 64 * 32), false, buf.View.SubView(0, 32 * 64), false, buf.View, 64, 64, 32, 1f, 0f, buf.View, 0, 0);
        Action run = () => MatMulKernels.MatMulPair(host, p, new FirstOp(), p, new FirstOp(), buf.View.SubView(0, 10));
        run.Should().Throw<ArgumentException>().WithMessage("MatMulPair: scratch has 10 elements, needs 16384. Ask MatMulPairScratch first.");
    }
}
