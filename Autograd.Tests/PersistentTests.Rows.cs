// Row chains in a compiled step (Fuse.Rows.cs, KernelHost.RowChains): the seed's h, y with its loss
// and dY, and dH run block of rows by block of rows in one launch, then the two updates. The row-chained
// step must train as the step's launches do (its stages split K over lanes and its loss adds blocks'
// partial sums, so the bits may differ: within 1e-5), in two launches fewer; with chain tails too, w2's
// update runs in w1's launch (2 launches); as a persistent kernel it gives the row-chained launches' bits.
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
    [InlineData(MatMulPath.Warp, false, 0)]
    [InlineData(MatMulPath.Tiled, false, 0)]
    [InlineData(MatMulPath.Small, false, 0)]
    [InlineData(MatMulPath.Warp, true, 0)]
    [InlineData(MatMulPath.Tiled, true, 0)]
    [InlineData(MatMulPath.Warp, false, 3)]
    [InlineData(MatMulPath.Tiled, true, 5)]
    public void Row_chained_step_trains_as_its_launches(MatMulPath path, bool chains, int shares)
    {
        var launches = Train(Sim, path, persistent: false);
        var rows = Train(Sim, path, persistent: false, chains: chains, rows: true, shares: shares);
        RowSplit split;
        using (new Pin(Sim, path, persistent: false, rows: true, shares: shares)) split = MatMulKernels.RowChainSplit(Sim.Host, 33, 130)!.Value;
        if (shares > 0) split.Shares.Should().Be(shares);
        string cut = split.Shares == 1 ? $"{split.Blocks} blocks of {split.RowsPer} rows a group"
            : $"{split.Blocks} blocks of {split.RowsPer} rows, {split.Shares} groups a block sharing its first stage";
        rows.Describe.Should().Contain($"Rows, {cut}: "
                + "Fused(MatMul(NN) -> Clamp(0, Infinity)) [33, 65], [65, 130] -> [33, 130], "
                + "then Fused(MatMul(NN) -> Add(alpha=-1) with [33, 7] -> Pow(2) -> Sum, with PowGrad(2)) [33, 130], [130, 7], [33, 7], [1, 1] -> [] and [33, 7], "
                + "then Fused(MatMul(NT) -> ClampGrad(0, Infinity) (flipped) with [33, 130]) [33, 7], [130, 7], [33, 130] -> [33, 130]\n",
            "h, y with its loss, and dH need only their own rows; the updates read every row");
        launches.Describe.Should().NotContain("Rows,");
        if (chains)
        {
            rows.Describe.Should().Contain("Chain: Fused(MatMul(TN) -> SGD update of [65, 130])").And.Contain("then in its last group Fused(MatMul(TN) -> SGD update of [130, 7])");
            rows.Launches.Should().Be(2, rows.Describe);
        }
        else rows.Launches.Should().Be(launches.Launches - 2, rows.Describe);
        AssertClose(rows.Losses, launches.Losses, "losses");
        AssertClose(rows.W1, launches.W1, "w1");
        AssertClose(rows.W2, launches.W2, "w2");
        rows.Losses[^1].Should().BeLessThan(rows.Losses[0], "the net trains");
    }

    [CpuOnly]
    [Theory]
    [InlineData(MatMulPath.Warp, 0)]
    [InlineData(MatMulPath.Tiled, 0)]
    [InlineData(MatMulPath.Warp, 3)]
    public void Row_chained_persistent_step_gives_the_bits_of_its_launches(MatMulPath path, int shares)
    {
        var launches = Train(Sim, path, persistent: false, rows: true, shares: shares);
        var persistent = Train(Sim, path, persistent: true, rows: true, shares: shares);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Describe.Should().Contain("Persistent: 2 phases (Rows, ").And.Contain("1 grid barriers");
        if (shares > 1) launches.Describe.Should().Contain($"{shares} groups a block sharing its first stage");
        persistent.Losses.Should().Equal(launches.Losses, "each block's stages and the parts add in the same order, whatever the grid");
        persistent.W1.Should().Equal(launches.W1);
        persistent.W2.Should().Equal(launches.W2);
    }

    // The 3-layer net with biases, tanh and sigmoid and a mean loss, for each optimizer: its forward
    // and its backward down to dH1 are row-local (the biases broadcast along rows, the activations'
    // gradients read their own rows), five stages in one launch; as a persistent kernel (SGD) it keeps
    // the row-chained launches' bits.
    [CpuOnly]
    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("adam")]
    public void Three_layer_row_chained_step_trains_as_its_launches(string optimizer)
    {
        var launches = TrainThreeLayer(optimizer, persistent: false);
        var rows = TrainThreeLayer(optimizer, persistent: false, rows: true);
        rows.Describe.Should().Contain("Rows, ").And.Contain("rows a group: Fused(MatMul(NN) -> Add with [33] -> Tanh) [33, 65], [65, 33], [33] -> [33, 33], then Fused(MatMul(NN) -> Add with [7] -> Sigmoid)");
        var chain = rows.Describe.Split('\n').Single(l => l.Contains("Rows, ", StringComparison.Ordinal));
        chain.Split("then Fused(").Length.Should().Be(5, "five stages: h1, h2, y with the loss, dH2, dH1 (passing over dW3, db2 and dW2)\n" + rows.Describe);
        chain.Should().EndWith("then Fused(MatMul(NT) -> TanhGrad (flipped) with [33, 33]) [33, 7], [33, 7], [33, 33] -> [33, 33]");
        rows.Launches.Should().BeLessThan(launches.Launches, rows.Describe);
        AssertClose(rows.Values, launches.Values, "losses and parameters");
        rows.Values[3].Should().BeLessThan(rows.Values[0], "the net trains");
        // As a persistent kernel under SGD only (the row phase is the same under any optimizer): the
        // momentum and Adam programs with a row chain made ILGPU fail the 3-layer momentum step's
        // persistent compile after them (KernelHost.Peek clears its caches and compiles again, and
        // every compile after that starts cold).
        if (optimizer != "sgd") return;
        var persistent = TrainThreeLayer(optimizer, persistent: true, rows: true);
        persistent.Persistent.Should().BeTrue(persistent.Describe);
        persistent.Describe.Should().Contain("(Rows");
        persistent.Values.Should().Equal(rows.Values, persistent.Describe);
    }

    // A product that reads other rows of a stage's output must not join the chain: its block would
    // read rows other groups have not stored yet. Here z = s h (every row of z needs all of h, its
    // B), and the backward's dH = s^T dZ (the same through A transposed).
    [CpuOnly]
    [Fact]
    public void A_row_chain_takes_no_stage_that_reads_other_rows()
    {
        (float[] Losses, float[] W, string Describe) Run(bool rows)
        {
            var dev = Sim;
            using var pin = new Pin(dev, MatMulPath.Small, persistent: false, rows: rows);
            Tensor.ManualSeed(45);
            using var x = Tensor.Randn([9, 13], dev);
            using var s = Tensor.Randn([9, 9], dev);
            using var t = Tensor.Randn([9, 6], dev);
            using var w = Tensor.Randn([13, 6], dev, requiresGrad: true);
            using var opt = new Sgd([w], 1e-4f);
            using var step = Graph.Compile(() => (s.MatMul(x.MatMul(w).Clamp(min: 0)) - t).Pow(2).Sum(), opt);
            var losses = step.Run(steps: 3).ToArray();
            return (losses, w.ToArray(), step.Describe());
        }
        var launches = Run(false);
        var rows = Run(true);
        rows.Describe.Should().NotContain("Rows,", "no product here reads only its own rows of another's output");
        AssertClose(rows.Losses, launches.Losses, "losses");
        AssertClose(rows.W, launches.W, "w");
    }

    // A deep chain whose early outputs die inside it (only the last layer learns): launched one after
    // another, a later stage's output would take a dead one's buffer (x w1 is 33x13, h2 w3 33x12:
    // one size class), but a row chain's groups run the stages at different times, and a block writing
    // rows of 12 over rows of 13 would write over rows another group has yet to read. The plan gives
    // every value a row chain touches a buffer of its own.
    [CpuOnly]
    [Fact]
    public void A_row_chain_shares_no_buffer_between_its_values()
    {
        (float[] Losses, string Describe, List<(int Homes, int Values)> Chains) Run(bool rows)
        {
            var dev = Sim;
            using var pin = new Pin(dev, MatMulPath.Small, persistent: false, rows: rows);
            Tensor.ManualSeed(46);
            using var x = Tensor.Randn([33, 13], dev);
            using var t = Tensor.Randn([33, 4], dev);
            using var w1 = Tensor.Randn([13, 13], dev);
            using var w2 = Tensor.Randn([13, 5], dev);
            using var w3 = Tensor.Randn([5, 12], dev);
            using var w4 = Tensor.Randn([12, 4], dev, requiresGrad: true);
            using var opt = new Sgd([w4], 1e-4f);
            using var step = Graph.Compile(() =>
                (x.MatMul(w1).Clamp(min: 0).MatMul(w2).Clamp(min: 0).MatMul(w3).Clamp(min: 0).MatMul(w4) - t).Pow(2).Sum(), opt);
            var losses = step.Run(steps: 3).ToArray();
            var chains = step.RowChainHomes.Zip(step.RowChainValues, (h, v) => (h.Count, v)).ToList();
            return (losses, step.Describe(), chains);
        }
        var launches = Run(false);
        var rows = Run(true);
        rows.Chains.Should().ContainSingle(rows.Describe);
        rows.Describe.Should().Contain("then Fused(MatMul(NN) -> Add(alpha=-1) with [33, 4]", "the whole forward and the loss are one row chain");
        rows.Chains[0].Homes.Should().Be(rows.Chains[0].Values, "each value the chain touches has its own buffer\n" + rows.Describe);
        AssertClose(rows.Losses, launches.Losses, "losses");
    }

    // A step compiled with row chains whose device turns them off later runs the chain's stages as
    // launches of their own (Emit's fallback), and trains on as the launches do.
    [CpuOnly]
    [Fact]
    public void A_row_chain_runs_as_launches_once_row_chains_are_off()
    {
        var launches = Train(Sim, MatMulPath.Small, persistent: false);
        var dev = Sim;
        using var pin = new Pin(dev, MatMulPath.Small, persistent: false, rows: true);
        Tensor.ManualSeed(41);
        using var x = Tensor.Randn([33, 65], dev);
        using var y = Tensor.Randn([33, 7], dev);
        using var w1 = Tensor.Randn([65, 130], dev, requiresGrad: true);
        using var w2 = Tensor.Randn([130, 7], dev, requiresGrad: true);
        using var opt = new Sgd([w1, w2], 1e-5f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        long Step()
        {
            long before = dev.Host.Launches;
            step.Run();
            return dev.Host.Launches - before;
        }
        var losses = step.Run(steps: 3).ToArray().ToList();
        long chained = Step();
        losses.Add(step.Output.Item());
        dev.Host.RowChains = false;
        losses.AddRange(step.Run(steps: 1).ToArray());
        long apart = Step();
        losses.Add(step.Output.Item());
        step.Describe().Should().Contain("Rows, ", "the step was compiled with its row chain");
        AssertClose([.. losses], launches.Losses, "losses");
        AssertClose(w1.ToArray(), launches.W1, "w1");
        AssertClose(w2.ToArray(), launches.W2, "w2");
        apart.Should().Be(chained + 2, "h, y with its loss and dH as three launches instead of one");
    }

    // On a GPU: the seed's shapes, the tuned kernels (Auto) or the warp kernel, 50 steps; with chain
    // tails the step is 2 launches, and the persistent kernel keeps the launches' bits.
    [Theory]
    [InlineData(MatMulPath.Warp)]
    [InlineData(MatMulPath.Auto)]
    public void Row_chained_seed_step_on_a_GPU_trains_as_its_launches(MatMulPath path)
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: the CPU simulators run the same tests above");
        var dev = Device.Get("cuda");
        var launches = Train(dev, path, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50);
        var rows = Train(dev, path, persistent: false, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50, chains: true, rows: true);
        RowSplit split;
        using (new Pin(dev, path, persistent: false, rows: true)) split = MatMulKernels.RowChainSplit(dev.Host, 64, 100)!.Value;
        split.Shares.Should().Be(Math.Clamp(dev.Host.Accelerator.NumMultiprocessors / 16, 1, MatMulKernels.MaxRowShares), "the rule spreads 16 blocks over the multiprocessors");
        string cut = split.Shares == 1 ? "16 blocks of 4 rows a group" : $"16 blocks of 4 rows, {split.Shares} groups a block sharing its first stage";
        rows.Describe.Should().Contain($"Rows, {cut}: Fused(MatMul(NN) -> Clamp(0, Infinity)) [64, 1000]");
        rows.Launches.Should().Be(2, rows.Describe);
        AssertClose(rows.Losses, launches.Losses, "losses");
        AssertClose(rows.W1, launches.W1, "w1", SeedWeightTolerance);
        AssertClose(rows.W2, launches.W2, "w2", SeedWeightTolerance);
        var persistent = Train(dev, path, persistent: true, batch: 64, inputs: 1000, hidden: 100, outputs: 10, steps: 50, chains: true, rows: true);
        if (!persistent.Persistent) return;
        persistent.Losses.Should().Equal(rows.Losses, persistent.Describe);
        persistent.W1.Should().Equal(rows.W1);
    }
}
