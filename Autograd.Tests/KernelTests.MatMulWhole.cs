// Wide16Whole, Wide16's kernel for products made of whole 128x128 tiles and 16-deep slices: against
// the double host twin in every layout and with K split, bit for bit against Wide16's edge-tested
// kernel (the same fragments in the same order), and the rule that keeps every edge away from it.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // KernelHost.WholeTiles for one test.
    internal sealed class WholeTilesOn(KernelHost host, bool on) : HostSwitch<bool>(() => host.WholeTiles, v => host.WholeTiles = v, on);

    public static TheoryData<int, int, int, bool, bool, int> WholeCases()
    {
        var d = new TheoryData<int, int, int, bool, bool, int>();
        // One tile and one slice; two tiles down M with K three slices; two across N with K five; K
        // split in 3 parts of two slices each.
        foreach (var (m, n, k, split) in new[] { (128, 128, 16, 1), (256, 128, 48, 1), (128, 256, 80, 1), (128, 128, 96, 3) })
            foreach (var ta in new[] { false, true })
                foreach (var tb in new[] { false, true })
                    d.Add(m, n, k, ta, tb, split);
        return d;
    }

    [Theory]
    [MemberData(nameof(WholeCases))]
    public void Wide16_whole_tiles_match_the_host_twin(int m, int n, int k, bool ta, bool tb, int split) =>
        Wide16ShouldMatchTheHostTwin(m, n, k, ta, tb, split, async: false);

    // C = -0.5 op(A) op(B) + C on Wide16's whole-tile kernel, or its async-copy one, against the double
    // host twin; Describe and the loaded kernels name the kernel taken.
    internal static void Wide16ShouldMatchTheHostTwin(int m, int n, int k, bool ta, bool tb, int split, bool async)
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16, split, oneLaunch: false);
        using var whole = new WholeTilesOn(host, true);
        using var copies = new AsyncCopiesOn(host, async);
        MatMulKernels.Describe(host, m, n, k).Should().Contain(async ? "whole tiles, async copies" : "whole tiles");
        var a = TestData.Normal(m * k, m + 3 * k);
        var b = TestData.Normal(k * n, n + 5 * k);
        var c0 = TestData.Normal(m * n, 9);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var cb = Upload(host, c0);
        using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, MatMulKernels.SplitKScratch(host, m, n, k))).ToArray());
        // C = -0.5 op(A) op(B) + C: the epilogue reads the C the test put there.
        MatMulKernels.MatMul(host, ab.View, ta, bb.View, tb, cb.View, m, n, k, alpha: -0.5f, beta: 1f, scratch: scratch.View);
        string kernel = async ? "MatMulWide16/async" : "MatMulWide16/whole";
        // The async kernel's name ends "/bounded" where it was loaded with its launch bounds.
        host.KernelResources().Should().Contain(r => r.Name == kernel || r.Name == kernel + "/bounded",
            $"the product is whole tiles and slices, its operands aligned{(async ? ", async copies on" : "")}");
        var p = Reference.MatMul(a, ta, b, tb, m, n, k);
        TestData.ShouldMatch(Download(host, cb, m * n), p.Select((v, i) => -0.5 * v + c0[i]).ToArray(), 1e-4, 2e-5 * Math.Sqrt(k),
            $"{kernel} {m}x{n}x{k} ta={ta} tb={tb} split {split}");
    }

    // Each element of C is the same chain of FMAs in k order in both kernels, and the epilogue (here a
    // product with a side operand) is the same code: the same bits.
    [Theory]
    [InlineData(256, 128, 48, false, false, 1)]
    [InlineData(128, 256, 32, true, false, 1)]
    [InlineData(128, 128, 64, false, true, 1)]
    [InlineData(256, 256, 16, true, true, 1)]
    [InlineData(128, 128, 96, false, false, 3)]
    public void Wide16_whole_tiles_give_the_bits_of_the_edge_tested_kernel(int m, int n, int k, bool ta, bool tb, int split) =>
        WholeTilesShouldGiveTheEdgeTestedBits(HostFor("wide16"), m, n, k, ta, tb, split);

    // C = 1.5 op(A) op(B) times an epilogue operand, on Wide16's edge-tested kernel and on its whole-tile
    // kernel (Describe naming the one taken): the same bits.
    private static void WholeTilesShouldGiveTheEdgeTestedBits(KernelHost host, int m, int n, int k, bool ta, bool tb, int split) =>
        Wide16KernelsShouldGiveTheSameBits(host, m, n, k, ta, tb, split, (false, false), (true, false));

    // C = 1.5 op(A) op(B) times an epilogue operand on Wide16 under two settings of (WholeTiles,
    // AsyncCopies), Describe naming the kernel each took: the same bits, the first run's without NaN.
    internal static void Wide16KernelsShouldGiveTheSameBits(KernelHost host, int m, int n, int k, bool ta, bool tb, int split,
        (bool Whole, bool Async) first, (bool Whole, bool Async) second)
    {
        float[] Run((bool Whole, bool Async) kernel)
        {
            using var pin = new MatMulPin(host, MatMulPath.Wide16, split, oneLaunch: false);
            using var on = new WholeTilesOn(host, kernel.Whole);
            using var async = new AsyncCopiesOn(host, kernel.Async);
            var product = ProductTimesOperand(host, TestData.Normal(m * k, 17), ta, TestData.Normal(k * n, 18), tb, TestData.Normal(m * n, 19),
                m, n, k, MatMulKernels.SplitKScratch(host, m, n, k));
            var described = MatMulKernels.Describe(host, m, n, k);
            described.Contains("whole tiles", StringComparison.Ordinal).Should().Be(kernel.Whole, described);
            described.Contains("async copies", StringComparison.Ordinal).Should().Be(kernel.Async, described);
            return product;
        }
        var a = Run(first);
        var b = Run(second);
        ShouldHaveTheBitsOf(b, a, n, $"{m}x{n}x{k} ta={ta} tb={tb} split {split}: (whole, async) {second} against {first}");
    }

    // C (M, N) from one form, bit for bit the C of another, which has no NaN (C is poisoned with NaN first).
    internal static void ShouldHaveTheBitsOf(float[] actual, float[] expected, int n, string what)
    {
        expected.Should().NotContain(float.NaN, what);
        actual.Should().HaveCount(expected.Length, what);
        for (int i = 0; i < expected.Length; i++)
            BitConverter.SingleToInt32Bits(actual[i]).Should().Be(BitConverter.SingleToInt32Bits(expected[i]),
                $"element ({i / n}, {i % n}) of {what}: {actual[i]} against {expected[i]}");
    }

    // C = 1.5 op(A) op(B) times the operand E (row-major, as C) on the host's current kernel, into a
    // C and a scratch of `scratch` elements both poisoned with NaN: what each form of Wide16 is run on.
    internal static float[] ProductTimesOperand(KernelHost host, float[] a, bool ta, float[] b, bool tb, float[] e, int m, int n, int k, long scratch)
    {
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var eb = Upload(host, e);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        using var sb = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, scratch)).ToArray());
        MatMulKernels.MatMul(host, ab.View, ta, bb.View, tb, cb.View, m, n, k, 1.5f, 0f, sb.View, default(MulOp), eb.View, n, 1);
        return Download(host, cb, m * n);
    }

    // The kernel tests no edge, so the rule must refuse every product with one: a ragged tile, a ragged
    // slice, an operand that cannot be read as Float4, a K part left empty by the split.
    [Fact]
    public void Whole_tiles_are_taken_only_where_no_edge_can_occur()
    {
        var host = HostFor("wide16");
        using var on = new WholeTilesOn(host, true);
        static GemmArgs G(int m, int n, int k, int kPer = 0) =>
            kPer == 0 ? new GemmArgs(m, n, k, false, false, 1f, 0f) : new GemmArgs(m, n, k, false, false, 1f, 0f).WithSliceDepth(kPer);
        MatMulKernels.WholeTiles(host, G(128, 256, 32), 1, 3).Should().BeTrue();
        MatMulKernels.WholeTiles(host, G(4096, 4096, 4096), 1, 3).Should().BeTrue();
        MatMulKernels.WholeTiles(host, G(129, 256, 32), 1, 3).Should().BeFalse("M is not whole tiles");
        MatMulKernels.WholeTiles(host, G(128, 192, 32), 1, 3).Should().BeFalse("N is not whole tiles");
        MatMulKernels.WholeTiles(host, G(128, 128, 40), 1, 3).Should().BeFalse("K is not whole slices");
        MatMulKernels.WholeTiles(host, G(128, 128, 96, 48), 2, 3).Should().BeTrue("two parts of 48");
        MatMulKernels.WholeTiles(host, G(128, 128, 96, 40), 3, 3).Should().BeFalse("parts of 40 k are not whole slices");
        MatMulKernels.WholeTiles(host, G(128, 128, 32, 16), 3, 3).Should().BeFalse("the third part would be empty");
        MatMulKernels.WholeTiles(host, G(128, 128, 32), 1, 2).Should().BeFalse("A cannot be read as Float4");
        MatMulKernels.WholeTiles(host, G(128, 128, 32), 1, 1).Should().BeFalse("B cannot be read as Float4");
        using var off = new WholeTilesOn(host, false);
        MatMulKernels.WholeTiles(host, G(128, 256, 32), 1, 3).Should().BeFalse("KernelHost.WholeTiles is off");
    }

    // A misaligned A at a whole shape goes to the edge-tested kernel, which reads it as scalars.
    [Fact]
    public void Wide16_at_whole_shape_with_a_misaligned_operand_is_still_right()
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        int m = 128, n = 128, k = 32;
        var a = TestData.Normal(m * k, 21);
        var b = TestData.Normal(k * n, 22);
        using var ab = Upload(host, [0.25f, .. a]);
        using var bb = Upload(host, b);
        using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        var aView = ab.View.SubView(1, m * k);
        MatMulKernels.WideVectorizable(aView, bb.View, new GemmArgs(m, n, k, false, false, 1f, 0f)).Should().Be(2);
        MatMulKernels.MatMul(host, aView, false, bb.View, false, cb.View, m, n, k);
        TestData.ShouldMatch(Download(host, cb, m * n), Reference.MatMul(a, false, b, false, m, n, k), 1e-4, 2e-5 * Math.Sqrt(k), "wide16, misaligned A");
    }

    [Fact]
    public void AUTOGRAD_WHOLE_TILES_turns_the_whole_tile_kernel_off_and_junk_is_refused()
    {
        SwitchVariable.ShouldBeRead(Host.Accelerator, KernelHost.WholeTilesVariable, h => h.WholeTiles, unset: true, junk: "yes", "unset: on");
    }

    // On the card, with the driver's own assembler (newer than the ptxas the SASS tests use): the
    // whole-tile kernel gives the edge-tested kernel's bits at a shape of several tiles, K split too,
    // keeps its registers at 128 or fewer without spilling, and so two groups a multiprocessor.
    [Fact]
    public void On_a_GPU_the_whole_tile_kernel_gives_Wide16s_bits_in_two_groups_a_multiprocessor()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulator runs the bits tests above");
        var host = Device.Get("cuda").Host;
        foreach (int split in new[] { 1, 3 })
            WholeTilesShouldGiveTheEdgeTestedBits(host, 512, 384, 320, false, false, split);
        var loaded = host.KernelResources().Where(r => r.Name == "MatMulWide16/whole").ToList();
        loaded.Should().NotBeEmpty(string.Join("\n", host.KernelResources()));
        foreach (var r in loaded)
        {
            r.Registers.Should().BeInRange(1, 128, r.ToString());
            r.LocalBytes.Should().Be(0, $"no spills: {r}");
            r.GroupsOf256PerMultiprocessor.Should().BeGreaterThanOrEqualTo(2, r.ToString());
        }
    }
}
