// Tensor.Scope(): everything created inside is freed at its end, except what is kept and what the
// library keeps for longer (gradients, optimizer state, compiled steps).
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class ScopeTests : IClassFixture<SimulatorsReleased>
{
    [Fact]
    public void A_scope_frees_what_was_created_inside_except_what_is_kept()
    {
        var dev = Device.CpuSimulator(2, 1, 6); // a device of its own, to count its buffers
        var x = Tensor.FromArray(TestData.Normal(7 * 33, 1), [7, 33], dev);
        var w = Tensor.FromArray(TestData.Normal(33 * 5, 2), [33, 5], dev, requiresGrad: true);
        long before = dev.LiveBuffers;
        Tensor kept;
        using (var scope = Tensor.Scope())
        {
            var h = x.MatMul(w).Tanh();
            var loss = (h * h).Sum();
            loss.Backward();
            kept = scope.Keep(loss.Detach() * 2f);
            scope.Count.Should().BeGreaterThan(0);
        }
        w.Grad.Should().NotBeNull();
        w.Grad!.IsDisposed.Should().BeFalse("a gradient outlives the step's scope");
        kept.IsDisposed.Should().BeFalse();
        kept.Item().Should().BeGreaterThan(0);
        dev.LiveBuffers.Should().Be(before + 2, "only the gradient and the kept tensor remain");
    }

    [Fact]
    public void Scopes_nest_and_keep_moves_to_the_enclosing_one()
    {
        var dev = Device.CpuSimulator(2, 1, 7);
        long before = dev.LiveBuffers;
        Tensor inner;
        using (var outer = Tensor.Scope())
        {
            using (var scope = Tensor.Scope())
            {
                inner = scope.Keep(Tensor.Ones([65], dev) * 3f);
                _ = Tensor.Zeros([130], dev);
            }
            inner.IsDisposed.Should().BeFalse("kept moves it to the outer scope");
            dev.LiveBuffers.Should().Be(before + 1);
        }
        inner.IsDisposed.Should().BeTrue("the outer scope frees it");
        dev.LiveBuffers.Should().Be(before);
    }

    [Fact]
    public void Optimizer_state_and_compiled_steps_made_inside_a_scope_survive_it()
    {
        var dev = Device.CpuSimulator(2, 1, 8);
        var x = Tensor.FromArray(TestData.Normal(7 * 33, 1), [7, 33], dev);
        var w = Tensor.FromArray(TestData.Normal(33 * 5, 2), [33, 5], dev, requiresGrad: true);
        using var opt = new Adam([w], 1e-2f);
        CompiledStep step;
        using (Tensor.Scope())
        {
            step = Graph.Compile(() => x.MatMul(w).Pow(2).Mean(), opt);
            step.Run();
        }
        float a = step.Run().Item();
        float b = step.Run().Item();
        b.Should().BeLessThan(a);
        step.Dispose();
    }
}
