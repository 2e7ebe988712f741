// Misuse gets a typed exception whose message names the op, the shapes or devices, and the fix.
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class MisuseTests : IClassFixture<SimulatorsReleased>
{
    [Fact]
    public void MatMul_shape_mismatch_names_the_op_and_both_shapes()
    {
        var a = TestData.Tensor([64, 1000], 1);
        var b = TestData.Tensor([100, 10], 2);
        var act = () => a.MatMul(b);
        act.Should().Throw<ShapeMismatchException>()
            .WithMessage("MatMul: shapes [64, 1000] and [100, 10] cannot be multiplied*(1000)*(100)*Transpose or reshape*");
    }

    [Fact]
    public void Broadcast_mismatch_names_the_op_and_both_shapes()
    {
        var a = TestData.Tensor([7, 33], 1);
        var b = TestData.Tensor([7, 32], 2);
        var act = () => a + b;
        act.Should().Throw<ShapeMismatchException>().WithMessage("Add: shapes [7, 33] and [7, 32] are not broadcastable*33 vs 32*");
    }

    [Fact]
    public void Reshape_to_a_wrong_count_is_refused()
    {
        var a = TestData.Tensor([7, 33], 1);
        var act = () => a.Reshape(5, 50);
        act.Should().Throw<ShapeMismatchException>().WithMessage("Reshape: cannot view shape [7, 33] (231 elements) as [5, 50] (250 elements)*");
    }

    [Fact]
    public void Backward_on_a_non_scalar_without_gradient_throws()
    {
        var w = TestData.Tensor([7, 5], 3, requiresGrad: true);
        var act = () => (w * 2f).Backward();
        act.Should().Throw<AutogradException>().WithMessage("Backward: the tensor has shape [7, 5] (35 elements)*needs a scalar*Sum()*");
    }

    [Fact]
    public void Backward_on_a_tensor_without_grad_throws()
    {
        var x = TestData.Tensor([3], 3);
        var act = () => x.Sum().Backward();
        act.Should().Throw<AutogradException>().WithMessage("Backward: tensor [] does not require grad*requiresGrad: true*");
    }

    [Fact]
    public void Use_after_dispose_throws_ObjectDisposedException_naming_the_tensor()
    {
        var x = TestData.Tensor([7, 33], 4);
        x.Dispose();
        var act = () => x.Exp();
        act.Should().Throw<ObjectDisposedException>().WithMessage("Cannot Exp tensor [7, 33]*disposed*");
        var read = () => x.Item();
        read.Should().Throw<ShapeMismatchException>();
        var read2 = () => x.ToArray();
        read2.Should().Throw<ObjectDisposedException>().WithMessage("Cannot read tensor [7, 33]*");
    }

    [Fact]
    public void Tensors_of_two_devices_mixed_throw_naming_both_devices()
    {
        var other = Device.CpuSimulator(2, 2, 1);
        var a = TestData.Tensor([7], 5);
        var b = Tensor.FromArray(TestData.Normal(7, 6), [7], other);
        var act = () => a * b;
        act.Should().Throw<DeviceMismatchException>()
            .WithMessage($"Mul: operands are on different devices ({TestData.Device.Name} and {other.Name})*one device*");
    }

    [Fact]
    public void A_missing_device_throws_listing_what_exists()
    {
        var act = () => Device.Get("cuda:7");
        act.Should().Throw<DeviceNotFoundException>().WithMessage("No device 'cuda:7' on this machine. Available: cpu (*AUTOGRAD_DEVICE*");
        var bogus = () => Device.Get("tpu");
        bogus.Should().Throw<DeviceNotFoundException>().WithMessage("No device 'tpu'*Available: cpu*");
    }

    [Fact]
    public void Item_of_a_many_element_tensor_throws()
    {
        var x = TestData.Tensor([2, 3], 7);
        var act = () => x.Item();
        act.Should().Throw<ShapeMismatchException>().WithMessage("Item: only a one-element tensor*[2, 3]*Sum()*");
    }

    [Fact]
    public void FromArray_with_a_wrong_shape_throws()
    {
        var act = () => Tensor.FromArray([1f, 2f, 3f], [2, 2], TestData.Device);
        act.Should().Throw<ShapeMismatchException>().WithMessage("FromArray: 3 values cannot fill shape [2, 2]*");
    }

    [Fact]
    public void Rank_above_four_is_refused()
    {
        var act = () => Tensor.Zeros([1, 2, 3, 4, 5], TestData.Device);
        act.Should().Throw<ShapeMismatchException>().WithMessage("Full: shape [1, 2, 3, 4, 5] has rank 5; at most 4*");
    }

    [Fact]
    public void A_learning_rate_that_is_not_positive_and_finite_is_refused()
    {
        var w = TestData.Tensor([3], 8, requiresGrad: true);
        var make = () => new Optim.Sgd([w], 0f);
        make.Should().Throw<ArgumentOutOfRangeException>().WithMessage("Sgd: learning rate must be positive and finite, got 0*");
        using var opt = new Optim.Adam([w], 1e-3f);
        var set = () => opt.LearningRate = float.NaN;
        set.Should().Throw<ArgumentOutOfRangeException>().WithMessage("Adam: learning rate must be positive and finite, got NaN*");
        opt.LearningRate.Should().Be(1e-3f, "a refused value changes nothing");
    }
}
