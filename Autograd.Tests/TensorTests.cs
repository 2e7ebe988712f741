// Factories, host round trips, ToString, and the ops' forward values through the Tensor API.
using AutogradNet.Tests.Support;
using ILGPU.Runtime;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class TensorTests
{
    [Fact]
    public void Factories_fill_and_round_trip()
    {
        var d = TestData.Device;
        Tensor.Zeros([7, 33], d).ToArray().Should().AllSatisfy(v => v.Should().Be(0f));
        Tensor.Ones([65], d).ToArray().Should().AllSatisfy(v => v.Should().Be(1f));
        Tensor.Full([2, 3, 4, 5], -2.5f, d).ToArray().Should().AllSatisfy(v => v.Should().Be(-2.5f));
        var data = TestData.Normal(130, 1);
        Tensor.FromArray(data, [13, 10], d).ToArray().Should().Equal(data);
        Tensor.Scalar(3.25f, d).Item().Should().Be(3.25f);
        var m = Tensor.FromArray(new float[,] { { 1, 2, 3 }, { 4, 5, 6 } }, d);
        m.Shape.Should().Equal(2, 3);
        m.ToArray().Should().Equal(1, 2, 3, 4, 5, 6);
    }

    [Fact]
    public void Host_tensors_start_on_a_64_byte_boundary()
    {
        // The host SGEMM and loops load 64-byte vectors; from the C heap a tensor started 16 bytes past
        // a boundary and every vector load crossed two cache lines (Memory.cs).
        var d = AutogradNet.Device.Cpu;
        var held = new List<Tensor>();
        foreach (int n in new[] { 1, 7, 33, 65, 130, 100_000, 1 << 20 })
            for (int round = 0; round < 2; round++)
            {
                // The second round takes the first round's buffers back from the cache.
                var t = Tensor.Randn([n], d);
                ((long)t.AsArrayView().LoadEffectiveAddressAsPtr() % 64).Should().Be(0, $"a tensor of {n} floats, round {round}");
                t.ToArray().Should().HaveCount(n);
                if (round == 0) t.Dispose();
                else held.Add(t);
            }
        foreach (var t in held) t.Dispose();
    }

    [Fact]
    public void Randn_is_reproducible_from_a_seed_and_matches_host_philox()
    {
        var d = TestData.Device;
        Tensor.ManualSeed(123);
        var a = Tensor.Randn([33, 7], d).ToArray();
        var b = Tensor.Randn([5], d).ToArray();
        Tensor.ManualSeed(123);
        Tensor.Randn([33, 7], d).ToArray().Should().Equal(a);
        var expected = Enumerable.Range(0, 5).Select(i => Reference.Normal(123, (ulong)(231 + i))).ToArray();
        TestData.ShouldMatch(b, expected, 1e-6, 1e-6, "second draw continues the counter");
    }

    [Fact]
    public void ToString_shows_shape_device_and_preview()
    {
        var t = Tensor.FromArray([1.5f, -2f, 3f], [3], TestData.Device);
        t.ToString().Should().Be($"Tensor[3] on {TestData.Device.Name} [1.5, -2, 3]");
        var w = TestData.Tensor([2, 10], 3, requiresGrad: true);
        w.ToString().Should().StartWith($"Tensor[2, 10] on {TestData.Device.Name}, requiresGrad [").And.EndWith(", ...]");
    }

    [Fact]
    public void Ops_forward_values_match_host()
    {
        var a = TestData.Normal(7 * 33, 4);
        var b = TestData.Normal(33, 5);
        var ta = Tensor.FromArray(a, [7, 33], TestData.Device);
        var tb = Tensor.FromArray(b, [33], TestData.Device);
        TestData.ShouldMatch((ta - tb).ToArray(), Reference.Zip(Reference.ToDouble(a), [7, 33], Reference.ToDouble(b), [33], (p, q) => p - q, out _), 1e-6, 1e-6, "sub");
        TestData.ShouldMatch(ta.Relu().ToArray(), a.Select(v => (double)Math.Max(v, 0)).ToArray(), 0, 0, "relu");
        TestData.ShouldMatch(ta.Sum(1).ToArray(), Reference.SumAxes(Reference.ToDouble(a), [7, 33], [1], out _), 1e-5, 1e-5, "sum(1)");
        ta.Sum(1).Shape.Should().Equal(7);
        ta.Sum(1, keepDim: true).Shape.Should().Equal(7, 1);
        ta.Sum().Shape.Should().BeEmpty();
        TestData.ShouldMatch([ta.Mean().Item()], [a.Average(v => (double)v)], 1e-5, 1e-6, "mean");
        ta.Transpose().Shape.Should().Equal(33, 7);
        ta.Reshape(-1).Shape.Should().Equal(231);
    }
}
