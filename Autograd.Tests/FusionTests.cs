// Fusion must not change what a compiled step computes: each graph below is compiled with fusion on
// and off (AUTOGRAD_FUSE=0) and trained a few steps; losses and parameters must agree (to the bit on
// the CPU accelerator, where both run the same arithmetic in the same order), and match eager.
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class FusionTests
{
    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var g in new[] { "bias-row", "bias-1xN", "bias-column", "scalar-scale", "operand-left", "product-read-twice", "pow3-sum", "mean-tanh", "sum-of-product", "two-layer-bias", "both-factors-trained", "gradient-is-a-side-output" })
            foreach (var opt in new[] { "sgd", "adam" })
                d.Add(g, opt);
        return d;
    }

    // x (7, 33), y (7, 5), col (7, 1); parameters w (33, 5), b (5), s (1), w2 (5, 3), a (7, 33).
    private static Func<Tensor[], Tensor> Graph(string name, Tensor x, Tensor y, Tensor col) => name switch
    {
        "bias-row" => p => ((x.MatMul(p[0]) + p[1]).Relu() - y).Pow(2).Sum(),
        "bias-1xN" => p => ((x.MatMul(p[0]) + p[1].Reshape([1, 5])).Tanh() - y).Pow(2).Sum(),
        "bias-column" => p => ((x.MatMul(p[0]) + col).Sigmoid() - y).Pow(2).Sum(),
        "scalar-scale" => p => ((x.MatMul(p[0]) * p[2]).Relu() - y).Pow(2).Sum(),
        "operand-left" => p => (y - x.MatMul(p[0])).Pow(2).Sum(),
        "product-read-twice" => p => { var h = x.MatMul(p[0]); return (h * h + h).Sum(); },
        "pow3-sum" => p => (x.MatMul(p[0]) - y).Pow(3).Sum(),
        "mean-tanh" => p => x.MatMul(p[0]).Tanh().Mean(),
        "sum-of-product" => p => x.MatMul(p[0]).Sum(),
        "two-layer-bias" => p => ((x.MatMul(p[0]) + p[1]).Relu().MatMul(p[3]) - y.MatMul(p[3])).Pow(2).Sum(),
        // Each factor's gradient product reads the other factor: only one update may be folded
        // (moved after the other's read), or the second would read an already updated factor.
        "both-factors-trained" => p => (p[4].MatMul(p[0]) - y).Pow(2).Sum(),
        // The sum's sibling output (2(a - x)) is the parameter's gradient itself, read by the update.
        _ => p => (p[4] - x).Pow(2).Sum(),
    };

    private static Tensor[] Parameters() =>
    [
        TestData.Tensor([33, 5], 3, requiresGrad: true),
        TestData.Tensor([5], 4, requiresGrad: true),
        Tensor.FromArray([0.7f], [1], TestData.Device, requiresGrad: true),
        TestData.Tensor([5, 3], 6, requiresGrad: true),
        TestData.Tensor([7, 33], 7, requiresGrad: true),
    ];

    // The graph on fresh data and parameters (the same every call), and the parameters it trains.
    private static (Func<Tensor[], Tensor> Fn, Tensor[] P, Tensor[] Used) Setup(string graph)
    {
        var x = TestData.Tensor([7, 33], 1);
        var y = TestData.Tensor([7, 5], 2);
        var col = TestData.Tensor([7, 1], 5);
        var p = Parameters();
        return (Graph(graph, x, y, col), p, UsedParameters(graph, p));
    }

    private static (float[] Losses, float[][] Params, int Nodes) Compiled(string graph, string opt, bool fuse)
    {
        var (fn, p, used) = Setup(graph);
        using var o = Make(opt, used);
        using var step = TestData.Compile(() => fn(p), o, fuse);
        var losses = step.Run(steps: 5).ToArray();
        return (losses, used.Select(t => t.ToArray()).ToArray(), step.Nodes);
    }

    private static Tensor[] UsedParameters(string graph, Tensor[] p) => graph switch
    {
        "bias-row" or "bias-1xN" => [p[0], p[1]],
        "scalar-scale" => [p[0], p[2]],
        "two-layer-bias" => [p[0], p[1], p[3]],
        "both-factors-trained" => [p[4], p[0]],
        "gradient-is-a-side-output" => [p[4]],
        _ => [p[0]],
    };

    private static Optimizer Make(string opt, Tensor[] ps) => opt == "sgd" ? new Sgd(ps, 1e-3f) : new Adam(ps, 1e-2f);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fused_and_unfused_steps_agree(string graph, string opt)
    {
        var fused = Compiled(graph, opt, fuse: true);
        var plain = Compiled(graph, opt, fuse: false);
        // The last two have nothing to fuse but the SGD update (which saves a launch, not a node).
        if (graph is not ("product-read-twice" or "sum-of-product"))
            fused.Nodes.Should().BeLessThan(plain.Nodes, "something in this graph fuses");
        if (!TestData.OnGpu)
        {
            fused.Losses.Should().Equal(plain.Losses, graph);
            for (int i = 0; i < fused.Params.Length; i++) fused.Params[i].Should().Equal(plain.Params[i], $"{graph}: parameter {i}");
        }
        else
        {
            TestData.ShouldMatch(fused.Losses, plain.Losses.Select(v => (double)v).ToArray(), 1e-5, 1e-6, graph);
            for (int i = 0; i < fused.Params.Length; i++)
                TestData.ShouldMatch(fused.Params[i], plain.Params[i].Select(v => (double)v).ToArray(), 1e-5, 1e-6, $"{graph}: parameter {i}");
        }

        // And the fused step trains like eager.
        var (fn, p, used) = Setup(graph);
        using var o = Make(opt, used);
        var eager = new double[5];
        for (int t = 0; t < 5; t++)
        {
            var l = fn(p);
            eager[t] = l.Item();
            l.Backward();
            o.Step();
            o.ZeroGrad();
        }
        TestData.ShouldMatch(fused.Losses, eager, 1e-5, 1e-6, $"{graph}: fused compiled vs eager");
    }
}
