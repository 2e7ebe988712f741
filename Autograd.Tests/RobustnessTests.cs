// Determinism, out-of-memory, and NaN/Inf detection.
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class RobustnessTests : IClassFixture<SimulatorsReleased>
{
    private static float[] SeedLosses(bool compiled, int steps)
    {
        var (x, y, w1, w2) = TestData.SeedNet(3);
        using var opt = new Sgd([w1, w2], 1e-6f);
        var losses = new float[steps];
        if (compiled)
        {
            using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
            return step.Run(steps).ToArray();
        }
        for (int t = 0; t < steps; t++)
        {
            var loss = (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum();
            losses[t] = loss.Item();
            loss.Backward();
            opt.Step();
            opt.ZeroGrad();
        }
        return losses;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Two_runs_of_the_seed_give_bitwise_identical_losses(bool compiled)
    {
        var a = SeedLosses(compiled, 60);
        var b = SeedLosses(compiled, 60);
        a.Should().Equal(b, "every kernel sums in a fixed order (no atomics)");
        a[^1].Should().BeLessThan(a[0]);
    }

    [Fact]
    public void Out_of_memory_is_a_typed_exception_naming_bytes_device_and_use_and_allocates_nothing()
    {
        var dev = Device.CpuSimulator(2, 1, 9); // a device of its own
        var keep = Tensor.Zeros([1000], dev);
        long buffers = dev.LiveBuffers;
        dev.MemoryLimitBytes = 64 << 10;
        try
        {
            var act = () => Tensor.Zeros([100_000], dev);
            act.Should().Throw<DeviceOutOfMemoryException>()
                .WithMessage($"Allocating 400,000 bytes (458,752 with the cache's size class) on {dev} failed: it would pass the device's limit of 65,536 bytes*In use on this device: 4,096 bytes in 1 tensor buffers*Dispose*")
                .Which.RequestedBytes.Should().Be(400_000);
            dev.LiveBuffers.Should().Be(buffers, "nothing is left half-allocated");
        }
        finally
        {
            dev.MemoryLimitBytes = null;
        }
        Tensor.Zeros([100_000], dev).NumElements.Should().Be(100_000);
        keep.Dispose();
    }

    [Fact]
    public void DetectAnomaly_names_the_first_op_that_produced_NaN()
    {
        var x = Tensor.FromArray([1f, 0.5f, -2f, 3f], [4], TestData.Device);
        var w = Tensor.FromArray([1f, 2f, 3f, 4f], [4], TestData.Device, requiresGrad: true);
        using (Autograd.DetectAnomaly())
        {
            var act = () => (x.Log() * w).Sum();
            act.Should().Throw<AnomalyException>().WithMessage("Log produced NaN from finite inputs of shape [4]*first op*");
        }
        // Without the check the NaN flows through silently.
        float.IsNaN((x.Log() * w).Sum().Item()).Should().BeTrue();
    }

    [Fact]
    public void DetectAnomaly_checks_the_backward_ops_too()
    {
        var w = Tensor.FromArray([0f, 1f, 4f], [3], TestData.Device, requiresGrad: true);
        using (Autograd.DetectAnomaly())
        {
            var loss = w.Pow(0.5f).Sum(); // sqrt is finite at 0, its derivative is not
            var act = () => loss.Backward();
            act.Should().Throw<AnomalyException>().WithMessage("PowGrad(0.5) produced Infinity from finite inputs*");
        }
    }
}
