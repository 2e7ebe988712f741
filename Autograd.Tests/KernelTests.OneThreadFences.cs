// KernelHost.OneThreadFences: a tail's count-in fenced by thread 0 of each group after the group's
// barrier (as CUDA's grid sync), instead of by every thread. The values must not change: the same
// loss and C, bit for bit, with groups running at once (2 simulated multiprocessors, so which group
// counts in last varies), for a loss tail and a chain tail; and the setting's environment variable.
// The GPU, where the fences matter, runs the compiled steps' version (PersistentTests.Fences.cs).
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // KernelHost.OneThreadFences for one test.
    internal sealed class OneThreadFencesOn(KernelHost host, bool on) : HostSwitch<bool>(() => host.OneThreadFences, v => host.OneThreadFences = v, on);

    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Tiled)]
    [InlineData(MatMulPath.Small)]
    public void A_loss_tail_with_one_thread_fences_gives_the_bits_of_every_threads(MatMulPath path)
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, path, path == MatMulPath.Tiled ? 5 : null);
        int m = 64, n = 60, k = 160;
        var a = TestData.Normal(m * k, 61);
        var b = TestData.Normal(k * n, 62);
        using var ab = Upload(host, a);
        using var bb = Upload(host, b);
        using var sb = Upload(host, [1f]);
        using var scratch = Upload(host, new float[MatMulKernels.MatMulSumScratch(host, m, n, k)]);
        (float Loss, float[] C) Run(bool one)
        {
            using var on = new OneThreadFencesOn(host, one);
            using var loss = Upload(host, [float.NaN]);
            using var cb = Upload(host, Enumerable.Repeat(float.NaN, m * n).ToArray());
            var tail = new SumTail<PowOp, PowGradOp>(loss.View, new PowOp(2f), 1f, new PowGradOp(2f), sb.View, 0);
            MatMulKernels.MatMulSum(host, ab.View, false, bb.View, false, cb.View, m, n, k, 1f, 0f, scratch.View,
                new FirstOp(), cb.View, 0, 0, tail);
            return (Download(host, loss, 1)[0], Download(host, cb, m * n));
        }
        var every = Run(false);
        var p = Reference.MatMul(a, false, b, false, m, n, k);
        TestData.ShouldMatch([every.Loss], [p.Sum(v => v * v)], 1e-4, 1e-3, $"{path}: sum of (AB)^2");
        for (int rep = 0; rep < 3; rep++)
        {
            var one = Run(true);
            BitConverter.SingleToInt32Bits(one.Loss).Should().Be(BitConverter.SingleToInt32Bits(every.Loss), $"{path}, run {rep}: loss {one.Loss} against {every.Loss}");
            one.C.Should().Equal(every.C, "the side op's rewrite of C is the same");
        }
    }

    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Tiled)]
    [InlineData(MatMulPath.Small)]
    public void A_chain_tail_with_one_thread_fences_gives_the_bits_of_every_threads(MatMulPath path)
    {
        var host = Device.CpuSimulator(16, 16, 2).Host;
        using var pin = new MatMulPin(host, path, path == MatMulPath.Tiled ? 5 : null);
        using var chains = new ChainsOn(host, true);
        int m = 64, n = 60, k = 160, n2 = 9;
        using var ab = Upload(host, TestData.Normal(m * k, 63));
        using var bb = Upload(host, TestData.Normal(k * n, 64));
        using var b2b = Upload(host, TestData.Normal(n * n2, 65));
        using var scratch = Upload(host, new float[Math.Max(1, MatMulKernels.SplitKScratch(host, m, n, k))]);
        float[] Run(bool one)
        {
            using var on = new OneThreadFencesOn(host, one);
            return RunTwoStageChain(host, ab, bb, b2b, scratch, m, n, k, n2).Z;
        }
        var every = Run(false);
        every.Should().NotContain(float.NaN, "the last group ran both stages");
        for (int rep = 0; rep < 3; rep++)
            Run(true).Should().Equal(every, $"{path}, run {rep}: the stages run on what every group stored, whoever fenced it");
    }

    [Fact]
    public void AUTOGRAD_ONE_THREAD_FENCES_sets_the_count_in_fences_and_junk_is_refused()
    {
        SwitchVariable.ShouldBeRead(Host.Accelerator, KernelHost.OneThreadFencesVariable, h => h.OneThreadFences, unset: false, junk: "thread0",
            "unset: every thread's fences");
        using var env = new EnvironmentScope(KernelHost.OneThreadFencesVariable);
        env.Set("1");
        new KernelHost(Host.Accelerator).WithStream(Host.Accelerator.DefaultStream).OneThreadFences.Should().BeTrue("a host on another stream keeps it");
    }
}
