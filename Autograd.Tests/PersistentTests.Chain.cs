// Chain tails in a compiled step (Fuse.Chain.cs, KernelHost.ChainTails): the seed's y with its loss,
// dH and w2's update run in the last group of h's launch, then w1's update. The chained step must train as the step's launches do
// (its stages split K over lanes of a warp, so the bits may differ: within 1e-5), in two launches
// fewer, and as a persistent kernel it must give the chained launches' bits in two phases fewer.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using FluentAssertions;
using Xunit;
using AutogradNet.Tests.Support;

namespace AutogradNet.Tests;

public sealed partial class PersistentTests
{
    [CpuOnly]
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
            .And.Contain(", then Fused(MatMul(NT) -> ClampGrad(0, Infinity) (flipped) with [33, 130])")
            .And.Contain(", then Fused(MatMul(TN) -> SGD update of [130, 7]) [33, 130], [33, 7] -> [130, 7]\n",
                "w2's update (130x7x33) is small enough for the tail: the pairing pass leaves it apart and the chain passes over w1's")
            .And.Contain("\n  Fused(MatMul(TN) -> SGD update of [65, 130]) [33, 65], [33, 130] -> [65, 130] [");
        launches.Describe.Should().NotContain("Chain:");
        // The chain, then w1's update: two launches, or more where K is split in two launches.
        if (oneLaunch) chained.Launches.Should().Be(2, chained.Describe);
        else chained.Launches.Should().BeLessThan(launches.Launches - 2, chained.Describe);
        AssertClose(chained.Losses, launches.Losses, "losses");
        AssertClose(chained.W1, launches.W1, "w1");
        AssertClose(chained.W2, launches.W2, "w2");
        chained.Losses[^1].Should().BeLessThan(chained.Losses[0], "the net trains");
    }

    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Warp, null)]
    [InlineData(MatMulPath.Tiled, 3)]
    public void Chained_persistent_step_gives_the_bits_of_its_chained_launches(MatMulPath path, int? splitK)
    {
        var launches = Train(Sim, path, persistent: false, splitK, chains: true);
        var persistent = Train(Sim, path, persistent: true, splitK, chains: true);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Describe.Should().Contain($"Persistent: 2 phases ({path} + chain, {path}), 1 grid barriers");
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
        AssertClose(chained.W1, launches.W1, "w1", SeedWeightTolerance);
        AssertClose(chained.W2, launches.W2, "w2", SeedWeightTolerance);
        var persistent = Train(dev, path, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50, chains: true);
        if (!persistent.Persistent) return;
        persistent.Losses.Should().Equal(chained.Losses, persistent.Describe);
        persistent.W1.Should().Equal(chained.W1);
    }

    // The 3-layer net with biases, tanh and sigmoid and a mean loss, for each optimizer: the chain's
    // stages carry the bias and activation epilogues, the nodes it passes over (bias sums, momentum
    // and Adam updates) run after it; chained, it trains as its launches, and as a persistent kernel
    // it keeps the chained launches' bits.
    [CpuOnly]
    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("adam")]
    public void Three_layer_chained_step_trains_as_its_launches(string optimizer)
    {
        var launches = TrainThreeLayer(optimizer, persistent: false);
        var chained = TrainThreeLayer(optimizer, persistent: false, chains: true);
        chained.Describe.Should().Contain("Chain: Fused(MatMul(NN) -> Add with [33] -> Tanh) [33, 65], [65, 33], [33] -> [33, 33] [Warp], then in its last group Fused(MatMul(NN) -> Add with [7] -> Sigmoid)");
        chained.Launches.Should().BeLessThan(launches.Launches, chained.Describe);
        AssertClose(chained.Values, launches.Values, "losses and parameters");
        chained.Values[3].Should().BeLessThan(chained.Values[0], "the net trains");
        var persistent = TrainThreeLayer(optimizer, persistent: true, chains: true);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Describe.Should().Contain("Warp + chain");
        persistent.Values.Should().Equal(chained.Values, persistent.Describe);
    }

    // A wide middle layer (8x4096x16, too large for a tail) between two small ones: the chain headed
    // by the first product may pass over it, but must not take the products that read its output
    // (y = h2 w3, then the backward through it), or they would read h2 before it is made.
    [CpuOnly]
    [Fact]
    public void A_chain_takes_no_stage_that_reads_what_it_passed_over()
    {
        (float[] Losses, float[] W, string Describe) Run(bool chains)
        {
            var dev = Sim;
            using var pin = new Pin(dev, MatMulPath.Small, persistent: false, chains: chains);
            Tensor.ManualSeed(44);
            using var x = Tensor.Randn([8, 16], dev);
            using var t = Tensor.Randn([8, 2], dev);
            using var w1 = Tensor.Randn([16, 16], dev, requiresGrad: true);
            using var w2 = Tensor.Randn([16, 4096], dev, requiresGrad: true);
            using var w3 = Tensor.Randn([4096, 2], dev, requiresGrad: true);
            using var opt = new Sgd([w1, w2, w3], 1e-6f);
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2).Clamp(min: 0).MatMul(w3) - t).Pow(2).Sum(), opt);
            var losses = step.Run(steps: 3).ToArray();
            return (losses, [.. w1.ToArray(), .. w3.ToArray()], step.Describe());
        }
        var launches = Run(false);
        var chained = Run(true);
        chained.Describe.Should().NotContain("Chain: Fused(MatMul(NN) -> Clamp(0, Infinity)) [8, 16], [16, 16] -> [8, 16] [Small], then in its last group Fused(MatMul(NN) -> Add(alpha=-1)");
        AssertClose(chained.Losses, launches.Losses, "losses");
        AssertClose(chained.W, launches.W, "w1 and w3");
    }

    // The weights of the seed's net after 50 steps computed in two summation orders: the first steps'
    // updates are large (the loss starts near 3e7), so rounding differences of 1e-7 grow; on an H200
    // (run 10) w1 differed by up to 3.3e-5 between the chain and the launches while every loss agreed
    // within 1e-5.
    private const float SeedWeightTolerance = 1e-4f;

    // Within `tolerance` (1e-5 unless given) of the larger magnitude or 1, element by element; both finite.
    private static void AssertClose(float[] actual, float[] expected, string what, float tolerance = 1e-5f)
    {
        actual.Length.Should().Be(expected.Length, what);
        for (int i = 0; i < actual.Length; i++)
        {
            float.IsFinite(expected[i]).Should().BeTrue($"{what}[{i}] must be finite to be compared, got {expected[i]}");
            Math.Abs(actual[i] - expected[i]).Should().BeLessThanOrEqualTo(tolerance * Math.Max(1f, Math.Max(Math.Abs(actual[i]), Math.Abs(expected[i]))),
                $"{what}[{i}]: {actual[i]} against {expected[i]}");
        }
    }
}
