// Autograd semantics: accumulation, no-grad scopes, detach, released graphs, in-place rules, SGD.
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class AutogradTests : IClassFixture<SimulatorsReleased>
{
    [Fact]
    public void Grad_accumulates_across_backward_calls_until_zeroed()
    {
        var x = TestData.Tensor([7, 33], 1, requiresGrad: true);
        var xs = x.ToArray();
        (x * 3f).Sum().Backward();
        (x * x).Sum().Backward();
        var expected = xs.Select(v => 3.0 + 2 * v).ToArray();
        TestData.ShouldMatch(x.Grad!.ToArray(), expected, 1e-5, 1e-6, "3 + 2x");

        x.Grad!.ZeroInPlace();
        (x * 2f).Sum().Backward();
        x.Grad!.ToArray().Should().AllSatisfy(v => v.Should().Be(2f));
    }

    [Fact]
    public void NoGrad_is_a_scope_that_restores_the_previous_mode()
    {
        var w = TestData.Tensor([5], 2, requiresGrad: true);
        Autograd.IsGradEnabled.Should().BeTrue();
        using (Autograd.NoGrad())
        {
            (w * 2f).RequiresGrad.Should().BeFalse();
            using (Autograd.NoGrad()) Autograd.IsGradEnabled.Should().BeFalse();
            Autograd.IsGradEnabled.Should().BeFalse("the inner scope restores the outer one");
            using (Autograd.EnableGrad()) (w * 2f).RequiresGrad.Should().BeTrue();
        }
        Autograd.IsGradEnabled.Should().BeTrue();
        (w * 2f).RequiresGrad.Should().BeTrue();
    }

    [Fact]
    public void Detach_shares_data_but_not_history()
    {
        var w = TestData.Tensor([7], 3, requiresGrad: true);
        var y = w * 2f;
        var d = y.Detach();
        d.RequiresGrad.Should().BeFalse();
        d.IsLeaf.Should().BeTrue();
        d.ToArray().Should().Equal(y.ToArray());
        (d * w).Sum().Backward();
        TestData.ShouldMatch(w.Grad!.ToArray(), Reference.ToDouble(d.ToArray()), 0, 0, "grad through the detached factor only");
    }

    [Fact]
    public void Backward_releases_intermediates_and_a_second_backward_is_refused()
    {
        var w = TestData.Tensor([7, 33], 4, requiresGrad: true);
        var h = w.Tanh();
        var loss = (h * h).Sum();
        loss.Backward();
        h.IsDisposed.Should().BeTrue("intermediates are freed like PyTorch's saved tensors");
        loss.Item().Should().BeGreaterThan(0, "the root stays readable");
        var read = () => h.ToArray();
        read.Should().Throw<ObjectDisposedException>().WithMessage("*released*retainGraph: true*");
        var again = () => loss.Backward();
        again.Should().Throw<AutogradException>().WithMessage("*already released*retainGraph: true*");
    }

    [Fact]
    public void RetainGraph_allows_a_second_backward()
    {
        var w = TestData.Tensor([33], 5, requiresGrad: true);
        var loss = w.Exp().Sum();
        loss.Backward(retainGraph: true);
        loss.Backward();
        var expected = w.ToArray().Select(v => 2 * Math.Exp(v)).ToArray();
        TestData.ShouldMatch(w.Grad!.ToArray(), expected, 1e-5, 1e-6, "twice exp");
    }

    [Fact]
    public void Backward_with_an_explicit_gradient_works_on_non_scalars()
    {
        var w = TestData.Tensor([7, 5], 6, requiresGrad: true);
        var g = TestData.Tensor([7, 5], 7);
        (w * 3f).Backward(g);
        TestData.ShouldMatch(w.Grad!.ToArray(), g.ToArray().Select(v => 3.0 * v).ToArray(), 1e-6, 1e-7, "3 g");
    }

    [Fact]
    public void Gradients_skip_inputs_that_do_not_require_grad()
    {
        var x = TestData.Tensor([7, 33], 8);
        var w = TestData.Tensor([33, 5], 9, requiresGrad: true);
        x.MatMul(w).Sum().Backward();
        x.Grad.Should().BeNull();
        w.Grad.Should().NotBeNull();
    }

    [Fact]
    public void In_place_update_of_a_parameter_outside_NoGrad_is_refused()
    {
        var w = TestData.Tensor([5], 10, requiresGrad: true);
        var g = TestData.Tensor([5], 11);
        var act = () => w.SubInPlace(g);
        act.Should().Throw<AutogradException>().WithMessage("SubInPlace: an in-place update*NoGrad*").Which.Message.Should().Contain("[5]");
        using (Autograd.NoGrad()) w.SubInPlace(g, 0.5f);
    }

    [Fact]
    public void Compound_assignment_updates_in_place_like_pytorch()
    {
        var w = TestData.Tensor([7, 3], 13, requiresGrad: true);
        var alias = w;
        var g = TestData.Tensor([7, 3], 14);
        var b = TestData.Tensor([3], 15);
        var w0 = w.ToArray();
        var act = () => { w -= 0.5f * g; };
        act.Should().Throw<AutogradException>("outside NoGrad, as for SubInPlace").WithMessage("SubInPlace*NoGrad*");
        using (Autograd.NoGrad())
        {
            w -= 0.5f * g;   // PyTorch: w1 -= learning_rate * w1.grad
            w += b;          // broadcasts
            w *= 2f;
        }
        ReferenceEquals(w, alias).Should().BeTrue("the operators mutate the tensor, they do not rebind it");
        w.RequiresGrad.Should().BeTrue();
        var gv = g.ToArray();
        var bv = b.ToArray();
        var expected = w0.Select((v, i) => 2.0 * ((double)v - 0.5 * gv[i] + bv[i % 3])).ToArray();
        TestData.ShouldMatch(alias.ToArray(), expected, 1e-6, 1e-6, "w = 2 (w - 0.5 g + b)");
    }

    [Fact]
    public void Sgd_steps_and_zeroes()
    {
        var w = TestData.Tensor([7, 3], 12, requiresGrad: true);
        var before = w.ToArray();
        var opt = new Sgd([w], 0.1f);
        (w * w).Sum().Backward();
        opt.Step();
        TestData.ShouldMatch(w.ToArray(), before.Select(v => v - 0.1 * 2 * v).ToArray(), 1e-6, 1e-7, "w - lr 2w");
        opt.ZeroGrad();
        w.Grad!.ToArray().Should().AllSatisfy(v => v.Should().Be(0f));
    }

    [Fact]
    public void Seed_loop_without_dispose_keeps_device_memory_flat()
    {
        var dev = TestData.Device;
        long threshold = Memory.CollectThresholdBytes;
        // A small threshold makes the allocator collect dropped temporaries within a few steps here.
        Memory.CollectThresholdBytes = 256 << 10;
        try
        {
            SeedLoop(dev);
        }
        finally
        {
            Memory.CollectThresholdBytes = threshold;
        }
    }

    private static void SeedLoop(Device dev)
    {
        var x = Tensor.Randn([64, 100], dev);
        var y = Tensor.Randn([64, 10], dev);
        var w1 = Tensor.Randn([100, 50], dev, requiresGrad: true);
        var w2 = Tensor.Randn([50, 10], dev, requiresGrad: true);
        long buffersAfterWarmup = 0, bytesAfterWarmup = 0, allocationsAfterWarmup = 0;
        for (int t = 0; t < 600; t++)
        {
            var loss = (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum();
            loss.Backward();
            using (Autograd.NoGrad())
            {
                w1.SubInPlace(1e-5f * w1.Grad!);
                w2.SubInPlace(1e-5f * w2.Grad!);
                w1.Grad!.ZeroInPlace();
                w2.Grad!.ZeroInPlace();
            }
            if (t == 99)
            {
                Memory.Collect();
                buffersAfterWarmup = Memory.LiveBuffers;
                bytesAfterWarmup = Memory.LiveBytes;
                allocationsAfterWarmup = Memory.DeviceAllocations;
            }
        }
        Memory.Collect();
        // At most, not exactly: tensors of earlier tests may still be finalized meanwhile.
        Memory.LiveBuffers.Should().BeLessThanOrEqualTo(buffersAfterWarmup, "no live buffer may accumulate over 500 steps");
        Memory.LiveBytes.Should().BeLessThanOrEqualTo(bytesAfterWarmup);
        // Dropped temporaries (the loss, lr * grad) come back through finalizers; the allocator collects
        // before its driver bytes pass the threshold, so the cache stays bounded (without reuse: 1,500).
        long allocated = Memory.DeviceAllocations - allocationsAfterWarmup;
        allocated.Should().BeLessThan(16, "buffers are reused from the cache");
    }

    [Fact]
    public void Dispose_is_idempotent_and_frees_the_buffer()
    {
        // A device of its own: no other test's tensors are finalized into its counts meanwhile.
        var dev = Device.CpuSimulator(2, 1, 3);
        Memory.Collect();
        long before = dev.LiveBuffers;
        var t = Tensor.FromArray(TestData.Normal(130 * 65, 13), [130, 65], dev, requiresGrad: true);
        using (var loss = (t * 2f).Sum()) loss.Backward();
        Memory.Collect();
        dev.LiveBuffers.Should().Be(before + 2, "the tensor and its gradient");
        t.Dispose();
        t.Dispose();
        dev.LiveBuffers.Should().Be(before);
        t.IsDisposed.Should().BeTrue();
    }
}
