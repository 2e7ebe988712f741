// A compiled step with its tails' count-ins fenced by thread 0 of each group (KernelHost.OneThreadFences)
// trains with the bits of the step with every thread's fences: the fences order memory, they change no
// arithmetic. On the CPU simulator (groups running at once) and, where there is one, on a GPU at the
// seed's shapes, the shipped step (the loss's tail) and the chained step (a chain tail).
using AutogradNet.Kernels;
using FluentAssertions;
using Xunit;
using AutogradNet.Tests.Support;

namespace AutogradNet.Tests;

public sealed partial class PersistentTests
{
    [CpuOnly]
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_step_with_one_thread_fences_trains_with_the_bits_of_every_threads(bool chains)
    {
        var dev = Sim;
        var every = TrainOnce(dev, MatMulPath.Warp, false, null, 33, 65, 130, 7, 4, true, chains, false, 0);
        every.Describe.Should().Contain(chains ? "Chain: " : "-> Pow(2) -> Sum", "the step ends a launch with a tail");
        Trained one;
        using (new KernelTests.OneThreadFencesOn(dev.Host, true))
            one = TrainOnce(dev, MatMulPath.Warp, false, null, 33, 65, 130, 7, 4, true, chains, false, 0);
        one.Losses.Should().Equal(every.Losses);
        one.W1.Should().Equal(every.W1);
        one.W2.Should().Equal(every.W2);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void On_a_GPU_a_seed_step_with_one_thread_fences_trains_with_the_bits_of_every_threads(bool chains)
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulator runs the same test above");
        var dev = Device.Get("cuda");
        var every = TrainOnce(dev, MatMulPath.Auto, false, null, 64, 1000, 100, 10, 50, true, chains, false, 0);
        Trained one;
        using (new KernelTests.OneThreadFencesOn(dev.Host, true))
            one = TrainOnce(dev, MatMulPath.Auto, false, null, 64, 1000, 100, 10, 50, true, chains, false, 0);
        one.Losses.Should().Equal(every.Losses, one.Describe);
        one.W1.Should().Equal(every.W1);
        one.W2.Should().Equal(every.W2);
    }
}
