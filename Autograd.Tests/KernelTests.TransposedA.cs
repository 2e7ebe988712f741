// An NN product run as TN on Wide16's cp.async kernel after A is copied transposed into the scratch
// (KernelHost.TransposedA): the bits of the whole-tile kernel on A in place, the host twin, the
// scratch it asks for and checks, and the rule that keeps it to wide NN products on whole tiles. On
// the CPU accelerator the copies are plain loads; on a GPU the same tests run cp.async.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // KernelHost.TransposedA for one test, with the async kernel kept to TN (its default).
    internal sealed class TransposedAOn(KernelHost host, bool on) : HostSwitch<(bool, bool, bool)>(
        () => (host.TransposedA, host.AsyncCopies, host.AsyncCopiesAlongK),
        v => (host.TransposedA, host.AsyncCopies, host.AsyncCopiesAlongK) = v, (on, true, false));

    // One K part, and K split in two (the partials first in the scratch, then A^T after them).
    [Theory]
    [InlineData(128, 2048, 48, 1)]
    [InlineData(128, 2048, 64, 2)]
    public void NN_with_A_transposed_first_gives_the_bits_of_the_whole_tile_kernel_on_A(int m, int n, int k, int split)
    {
        var host = HostFor("wide16");
        var a = TestData.Normal(m * k, 21);
        var b = TestData.Normal(k * n, 22);
        var e = TestData.Normal(m * n, 23);
        float[] Run(bool transposed)
        {
            using var pin = new MatMulPin(host, MatMulPath.Wide16, split, oneLaunch: false);
            using var whole = new WholeTilesOn(host, true);
            using var on = new TransposedAOn(host, transposed);
            long need = MatMulKernels.SplitKScratch(host, m, n, k);
            need.Should().Be((split == 1 ? 0L : (long)split * m * n) + (transposed ? (long)m * k : 0L), "the partials, then A^T where it is copied");
            MatMulKernels.SplitKScratch(host, m, n, k, transA: true).Should().Be(split == 1 ? 0L : (long)split * m * n, "TN copies nothing");
            using var ab = Upload(host, a);
            using var bb = Upload(host, b);
            using var eb = Upload(host, e);
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)Math.Max(1, need)).ToArray());
            MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1.5f, 0f, scratch.View, default(MulOp), eb.View, n, 1);
            MatMulKernels.Describe(host, m, n, k).Should().Contain(transposed ? "A transposed first, whole tiles, async copies" : "whole tiles")
                .And.Match(d => transposed || !d.Contains("async", StringComparison.Ordinal), "NN's A goes along k: not the async kernel in place");
            if (transposed)
                host.KernelResources().Should().Contain(r => r.Name == "TransposeTiled")
                    .And.Contain(r => r.Name.StartsWith("MatMulWide16/async", StringComparison.Ordinal));
            return Download(host, cb, m * n);
        }
        var inPlace = Run(false);
        var transposed = Run(true);
        inPlace.Should().NotContain(float.NaN);
        for (int i = 0; i < inPlace.Length; i++)
            BitConverter.SingleToInt32Bits(transposed[i]).Should().Be(BitConverter.SingleToInt32Bits(inPlace[i]),
                $"element ({i / n}, {i % n}) of {m}x{n}x{k} split {split}: {transposed[i]} through A^T, {inPlace[i]} on A");
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        TestData.ShouldMatch(transposed, p.Select((v, i) => 1.5 * v * e[i]).ToArray(), 1e-4, 2e-5 * Math.Sqrt(k), $"A^T then TN, {m}x{n}x{k} split {split}");
    }

    // Asked for, NN, at least TransposedAMinColumns wide, Wide16 on whole tiles, the async kernel kept
    // to TN; each condition alone turns it off.
    [Fact]
    public void A_is_copied_transposed_only_for_wide_NN_products_on_whole_tiles_and_only_when_asked_for()
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        const int m = 128, n = MatMulKernels.TransposedAMinColumns, k = 32;
        bool Copies(int mm, int nn, int kk, bool ta = false, bool tb = false) =>
            MatMulKernels.SplitKScratch(host, mm, nn, kk, ta, tb) == (long)mm * kk;
        using (new TransposedAOn(host, false)) Copies(m, n, k).Should().BeFalse("KernelHost.TransposedA is off");
        using var on = new TransposedAOn(host, true);
        Copies(m, n, k).Should().BeTrue();
        Copies(m, n - 128, k).Should().BeFalse("C narrower than TransposedAMinColumns: the copy's share is too large");
        Copies(m, n, k, ta: true).Should().BeFalse("TN reads A along m already");
        Copies(m, n, k, tb: true).Should().BeFalse("NT's B goes along k too");
        Copies(m + 1, n, k).Should().BeFalse("M is not whole tiles");
        Copies(m, n, k + 8).Should().BeFalse("K is not whole slices");
        host.AsyncCopiesAlongK = true;
        Copies(m, n, k).Should().BeFalse("the async kernel reads A along k itself");
        host.AsyncCopiesAlongK = false;
        host.AsyncCopies = false;
        Copies(m, n, k).Should().BeFalse("the async kernel is off");
        host.AsyncCopies = true;
        using (new MatMulPin(host, MatMulPath.Wide)) Copies(m, n, k).Should().BeFalse("Wide has no async kernel");
        host.WithStream(host.Accelerator.DefaultStream).TransposedA.Should().BeTrue("a host on another stream keeps the switch");
    }

    // A scratch without room for A^T is refused with the sizes and the fix, before anything runs.
    [Fact]
    public void A_scratch_without_room_for_A_transposed_is_refused()
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        using var on = new TransposedAOn(host, true);
        const int m = 128, n = MatMulKernels.TransposedAMinColumns, k = 16;
        using var ab = Upload(host, TestData.Normal(m * k, 1));
        using var bb = Upload(host, TestData.Normal(k * n, 2));
        using var cb = Upload(host, new float[m * n]);
        using var scratch = Upload(host, new float[m * k - 1]);
        var act = () => MatMulKernels.MatMul(host, ab.View, false, bb.View, false, cb.View, m, n, k, scratch: scratch.View);
        act.Should().Throw<ArgumentException>().WithMessage($"MatMul: copying A ({m}x{k}) transposed*needs a scratch of {m * k} elements, got {m * k - 1}*SplitKScratch*");
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
}
