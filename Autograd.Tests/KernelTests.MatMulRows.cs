// MatMulRows: a row chain, each block of rows through every stage in one launch, against the double
// host twin: a product (A either way round), a stage with a sum (the seed's y with its loss and dY)
// and a stage that reads both (the seed's dH, with the first stage's output through its epilogue);
// blocks of 4 rows in one wave of groups and in several; one launch; the bits of a repeat with groups
// running at once; the split's rule; misuse.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, int, int, int, bool, int, int> MatMulRowsCases() => new()
    {
        // (M, N1, K1) of the first stage, N2 of the others, A transposed, simulated multiprocessors
        // and threads a warp (16 warps a group: 512 threads in warps of 32, as a GPU runs a row chain,
        // and 256 in warps of 16; smaller groups, which the simulator runs faster, for the many-block cases).
        { 7, 33, 65, 5, false, 1, 32 },
        { 1, 7, 130, 1, false, 1, 16 },
        { 33, 17, 7, 13, true, 2, 8 },
        { 65, 20, 33, 10, false, 4, 8 },
        { 130, 9, 17, 7, false, 2, 4 },
    };

    // Stage 1: H = A B1. Stage 2: V = H B2 - T, loss = 0.5 * sum of V^2, Y = PowGrad(V, 0.75) = 1.5 V.
    // Stage 3: D = Y B2^T + 0.5 H (the first stage's output as its epilogue operand).
    [Theory]
    [MemberData(nameof(MatMulRowsCases))]
    public void MatMulRows_matches_host_twin(int m, int n1, int k1, int n2, bool transA, int multiprocessors, int warp)
    {
        var host = Device.CpuSimulator(warp, warp >= 16 ? 16 : 4, multiprocessors).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using var rows = new RowsOn(host, true);
        var split = MatMulKernels.RowChainSplit(host, m) ?? throw new InvalidOperationException("no split");
        var a = TestData.Normal(m * k1, m * 3 + k1 + 7);
        var b1 = TestData.Normal(k1 * n1, n1 * 5 + 2);
        var b2 = TestData.Normal(n1 * n2, n2 * 7 + 3);
        var t = TestData.Normal(m * n2, m + n2 + 1);
        using var ab = Upload(host, a);
        using var b1b = Upload(host, b1);
        using var b2b = Upload(host, b2);
        using var tb = Upload(host, t);
        using var sb = Upload(host, [0.75f]);
        using var parts = Upload(host, Enumerable.Repeat(float.NaN, split.Blocks).ToArray());

        var twin = ChainTwin(a, transA, b1, b2, t, m, n1, k1, n2);
        string what = $"{m}x{n1}x{k1} then N2 = {n2}, A transposed {transA}, blocks of {split.RowsPer} rows ({split.Blocks}), groups of {MatMulKernels.RowThreads(host)}";

        var runs = new List<(float Loss, float[] H, float[] Y, float[] D)>();
        for (int rep = 0; rep < 3; rep++)
        {
            using var hb = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
            using var yb = Upload(host, Enumerable.Repeat(float.NaN, m * n2).ToArray());
            using var db = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
            using var loss = Upload(host, [float.NaN]);
            var s1 = MatMulKernels.RowProduct(host, split, ab.View, transA, b1b.View, false, hb.View, m, n1, k1, 1f, 0f, new FirstOp(), hb.View, 0, 0);
            var s2 = MatMulKernels.RowProductSum(host, split, hb.View, false, b2b.View, false, yb.View, m, n2, n1, 1f, 0f,
                new AxpyOp(-1f), tb.View, n2, 1, new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 0.5f, new PowGradOp(2f), sb.View, 0), parts.View);
            var s3 = MatMulKernels.RowProduct(host, split, yb.View, false, b2b.View, true, db.View, m, n1, n2, 1f, 0f,
                new AxpyOp(0.5f), hb.View, n1, 1);
            long launches = host.Launches;
            MatMulKernels.MatMulRows(host, split, new Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>,
                Stages<GroupProduct<AxpyOp, PowOp, PowGradOp>, Stages<GroupProduct<AxpyOp, IdentityOp, FirstOp>, NoStage>>>(s1, new(s2, new(s3, default))));
            (host.Launches - launches).Should().Be(1, what + ": one launch");
            runs.Add((Download(host, loss, 1)[0], Download(host, hb, m * n1), Download(host, yb, m * n2), Download(host, db, m * n1)));
            string lanes = $"{what}, lanes {s1.Lanes}, {s2.Lanes}, {s3.Lanes}";
            ShouldMatchTwin(runs[^1], twin, k1, n1, n2, lanes);
        }
        // The block count went back to zero (else a repeat sums nothing), and the order is fixed.
        runs[1].Loss.Should().Be(runs[0].Loss, what + ": a repeat has the same bits");
        runs[2].Loss.Should().Be(runs[0].Loss, what);
        runs[1].D.Should().Equal(runs[0].D, what);
    }

    // Blocks of 4 rows, however many groups fit at once (they run in waves); none where row chains
    // are off or the products are the host SGEMM's.
    [Fact]
    public void Row_split_follows_the_groups_that_fit()
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using (new RowsOn(host, false)) MatMulKernels.RowChainSplit(host, 64).Should().BeNull("row chains are off");
        using var rows = new RowsOn(host, true);
        int fit = host.MaxGroups;
        MatMulKernels.RowChainSplit(host, 4 * fit).Should().Be(new RowSplit(4 * fit, 4));
        MatMulKernels.RowChainSplit(host, 4 * fit + 1)!.Value.Blocks.Should().Be(fit + 1, "a second wave");
        MatMulKernels.RowChainSplit(host, 1)!.Value.Blocks.Should().Be(1);
        MatMulKernels.RowStageFits(new RowSplit(64, 4), 64, 100, 1000).Should().BeTrue("the seed's h: 400,000 a block");
        MatMulKernels.RowStageFits(new RowSplit(64, 4), 64, 1000, 1000).Should().BeFalse("4,000,000 a block");
        MatMulKernels.RowStageFits(new RowSplit(64, 4), 63, 10, 10).Should().BeFalse("another M");
        using var auto = new MatMulPin(host, MatMulPath.Auto);
        if (host.IsCpu) MatMulKernels.RowChainSplit(host, 64).Should().BeNull("the CPU accelerator's Auto is the host SGEMM");
    }

    [Fact]
    public void MatMulRows_misuse_says_what_and_how_to_fix()
    {
        var host = Device.CpuSimulator(16, 16, 1).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using var a = Upload(host, TestData.Normal(8 * 8, 1));
        using var c = Upload(host, new float[8 * 8]);
        using var loss = Upload(host, new float[1]);
        var split = new RowSplit(8, 4);
        using (new RowsOn(host, false))
        {
            var off = () => MatMulKernels.RowProduct(host, split, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0);
            off.Should().Throw<InvalidOperationException>().WithMessage("RowProduct*8 rows in blocks of 4*RowChains False*RowChainSplit*");
            var run = () => MatMulKernels.MatMulRows(host, split, new NoStage());
            run.Should().Throw<InvalidOperationException>().WithMessage("MatMulRows*RowChains False*RowChainSplit*");
        }
        using var rows = new RowsOn(host, true);
        split = MatMulKernels.RowChainSplit(host, 8)!.Value;
        var otherSplit = () => MatMulKernels.RowProduct(host, split with { RowsPer = split.RowsPer + 4 }, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0);
        otherSplit.Should().Throw<InvalidOperationException>().WithMessage($"*blocks of {split.RowsPer + 4}*RowChainSplit*");
        var otherM = () => MatMulKernels.RowProduct(host, split, a.View.SubView(0, 16), false, a.View, false, c.View, 4, 16, 4, 1f, 0f, new FirstOp(), c.View, 0, 0);
        otherM.Should().Throw<ArgumentException>().WithMessage("RowProduct: 4x16x4*the chain's 8 rows*");
        var noParts = () => MatMulKernels.RowProductSum(host, split, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0,
            new SumTail<IdentityOp, FirstOp>(loss.View, new IdentityOp()), default);
        noParts.Should().Throw<ArgumentException>().WithMessage($"RowProductSum: parts has 0 elements; the {split.Blocks} blocks*");
    }

    // KernelHost.RowChains for one test.
    internal sealed class RowsOn(KernelHost host, bool on) : HostSwitch(() => host.RowChains, v => host.RowChains = v, on);
}
