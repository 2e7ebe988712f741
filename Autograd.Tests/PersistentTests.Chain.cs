// Chain tails in a compiled step (Fuse.Chain.cs, KernelHost.ChainTails): the seed's y with its loss
// and dH run in the last group of h's launch. The chained step must train as the step's launches do
// (its stages split K over lanes of a warp, so the bits may differ: within 1e-5), in two launches
// fewer, and as a persistent kernel it must give the chained launches' bits in two phases fewer.
using AutogradNet.Kernels;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class PersistentTests
{
    [Theory]
    [InlineData(MatMulPath.Warp, null, true)]
    [InlineData(MatMulPath.Tiled, null, true)]
    [InlineData(MatMulPath.Tiled, 3, true)]
    [InlineData(MatMulPath.Tiled, 3, false)]
    [InlineData(MatMulPath.Small, null, true)]
    public void Chained_step_trains_as_its_launches(MatMulPath path, int? splitK, bool oneLaunch)
    {
        var launches = Train(Sim, path, persistent: false, splitK, oneLaunch: oneLaunch);
        var chained = Train(Sim, path, persistent: false, splitK, oneLaunch: oneLaunch, chains: true);
        chained.Describe.Should().Contain("Chain: Fused(MatMul(NN) -> Clamp(0, Infinity)) [33, 65], [65, 130] -> [33, 130]")
            .And.Contain("then in its last group Fused(MatMul(NN) -> Add(alpha=-1) with [33, 7] -> Pow(2) -> Sum, with PowGrad(2))")
            .And.Contain(", then Fused(MatMul(NT) -> ClampGrad(0, Infinity) (flipped) with [33, 130])");
        launches.Describe.Should().NotContain("Chain:");
        // y and dH were a launch each, or more where K is split in two launches.
        if (oneLaunch) chained.Launches.Should().Be(launches.Launches - 2, chained.Describe);
        else chained.Launches.Should().BeLessThan(launches.Launches - 2, chained.Describe);
        AssertClose(chained.Losses, launches.Losses, "losses");
        AssertClose(chained.W1, launches.W1, "w1");
        AssertClose(chained.W2, launches.W2, "w2");
        chained.Losses[^1].Should().BeLessThan(chained.Losses[0], "the net trains");
    }

    [Theory]
    [InlineData(MatMulPath.Warp, null)]
    [InlineData(MatMulPath.Tiled, 3)]
    public void Chained_persistent_step_gives_the_bits_of_its_chained_launches(MatMulPath path, int? splitK)
    {
        var launches = Train(Sim, path, persistent: false, splitK, chains: true);
        var persistent = Train(Sim, path, persistent: true, splitK, chains: true);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Describe.Should().Contain($"Persistent: 2 phases ({path} + chain, {path} pair), 1 grid barriers");
        persistent.Losses.Should().Equal(launches.Losses, "the chain's stages add in the same order, whatever the grid");
        persistent.W1.Should().Equal(launches.W1);
        persistent.W2.Should().Equal(launches.W2);
    }

    // On a GPU: the seed's shapes, the tuned kernels (Auto) or the warp kernel, 50 steps.
    [Theory]
    [InlineData(MatMulPath.Warp)]
    [InlineData(MatMulPath.Auto)]
    public void Chained_seed_step_on_a_GPU_trains_as_its_launches(MatMulPath path)
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulators run the same test above");
        var dev = Device.Get("cuda");
        var launches = Train(dev, path, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
        var chained = Train(dev, path, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50, chains: true);
        if (path == MatMulPath.Warp) chained.Describe.Should().Contain("Chain: ");
        AssertClose(chained.Losses, launches.Losses, "losses");
        AssertClose(chained.W1, launches.W1, "w1");
        AssertClose(chained.W2, launches.W2, "w2");
        var persistent = Train(dev, path, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50, chains: true);
        if (!persistent.Persistent) return;
        persistent.Losses.Should().Equal(chained.Losses, persistent.Describe);
        persistent.W1.Should().Equal(chained.W1);
    }

    // Within 1e-5 of the larger magnitude, element by element.
    private static void AssertClose(float[] actual, float[] expected, string what)
    {
        actual.Length.Should().Be(expected.Length, what);
        for (int i = 0; i < actual.Length; i++)
            Math.Abs(actual[i] - expected[i]).Should().BeLessThanOrEqualTo(1e-5f * Math.Max(1f, Math.Max(Math.Abs(actual[i]), Math.Abs(expected[i]))),
                $"{what}[{i}]: {actual[i]} against {expected[i]}");
    }
}
