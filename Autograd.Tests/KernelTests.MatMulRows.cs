// MatMulRows: a row chain, each block of rows through every stage in one launch, against the double
// host twin: a product (A either way round), a stage with a sum (the seed's y with its loss and dY)
// and a stage that reads both (the seed's dH, with the first stage's output through its epilogue);
// blocks of 4 rows in one wave of groups and in several; the first stage shared out among a block's
// groups (the last to count in runs the rest); one launch; the bits of a repeat with groups running
// at once; a block's bits in whichever share; the split's rule; misuse.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, int, int, int, bool, int, int, int> MatMulRowsCases() => new()
    {
        // (M, N1, K1) of the first stage, N2 of the others, A transposed, simulated multiprocessors
        // and threads a warp (16 warps a group: 512 threads in warps of 32, as a GPU runs a row chain,
        // and 256 in warps of 16; smaller groups, which the simulator runs faster, for the many-block
        // cases), and the groups that share a block's first stage (KernelHost.RowShares; 0: the rule).
        { 7, 33, 65, 5, false, 1, 32, 1 },
        { 7, 33, 65, 5, false, 2, 16, 3 },
        { 1, 7, 130, 1, false, 1, 16, 1 },
        { 1, 7, 130, 1, false, 2, 16, 0 },
        { 33, 17, 7, 13, true, 2, 8, 1 },
        { 33, 17, 7, 13, true, 4, 8, 5 },
        { 65, 20, 33, 10, false, 4, 8, 2 },
        { 130, 9, 17, 7, false, 2, 4, 1 },
    };

    // Stage 1: H = A B1. Stage 2: V = H B2 - T, loss = 0.5 * sum of V^2, Y = PowGrad(V, 0.75) = 1.5 V.
    // Stage 3: D = Y B2^T + 0.5 H (the first stage's output as its epilogue operand).
    [CpuOnly]
    [Theory]
    [MemberData(nameof(MatMulRowsCases))]
    public void MatMulRows_matches_host_twin(int m, int n1, int k1, int n2, bool transA, int multiprocessors, int warp, int shares)
    {
        var host = Device.CpuSimulator(warp, warp >= 16 ? 16 : 4, multiprocessors).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using var rows = new RowsOn(host, true);
        using var sharing = new RowSharesSet(host, shares);
        var split = MatMulKernels.RowChainSplit(host, m, n1) ?? throw new InvalidOperationException("no split");
        if (shares > 0) split.Shares.Should().Be(shares, "RowShares is set");
        var (a, b1, b2, t) = RowChainData(m, n1, k1, n2);
        var twin = ChainTwin(a, transA, b1, b2, t, m, n1, k1, n2);
        string what = $"{m}x{n1}x{k1} then N2 = {n2}, A transposed {transA}, blocks of {split.RowsPer} rows ({split.Blocks}), "
            + $"{split.Shares} groups a block, groups of {MatMulKernels.RowThreads(host)}";
        var runs = RunRowChain(host, split, a, transA, b1, b2, t, m, n1, k1, n2, repeats: 3, what,
            (run, lanes) => ShouldMatchTwin(run, twin, k1, n1, n2, $"{what}, lanes {string.Join(", ", lanes)}"));
        // The counters went back to zero (else a repeat sums nothing, or its later stages never run), and the order is fixed.
        runs[1].Loss.Should().Be(runs[0].Loss, what + ": a repeat has the same bits");
        runs[2].Loss.Should().Be(runs[0].Loss, what);
        runs[1].D.Should().Equal(runs[0].D, what);
    }

    // A block's 4x4 blocks and their lanes do not depend on the share they fall in: with the lanes of
    // one group a block, every share count gives its bits.
    [CpuOnly]
    [Fact]
    public void A_shared_first_stage_keeps_the_bits_of_one_group_a_block()
    {
        const int m = 7, n1 = 33, k1 = 65, n2 = 5;
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using var rows = new RowsOn(host, true);
        var (a, b1, b2, t) = RowChainData(m, n1, k1, n2);
        (float Loss, float[] H, float[] Y, float[] D) Run(int shares, out int lanes)
        {
            using var sharing = new RowSharesSet(host, shares);
            var split = MatMulKernels.RowChainSplit(host, m, n1)!.Value;
            split.Shares.Should().Be(shares);
            int seen = 0;
            var run = RunRowChain(host, split, a, false, b1, b2, t, m, n1, k1, n2, repeats: 1, $"{shares} groups a block",
                (_, l) => seen = l[0])[0];
            lanes = seen;
            return run;
        }
        var one = Run(1, out int oneLanes);
        foreach (int shares in (int[])[2, 3, 9])
        {
            var shared = Run(shares, out int lanes);
            lanes.Should().Be(oneLanes, "the first stage's blocks fit one round of lanes either way (the premise of this test)");
            shared.H.Should().Equal(one.H, $"{shares} groups a block");
            shared.Y.Should().Equal(one.Y, $"{shares} groups a block");
            shared.D.Should().Equal(one.D, $"{shares} groups a block");
            shared.Loss.Should().Be(one.Loss, $"{shares} groups a block");
        }
    }

    private static (float[] A, float[] B1, float[] B2, float[] T) RowChainData(int m, int n1, int k1, int n2) =>
        (TestData.Normal(m * k1, m * 3 + k1 + 7), TestData.Normal(k1 * n1, n1 * 5 + 2), TestData.Normal(n1 * n2, n2 * 7 + 3), TestData.Normal(m * n2, m + n2 + 1));

    // The three stages above as one row chain, `repeats` launches into poisoned outputs; `check` sees
    // each run and the three stages' lanes.
    private static List<(float Loss, float[] H, float[] Y, float[] D)> RunRowChain(KernelHost host, RowSplit split, float[] a, bool transA,
        float[] b1, float[] b2, float[] t, int m, int n1, int k1, int n2, int repeats, string what,
        Action<(float Loss, float[] H, float[] Y, float[] D), int[]> check)
    {
        using var ab = Upload(host, a);
        using var b1b = Upload(host, b1);
        using var b2b = Upload(host, b2);
        using var tb = Upload(host, t);
        using var sb = Upload(host, [0.75f]);
        using var parts = Upload(host, Enumerable.Repeat(float.NaN, split.Blocks).ToArray());
        var runs = new List<(float Loss, float[] H, float[] Y, float[] D)>();
        for (int rep = 0; rep < repeats; rep++)
        {
            using var hb = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
            using var yb = Upload(host, Enumerable.Repeat(float.NaN, m * n2).ToArray());
            using var db = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
            using var loss = Upload(host, [float.NaN]);
            var s1 = MatMulKernels.RowProduct(host, split, ab.View, transA, b1b.View, false, hb.View, m, n1, k1, 1f, 0f, new FirstOp(), hb.View, 0, 0, head: true);
            var s2 = MatMulKernels.RowProductSum(host, split, hb.View, false, b2b.View, false, yb.View, m, n2, n1, 1f, 0f,
                new AxpyOp(-1f), tb.View, n2, 1, new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 0.5f, new PowGradOp(2f), sb.View, 0), parts.View);
            var s3 = MatMulKernels.RowProduct(host, split, yb.View, false, b2b.View, true, db.View, m, n1, n2, 1f, 0f,
                new AxpyOp(0.5f), hb.View, n1, 1);
            long launches = host.Launches;
            MatMulKernels.MatMulRows(host, split, new Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>,
                Stages<GroupProduct<AxpyOp, PowOp, PowGradOp>, Stages<GroupProduct<AxpyOp, IdentityOp, FirstOp>, NoStage>>>(s1, new(s2, new(s3, default))));
            (host.Launches - launches).Should().Be(1, what + ": one launch");
            runs.Add((Download(host, loss, 1)[0], Download(host, hb, m * n1), Download(host, yb, m * n2), Download(host, db, m * n1)));
            check(runs[^1], [s1.Lanes, s2.Lanes, s3.Lanes]);
        }
        return runs;
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
        // Shares of the first stage: the multiprocessors spread over the blocks, at most the stage's
        // columns of 4x4 blocks; none where it sums (no head columns) or has one column of blocks.
        host.Accelerator.NumMultiprocessors.Should().Be(2);
        MatMulKernels.RowChainSplit(host, 4, 64).Should().Be(new RowSplit(4, 4, 2), "one block, two multiprocessors");
        MatMulKernels.RowChainSplit(host, 4, 5).Should().Be(new RowSplit(4, 4, 2), "two columns of blocks");
        MatMulKernels.RowChainSplit(host, 4, 4).Should().Be(new RowSplit(4, 4, 1), "one column of blocks");
        MatMulKernels.RowChainSplit(host, 4, 0).Should().Be(new RowSplit(4, 4, 1), "a summing first stage");
        MatMulKernels.RowChainSplit(host, 8, 64).Should().Be(new RowSplit(8, 4, 1), "as many blocks as multiprocessors");
        using (new RowSharesSet(host, 5))
        {
            MatMulKernels.RowChainSplit(host, 64, 100)!.Value.Shares.Should().Be(5, "KernelHost.RowShares is set");
            MatMulKernels.RowChainSplit(host, 64, 9)!.Value.Shares.Should().Be(3, "9 columns are 3 blocks of 4");
            MatMulKernels.RowChainSplit(host, 4 * (KernelHost.MaxSplitKTiles + 1), 100)!.Value.Shares.Should().Be(1, "more blocks than the host's counters");
        }
        var negative = () => host.RowShares = -1;
        negative.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*RowShares*-1*0 (the rule)*");
        using var auto = new MatMulPin(host, MatMulPath.Auto);
        if (host.IsCpu) MatMulKernels.RowChainSplit(host, 64).Should().BeNull("the CPU accelerator's Auto is the host SGEMM");
    }

    [Fact]
    public void AUTOGRAD_ROW_SHARES_sets_the_shares_and_junk_is_refused()
    {
        using var env = new EnvironmentScope(KernelHost.RowSharesVariable);
        env.Set(" 3 ");
        new KernelHost(Host.Accelerator).RowShares.Should().Be(3);
        env.Set(null);
        new KernelHost(Host.Accelerator).RowShares.Should().Be(0, "unset: the rule");
        env.Set("-2");
        var act = () => new KernelHost(Host.Accelerator);
        act.Should().Throw<ArgumentException>().WithMessage("*AUTOGRAD_ROW_SHARES=-2*whole number*the rule*");
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
        // A shared first stage: made as the head, not summing, with no more shares than its columns of blocks.
        var shared = split with { Shares = 2 };
        var notHead = MatMulKernels.RowProduct(host, shared, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0);
        var run2 = () => MatMulKernels.MatMulRows(host, shared, new Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>, NoStage>(notHead, default));
        run2.Should().Throw<ArgumentException>().WithMessage("MatMulRows: *among 2 groups*made for 1*head: true*");
        var sumHead = () => MatMulKernels.RowProductSum(host, shared, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0,
            new SumTail<IdentityOp, FirstOp>(loss.View, new IdentityOp()), c.View, head: true);
        sumHead.Should().Throw<ArgumentException>().WithMessage("RowProductSum: *among 2 groups*sums*RowChainSplit(host, 8)*");
        var tooMany = () => MatMulKernels.RowProduct(host, split with { Shares = 3 }, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0, head: true);
        tooMany.Should().Throw<ArgumentException>().WithMessage("RowProduct: *among 3 groups*8 columns make 2 blocks of 4*RowChainSplit(host, 8, 8)*");
    }

    // KernelHost.RowChains for one test.
    internal sealed class RowsOn(KernelHost host, bool on) : HostSwitch<bool>(() => host.RowChains, v => host.RowChains = v, on);

    // KernelHost.RowShares for one test.
    internal sealed class RowSharesSet(KernelHost host, int shares) : HostSwitch<int>(() => host.RowShares, v => host.RowShares = v, shares);
}
