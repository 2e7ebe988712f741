// Products whose operand goes along k run as TN on Wide16's cp.async kernel after that operand is
// copied transposed into the scratch (KernelHost.TransposedCopies): the bits of the whole-tile kernel
// on the operands in place, the host twin, the scratch it asks for and checks, and the rule that
// keeps it to large products on whole tiles. On the CPU accelerator the copies are plain loads; on a
// GPU the same tests run cp.async.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // KernelHost.TransposedCopies for one test, with the async kernel kept to TN (its default) and the
    // side of C from which an operand is copied lowered to Side, so that the products stay small on a
    // CPU simulator (the rule's 2048 made one NT case take 15 s).
    internal sealed class TransposedCopiesOn(KernelHost host, bool on) : HostSwitch<(bool, bool, bool, int)>(
        () => (host.TransposedCopies, host.AsyncCopies, host.AsyncCopiesAlongK, host.TransposedCopyMinSide),
        v => (host.TransposedCopies, host.AsyncCopies, host.AsyncCopiesAlongK, host.TransposedCopyMinSide) = v, (on, true, false, Side));

    private const int Side = 256;

    // NN (A copied), NT (A and B), TT (B), each with one K part, and NN and NT with K split in two (the
    // partials first in the scratch, then the copies).
    [Theory]
    [InlineData(128, Side, 48, false, false, 1)]
    [InlineData(128, Side, 64, false, false, 2)]
    [InlineData(Side, Side, 48, false, true, 1)]
    [InlineData(Side, Side + 128, 32, false, true, 2)]
    [InlineData(Side + 128, 128, 48, true, true, 1)]
    public void Operands_copied_transposed_give_the_bits_of_the_whole_tile_kernel_in_place(int m, int n, int k, bool ta, bool tb, int split)
    {
        var host = HostFor("wide16");
        bool copyA = !ta, copyB = tb;
        string copied = copyA && copyB ? "A and B" : copyA ? "A" : "B";
        var a = TestData.Normal(m * k, 21);
        var b = TestData.Normal(k * n, 22);
        var e = TestData.Normal(m * n, 23);
        float[] Run(bool transposed)
        {
            using var pin = new MatMulPin(host, MatMulPath.Wide16, split, oneLaunch: false);
            using var whole = new WholeTilesOn(host, true);
            using var on = new TransposedCopiesOn(host, transposed);
            long need = MatMulKernels.SplitKScratch(host, m, n, k, ta, tb);
            long partials = split == 1 ? 0L : (long)split * m * n;
            need.Should().Be(partials + (transposed && copyA ? (long)m * k : 0L) + (transposed && copyB ? (long)n * k : 0L),
                "the partials, then the copies");
            var before = host.CopiedProducts;
            var product = ProductTimesOperand(host, a, ta, b, tb, e, m, n, k, need);
            var after = host.CopiedProducts;
            (after.Copied - before.Copied, after.OnAsync - before.OnAsync).Should().Be(transposed ? (1L, 1L) : (0L, 0L),
                "with the copies the product runs on the cp.async kernel, without them nothing is copied");
            var described = MatMulKernels.Describe(host, m, n, k, transA: ta, transB: tb);
            if (transposed) described.Should().Contain($"{copied} transposed first, whole tiles, async copies");
            else described.Should().Contain("whole tiles").And.NotContain("async", "an operand along k keeps the whole-tile kernel");
            if (transposed)
                host.KernelResources().Should().Contain(r => r.Name == "TransposeTiled")
                    .And.Contain(r => r.Name.StartsWith("MatMulWide16/async", StringComparison.Ordinal));
            return product;
        }
        var inPlace = Run(false);
        var transposed = Run(true);
        ShouldHaveTheBitsOf(transposed, inPlace, n, $"{m}x{n}x{k} ta={ta} tb={tb} split {split}, with {copied} copied against in place");
        var p = Reference.MatMul(a, ta, b, tb, m, n, k);
        TestData.ShouldMatch(transposed, p.Select((v, i) => 1.5 * v * e[i]).ToArray(), 1e-4, 2e-5 * Math.Sqrt(k),
            $"{copied} copied, then TN, {m}x{n}x{k} split {split}");
    }

    // Asked for, an operand along k, the other side of C at least TransposedCopyMinSide (2048 by
    // default), Wide16 on whole tiles, the async kernel kept to TN; each condition alone turns it off.
    [Fact]
    public void Operands_are_copied_transposed_only_for_large_products_on_whole_tiles_and_only_when_asked_for()
    {
        var host = HostFor("wide16");
        host.TransposedCopyMinSide.Should().Be(MatMulKernels.TransposedCopyMinSide).And.Be(2048);
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        const int k = 32;
        long Extra(int m, int n, bool ta = false, bool tb = false, int kk = k) => MatMulKernels.SplitKScratch(host, m, n, kk, ta, tb);
        using (new TransposedCopiesOn(host, false)) Extra(128, Side).Should().Be(0, "KernelHost.TransposedCopies is off");
        using var on = new TransposedCopiesOn(host, true);
        Extra(128, Side).Should().Be(128L * k, "NN: A copied");
        Extra(Side, Side, tb: true).Should().Be(Side * k + (long)Side * k, "NT: A and B copied");
        Extra(Side, 128, ta: true, tb: true).Should().Be((long)128 * k, "TT: B copied");
        Extra(128, Side, ta: true).Should().Be(0, "TN reads both along m and n already");
        Extra(128, Side - 128).Should().Be(0, "C narrower than TransposedCopyMinSide: A's copy too dear");
        Extra(128, Side, tb: true).Should().Be(0, "NT with too few rows for B's copy copies nothing");
        Extra(129, Side).Should().Be(0, "M is not whole tiles");
        Extra(128, Side, kk: k + 8).Should().Be(0, "K is not whole slices");
        host.AsyncCopiesAlongK = true;
        Extra(128, Side).Should().Be(0, "the async kernel reads A along k itself");
        host.AsyncCopiesAlongK = false;
        host.AsyncCopies = false;
        Extra(128, Side).Should().Be(0, "the async kernel is off");
        host.AsyncCopies = true;
        using (new MatMulPin(host, MatMulPath.Wide)) Extra(128, Side).Should().Be(0, "Wide has no async kernel");
        host.WithStream(host.Accelerator.DefaultStream).TransposedCopies.Should().BeTrue("a host on another stream keeps the switch");
    }

    // A scratch without room for the copies is refused with the sizes and the fix, before anything runs.
    [Fact]
    public void A_scratch_without_room_for_the_transposed_copies_is_refused()
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        using var on = new TransposedCopiesOn(host, true);
        const int m = 128, n = Side, k = 16;
        using var ab = Upload(host, TestData.Normal(m * k, 1));
        using var bb = Upload(host, TestData.Normal(k * n, 2));
        using var cb = Upload(host, new float[m * n]);
        using var scratch = Upload(host, new float[m * k - 1]);
        var act = () => MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, scratch: scratch.View);
        act.Should().Throw<ArgumentException>()
            .WithMessage($"MatMul: copying A of a {m}x{n}x{k} product transposed*needs a scratch of {m * k} elements, got {m * k - 1}*SplitKScratch*");
    }

    // The tiled transpose on groups smaller than its 32x8 (a group of 4 threads walks each tile in
    // strides): the host twin's values.
    [Theory]
    [InlineData(33, 1000)]
    [InlineData(65, 7)]
    public void Transpose_on_small_groups_matches_host_twin(int m, int n)
    {
        var host = Device.CpuSimulator(2, 2, 1).Host;
        var x = TestData.Normal(m * n, 3 * m + n);
        using var xb = Upload(host, x);
        using var yb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
        Layout.Transpose(host, xb.View, yb.View, m, n);
        TestData.ShouldMatch(Download(host, yb, m * n), Reference.Transpose(Reference.ToDouble(x), m, n), 0, 0, $"transpose {m}x{n} in groups of 4");
    }

    // On by default since H200 run 12 timed it (NN 46.8, NT 45.4 TFLOP/s at 4096^3 against 44.3 and
    // 43.2 in place); AUTOGRAD_TRANSPOSED_COPIES=0 reads the operands in place.
    [Fact]
    public void AUTOGRAD_TRANSPOSED_COPIES_turns_the_copies_off_and_junk_is_refused()
    {
        SwitchVariable.ShouldBeRead(Host.Accelerator, KernelHost.TransposedCopiesVariable, h => h.TransposedCopies, unset: true, junk: "yes", "unset: on");
    }
}
