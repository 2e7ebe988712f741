// MatMulChain: a product whose launch ends with small products run by its last group (a chain tail),
// against the double host twin on every path that can end with a tail: the head, a stage with a
// sum (the seed's y with its loss and dY) and a stage that reads both (the seed's dH, here with the
// head's output through its epilogue); one launch where the product had one; the bits of a repeat;
// the lanes that split a stage's K; misuse.
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    private static readonly string[] ChainPaths = ["small", "tiled", "tiled-2x1", "split3", "split3-two-launches", "warp", "warp-16", "warp-team2"];

    public static TheoryData<int, int, int, int, string> MatMulChainCases()
    {
        var d = new TheoryData<int, int, int, int, string>();
        // (M, N1, K1) of the head, N2 of the stages.
        var sizes = new (int, int, int, int)[] { (7, 33, 65, 5), (1, 7, 130, 1), (33, 17, 7, 13) };
        foreach (var path in ChainPaths)
            foreach (var (m, n1, k1, n2) in sizes.Where(s => Affordable(path, s.Item1, s.Item2)))
                d.Add(m, n1, k1, n2, path);
        return d;
    }

    // Head: H = A B1. Stage 1: V = H B2 - T, loss = 0.5 * sum of V^2, Y = PowGrad(V, 0.75) = 1.5 V.
    // Stage 2: D = Y B2^T + 0.5 H (the head's output as its epilogue operand).
    [Theory]
    [MemberData(nameof(MatMulChainCases))]
    public void MatMulChain_matches_host_twin(int m, int n1, int k1, int n2, string path)
    {
        var host = HostFor(path);
        using var pin = PinFor(host, path);
        using var chains = new ChainsOn(host, true);
        {
            var a = TestData.Normal(m * k1, m * 3 + k1);
            var b1 = TestData.Normal(k1 * n1, n1 * 5 + 1);
            var b2 = TestData.Normal(n1 * n2, n2 * 7 + 2);
            var t = TestData.Normal(m * n2, m + n2);
            using var ab = Upload(host, a);
            using var b1b = Upload(host, b1);
            using var b2b = Upload(host, b2);
            using var tb = Upload(host, t);
            using var sb = Upload(host, [0.75f]);
            using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, MatMulKernels.SplitKScratch(host, m, n1, k1))).ToArray());
            MatMulKernels.ChainInSameLaunch(host, m, n1, k1).Should().BeTrue(path);

            var twin = ChainTwin(a, false, b1, b2, t, m, n1, k1, n2);
            string what = $"{MatMulKernels.Describe(host, m, n1, k1)} {m}x{n1}x{k1} then N2 = {n2}";
            int launchesAlone = path == "split3-two-launches" && MatMulKernels.SplitK(host, m, n1, k1) > 1 ? 2 : 1;

            var runs = new List<(float Loss, float[] H, float[] Y, float[] D)>();
            for (int rep = 0; rep < 2; rep++)
            {
                using var hb = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
                using var yb = Upload(host, Enumerable.Repeat(float.NaN, m * n2).ToArray());
                using var db = Upload(host, Enumerable.Repeat(float.NaN, m * n1).ToArray());
                using var loss = Upload(host, [float.NaN]);
                var head = (m, n1, k1);
                var s1 = MatMulKernels.GroupProductSum(host, head, hb.View, false, b2b.View, false, yb.View, m, n2, n1, 1f, 0f,
                    new AxpyOp(-1f), tb.View, n2, 1, new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 0.5f, new PowGradOp(2f), sb.View, 0));
                var s2 = MatMulKernels.GroupProduct(host, head, yb.View, false, b2b.View, true, db.View, m, n1, n2, 1f, 0f,
                    new AxpyOp(0.5f), hb.View, n1, 1);
                var tail = new ChainTail<Stages<GroupProduct<AxpyOp, PowOp, PowGradOp>, Stages<GroupProduct<AxpyOp, IdentityOp, FirstOp>, NoStage>>>(
                    new(s1, new(s2, default)));
                long launches = host.Launches;
                MatMulKernels.MatMulChain(host, ab.View, false, b1b.View, false, hb.View, m, n1, k1, 1f, 0f, scratch.View,
                    new FirstOp(), hb.View, 0, 0, tail);
                (host.Launches - launches).Should().Be(launchesAlone, what + ": the stages add no launch");
                string lanes = $"{what}, lanes {s1.Lanes} and {s2.Lanes}";
                runs.Add((Download(host, loss, 1)[0], Download(host, hb, m * n1), Download(host, yb, m * n2), Download(host, db, m * n1)));
                ShouldMatchTwin(runs[^1], twin, k1, n1, n2, lanes);
            }
            // The count of groups went back to zero, or the repeat's tail would not run.
            runs[1].Loss.Should().Be(runs[0].Loss, what + ": a repeat has the same bits");
            runs[1].D.Should().Equal(runs[0].D, what);
        }
    }

    // The host twin of the chain and row chain tests, in double: H = op(A) B1; V = H B2 - T,
    // loss = 0.5 * the sum of V^2, Y = PowGrad(V, 0.75) = 1.5 V; D = Y B2^T + 0.5 H.
    private static (double[] H, double Loss, double[] Y, double[] D) ChainTwin(float[] a, bool transA, float[] b1, float[] b2, float[] t,
        int m, int n1, int k1, int n2)
    {
        var h = Reference.MatMul(a, transA, b1, false, m, n1, k1);
        var v = Reference.MatMul(h, b2.Select(x => (double)x).ToArray(), m, n2, n1).Select((x, i) => x - t[i]).ToArray();
        var y = v.Select(x => 2 * x * 0.75).ToArray();
        var b2t = new double[n2 * n1];
        for (int i = 0; i < n1; i++)
            for (int j = 0; j < n2; j++) b2t[j * n1 + i] = b2[i * n2 + j];
        var d = Reference.MatMul(y, b2t, m, n1, n2).Select((x, i) => x + 0.5 * h[i]).ToArray();
        return (h, 0.5 * v.Sum(x => x * x), y, d);
    }

    // A run of the chain tests' products against their twin, each within float rounding of its depth.
    private static void ShouldMatchTwin((float Loss, float[] H, float[] Y, float[] D) run, (double[] H, double Loss, double[] Y, double[] D) twin,
        int k1, int n1, int n2, string what)
    {
        TestData.ShouldMatch(run.H, twin.H, 1e-4, 2e-5 * Math.Sqrt(k1), what + ": H");
        TestData.ShouldMatch(run.Y, twin.Y, 1e-4, 1e-4 * Math.Sqrt(k1 * n1), what + ": Y");
        TestData.ShouldMatch([run.Loss], [twin.Loss], 1e-4, 1e-4, what + ": loss");
        TestData.ShouldMatch(run.D, twin.D, 1e-4, 1e-4 * Math.Sqrt(k1 * n1 * n2), what + ": D");
    }

    // Sets one of a KernelHost's settings for one test, and puts it back (devices and their hosts are
    // shared between tests).
    internal abstract class HostSwitch<T> : IDisposable
    {
        private readonly Action<T> _set;
        private readonly T _saved;

        protected HostSwitch(Func<T> get, Action<T> set, T value)
        {
            _set = set;
            _saved = get();
            set(value);
        }

        public void Dispose() => _set(_saved);
    }

    // KernelHost.ChainTails for one test.
    internal sealed class ChainsOn(KernelHost host, bool on) : HostSwitch<bool>(() => host.ChainTails, v => host.ChainTails = v, on);

    // With 2 simulated multiprocessors, groups run at the same time and which one is last varies; the
    // result must not. The first stage reads the head's output stored by every group, the second the
    // first's, stored by other threads of the group (a stage without a sum has no barrier of its own).
    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Tiled)]
    [InlineData(MatMulPath.Small)]
    public void MatMulChain_with_groups_running_at_once_repeats_bit_for_bit(MatMulPath path)
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, path, path == MatMulPath.Tiled ? 5 : null);
        using var chains = new ChainsOn(host, true);
        int m = 64, n = 60, k = 160, n2 = 9;
        var a = TestData.Normal(m * k, 51);
        var b = TestData.Normal(k * n, 52);
        var b2 = TestData.Normal(n * n2, 53);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var b2b = Upload(host, b2);
        using var scratch = Upload(host, new float[Math.Max(1, MatMulKernels.SplitKScratch(host, m, n, k))]);
        var b2d = b2.Select(x => (double)x).ToArray();
        var y = Reference.MatMul(Reference.MatMul(a, false, b, false, m, n, k), b2d, m, n2, n);
        var b2t = new double[n2 * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n2; j++) b2t[j * n + i] = b2d[i * n2 + j];
        var z = Reference.MatMul(y, b2t, m, n, n2);
        var results = new List<float[]>();
        for (int rep = 0; rep < 3; rep++)
        {
            var (yRun, zRun, lanes1, lanes2) = RunTwoStageChain(host, ab, bb, b2b, scratch, m, n, k, n2);
            TestData.ShouldMatch(yRun, y, 1e-4, 1e-3, $"{path}: (A B) B2, lanes {lanes1}");
            results.Add(zRun);
            TestData.ShouldMatch(results[^1], z, 1e-4, 1e-2, $"{path}: (A B) B2 B2^T, lanes {lanes2}");
        }
        results[1].Should().Equal(results[0], "the stages' order does not depend on which group is last");
        results[2].Should().Equal(results[0]);
    }

    // The lanes' rule on the seed's stages for groups of 256 (warps of 32): y = h w2 (48 blocks, K = 100)
    // one round of 4 lanes; dH = dY w2^T (400 blocks, K = 10) two rounds of 1; and never past a warp or the group.
    [Fact]
    public void Chain_stage_lanes_follow_the_round_trips()
    {
        MatMulKernels.ChainLanes(256, 32, 64, 10, 100).Should().Be(4);
        MatMulKernels.ChainLanes(256, 32, 64, 100, 10).Should().Be(1);
        MatMulKernels.ChainLanes(256, 32, 1, 1, 4096).Should().Be(32, "one block and a deep K: a whole warp");
        MatMulKernels.ChainLanes(4, 2, 1, 1, 4096).Should().Be(2, "no more lanes than the warp has");
        MatMulKernels.ChainLanes(2, 32, 1, 1, 4096).Should().Be(2, "no more lanes than the group has");
    }

    [Fact]
    public void MatMulChain_misuse_says_what_and_how_to_fix()
    {
        var host = Device.CpuSimulator(16, 16, 1).Host;
        using var pin = new MatMulPin(host, MatMulPath.Small);
        using var a = Upload(host, TestData.Normal(8 * 8, 1));
        using var c = Upload(host, new float[8 * 8]);
        using var big = Upload(host, new float[128 * 128]);
        using var chains = new ChainsOn(host, false);
        MatMulKernels.ChainInSameLaunch(host, 8, 8, 8).Should().BeFalse();
        var off = () => MatMulKernels.GroupProduct(host, (8, 8, 8), a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, new FirstOp(), c.View, 0, 0);
        off.Should().Throw<InvalidOperationException>().WithMessage("*8x8x8*ChainInSameLaunch*launch the stages as products of their own*");
        var chain = () => MatMulKernels.MatMulChain(host, a.View, false, a.View, false, c.View, 8, 8, 8, 1f, 0f, default,
            new FirstOp(), c.View, 0, 0, new ChainTail<NoStage>(default));
        chain.Should().Throw<InvalidOperationException>().WithMessage("MatMulChain*8x8x8*ChainTails False*ChainInSameLaunch*");
        host.ChainTails = true;
        var tooBig = () => MatMulKernels.GroupProduct(host, (8, 8, 8), big.View, false, big.View, false, big.View, 128, 128, 128, 1f, 0f, new FirstOp(), big.View, 0, 0);
        tooBig.Should().Throw<ArgumentException>().WithMessage("*128x128x128*2097152 multiply-adds*262144*launch it as a product of its own*");
        var shape = () => MatMulKernels.GroupProduct(host, (8, 8, 8), a.View, false, a.View, false, c.View, 8, 9, 8, 1f, 0f, new FirstOp(), c.View, 0, 0);
        shape.Should().Throw<ArgumentException>().WithMessage("*GroupProduct*");
    }

    // C = A B in one launch whose last group then runs Y = C B2 and Z = Y B2^T (a chain tail of two
    // stages, the second reading what the first stored); Y, Z and each stage's lanes.
    internal static (float[] Y, float[] Z, int Lanes1, int Lanes2) RunTwoStageChain(KernelHost host, MemoryBuffer1D<float, Stride1D.Dense> ab, MemoryBuffer1D<float, Stride1D.Dense> bb, MemoryBuffer1D<float, Stride1D.Dense> b2b,
        MemoryBuffer1D<float, Stride1D.Dense> scratch, int m, int n, int k, int n2)
    {
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        using var yb = Upload(host, Enumerable.Repeat(float.NaN, m * n2).ToArray());
        using var zb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        var s1 = MatMulKernels.GroupProduct(host, (m, n, k), cb.View, false, b2b.View, false, yb.View, m, n2, n, 1f, 0f, new FirstOp(), yb.View, 0, 0);
        var s2 = MatMulKernels.GroupProduct(host, (m, n, k), yb.View, false, b2b.View, true, zb.View, m, n, n2, 1f, 0f, new FirstOp(), zb.View, 0, 0);
        MatMulKernels.MatMulChain(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View, new FirstOp(), cb.View, 0, 0,
            new ChainTail<Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>, Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>, NoStage>>>(new(s1, new(s2, default))));
        return (Download(host, yb, m * n2), Download(host, zb, m * n), s1.Lanes, s2.Lanes);
    }
}
