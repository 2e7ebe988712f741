// Wide16Async, Wide16Whole with its slices copied by cp.async into a ring of 3 stages: against the
// double host twin in every layout and with K split, bit for bit against Wide16Whole (the same
// fragments in the same order), and the rule that keeps it to whole tiles and by default to TN. On the
// CPU accelerator the copies are plain loads and stores at the same places, so these tests check the
// ring's stages and the copies' places; on a GPU (AUTOGRAD_DEVICE=cuda) the same tests run cp.async.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // KernelHost.AsyncCopies for one test, in every layout (AsyncCopiesAlongK with it), so that the
    // tests run the copies along k too.
    internal sealed class AsyncCopiesOn(KernelHost host, bool on) : HostSwitch<(bool, bool)>(
        () => (host.AsyncCopies, host.AsyncCopiesAlongK), v => (host.AsyncCopies, host.AsyncCopiesAlongK) = v, (on, on));

    // WholeCases: one slice (the ring's second stage left empty), three and five slices (more trips
    // than stages, so each stage is filled again), and K parts of two slices (all in the prologue).
    [Theory]
    [MemberData(nameof(WholeCases))]
    public void Wide16_async_copies_match_the_host_twin(int m, int n, int k, bool ta, bool tb, int split) =>
        Wide16ShouldMatchTheHostTwin(m, n, k, ta, tb, split, async: true);

    // Each element of C is the same chain of FMAs in k order in both kernels, and the epilogue (a
    // product with a side operand) is the same code: the same bits.
    [Theory]
    [InlineData(256, 128, 48, false, false, 1)]
    [InlineData(128, 256, 112, true, false, 1)]
    [InlineData(128, 128, 64, false, true, 1)]
    [InlineData(256, 256, 16, true, true, 1)]
    [InlineData(128, 128, 96, false, false, 3)]
    public void Wide16_async_copies_give_the_bits_of_the_whole_tile_kernel(int m, int n, int k, bool ta, bool tb, int split) =>
        AsyncCopiesShouldGiveTheWholeTileBits(HostFor("wide16"), m, n, k, ta, tb, split);

    // Wide16Whole, then Wide16Async: the same bits (KernelTests.MatMulWhole.cs).
    private static void AsyncCopiesShouldGiveTheWholeTileBits(KernelHost host, int m, int n, int k, bool ta, bool tb, int split) =>
        Wide16KernelsShouldGiveTheSameBits(host, m, n, k, ta, tb, split, (true, false), (true, true));

    // On the card, where the copies are cp.async and really run ahead of the multiply: the bits of the
    // whole-tile kernel at a shape of 12 tiles and 20 slices (each stage of the ring filled 6 or 7
    // times), in every layout and with K split; the kernel in 128 registers or fewer without spilling,
    // its 49.5 KB of shared memory granted (the driver's limit raised), two groups a multiprocessor.
    [Fact]
    public void On_a_GPU_async_copies_give_the_whole_tile_bits_in_two_groups_a_multiprocessor()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU accelerator runs the copies as plain loads in the tests above");
        var host = Device.Get("cuda").Host;
        foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
            AsyncCopiesShouldGiveTheWholeTileBits(host, 512, 384, 320, ta, tb, 1);
        AsyncCopiesShouldGiveTheWholeTileBits(host, 512, 384, 320, false, false, 3);
        var loaded = host.KernelResources().Where(r => r.Name.StartsWith("MatMulWide16/async", StringComparison.Ordinal)).ToList();
        loaded.Should().NotBeEmpty(string.Join("\n", host.KernelResources()));
        foreach (var r in loaded)
        {
            r.Registers.Should().BeInRange(1, 128, r.ToString());
            r.LocalBytes.Should().Be(0, $"no spills: {r}");
            r.SharedBytes.Should().BeGreaterThanOrEqualTo(MatMulKernels.AsyncSharedBytes, r.ToString());
            r.GroupsOf256PerMultiprocessor.Should().BeGreaterThanOrEqualTo(2, r.ToString());
        }
    }

    // The kernel has Wide16Whole's precondition (it tests no edge either) and is off unless asked for.
    [Fact]
    public void Async_copies_are_taken_only_where_whole_tiles_are_and_only_when_asked_for()
    {
        var host = HostFor("wide16");
        using var whole = new WholeTilesOn(host, true);
        static GemmArgs G(int m, int n, int k, int kPer = 0) =>
            kPer == 0 ? new GemmArgs(m, n, k, false, false, 1f, 0f) : new GemmArgs(m, n, k, false, false, 1f, 0f).WithSliceDepth(kPer);
        using (new AsyncCopiesOn(host, false))
        {
            MatMulKernels.AsyncCopies(host, G(128, 256, 32), 1, 3).Should().BeFalse("KernelHost.AsyncCopies is off");
            MatMulKernels.Describe(host.ForShape(128, 256, 32), 128, 256, 32).Should().NotContain("async");
        }
        using var on = new AsyncCopiesOn(host, true);
        MatMulKernels.AsyncCopies(host, G(128, 256, 32), 1, 3).Should().BeTrue();
        MatMulKernels.AsyncCopies(host, G(4096, 4096, 4096), 1, 3).Should().BeTrue();
        MatMulKernels.AsyncCopies(host, G(128, 128, 96, 48), 2, 3).Should().BeTrue("two parts of 48");
        MatMulKernels.AsyncCopies(host, G(129, 256, 32), 1, 3).Should().BeFalse("M is not whole tiles");
        MatMulKernels.AsyncCopies(host, G(128, 128, 40), 1, 3).Should().BeFalse("K is not whole slices");
        MatMulKernels.AsyncCopies(host, G(128, 128, 32, 16), 3, 3).Should().BeFalse("the third part would be empty");
        MatMulKernels.AsyncCopies(host, G(128, 128, 32), 1, 2).Should().BeFalse("A cannot be read as Float4");
        using var edged = new WholeTilesOn(host, false);
        MatMulKernels.AsyncCopies(host, G(128, 256, 32), 1, 3).Should().BeFalse("KernelHost.WholeTiles is off");
    }

    // By default only TN takes the kernel: there both operands' slices are copied 16 bytes at a time
    // along m and n. An operand along k (A in NN and NT, B in NT) is copied 4 bytes at a time, which ran
    // slower than the whole-tile kernel on an H200 (run 9); AsyncCopiesAlongK allows those too.
    [Fact]
    public void Async_copies_take_by_default_only_the_layout_whose_copies_are_16_bytes_wide()
    {
        var host = HostFor("wide16");
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        using var on = new AsyncCopiesOn(host, true);
        host.AsyncCopiesAlongK = false;
        static GemmArgs G(bool ta, bool tb) => new(256, 128, 64, ta, tb, 1f, 0f);
        MatMulKernels.AsyncCopies(host, G(true, false), 1, 3).Should().BeTrue("TN: A (K, M) and B (K, N) go along m and n");
        MatMulKernels.AsyncCopies(host, G(false, false), 1, 3).Should().BeFalse("NN: A (M, K) goes along k");
        MatMulKernels.AsyncCopies(host, G(false, true), 1, 3).Should().BeFalse("NT: both go along k");
        MatMulKernels.AsyncCopies(host, G(true, true), 1, 3).Should().BeFalse("TT: B (N, K) goes along k");
        MatMulKernels.Describe(host.ForShape(256, 128, 64), 256, 128, 64, transA: true).Should().EndWith("whole tiles, async copies");
        MatMulKernels.Describe(host.ForShape(256, 128, 64), 256, 128, 64).Should().EndWith("whole tiles");
        host.AsyncCopiesAlongK = true;
        MatMulKernels.AsyncCopies(host, G(false, true), 1, 3).Should().BeTrue();
        MatMulKernels.Describe(host.ForShape(256, 128, 64), 256, 128, 64).Should().EndWith("whole tiles, async copies");
        host.WithStream(host.Accelerator.DefaultStream).AsyncCopiesAlongK.Should().BeTrue("a host on another stream keeps the switch");
    }

    // The default rule in a compiled step: the TN product (a weight's gradient, x^T dY) on the async
    // kernel, the NN and NT ones on the whole-tile kernel, and the step's values those of the launches
    // with the async kernel off.
    [Fact]
    public void A_compiled_step_takes_async_copies_for_its_TN_products_only()
    {
        var dev = Device.CpuSimulator(16, 16, 1);
        var host = dev.Host;
        using var pin = new MatMulPin(host, MatMulPath.Wide16);
        using var whole = new WholeTilesOn(host, true);
        float[] Train(bool async, out string described)
        {
            using var copies = new AsyncCopiesOn(host, async);
            host.AsyncCopiesAlongK = false;
            Tensor.ManualSeed(7);
            using var x = Tensor.Randn([128, 256], dev);
            using var y = Tensor.Randn([128, 128], dev);
            using var w = Tensor.Randn([256, 128], dev, requiresGrad: true);
            using var opt = new Optim.Sgd([w], 1e-4f);
            using var step = Graph.Compile(() => (x.MatMul(w) - y).Pow(2).Sum(), opt);
            var losses = step.Run(steps: 3).ToArray();
            described = step.Describe();
            return [.. losses, .. w.ToArray()];
        }
        var with = Train(true, out var withText);
        var without = Train(false, out var withoutText);
        withText.Should().Contain("MatMul(NN)").And.Contain("MatMul(TN)");
        withText.Should().MatchRegex(@"MatMul\(TN\)[^\n]*whole tiles, async copies", "w's gradient x^T dY is TN");
        withText.Should().NotMatchRegex(@"MatMul\(NN\)[^\n]*async copies", "the forward product's A goes along k");
        withoutText.Should().NotContain("async copies");
        with.Should().Equal(without, "the async kernel gives the whole-tile kernel's bits");
        with.Should().OnlyContain(v => float.IsFinite(v));
    }

    [Fact]
    public void AUTOGRAD_ASYNC_COPIES_turns_the_async_copy_kernel_on_and_junk_is_refused()
    {
        SwitchVariable.ShouldBeRead(Host.Accelerator, KernelHost.AsyncCopiesVariable, h => h.AsyncCopies, unset: true, junk: "on",
            "unset: on, in the layouts AsyncCopiesAlongK allows (TN by default)");
        using var env = new EnvironmentScope(KernelHost.AsyncCopiesVariable);
        env.Set(null);
        new KernelHost(Host.Accelerator).AsyncCopiesAlongK.Should().BeFalse();
    }

    // A compiled step's launches are captured on a host made for the capture's stream: it keeps the
    // setting either way.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Async_copies_setting_travels_to_a_host_on_another_stream(bool async)
    {
        var host = HostFor("wide16");
        using var on = new AsyncCopiesOn(host, async);
        host.WithStream(host.Accelerator.DefaultStream).AsyncCopies.Should().Be(async);
    }
}
