// The gradient table: one entry per primitive, one rule per input, null where the input has no
// gradient (the engine throws if one is needed). A rule maps dOut (c.G) to the gradient of that
// input, written with ordinary tensor ops, so the same table serves eager Backward and any engine
// that records those ops. Rules neither un-broadcast nor accumulate: the engine does both.
namespace AutogradNet;

/// <summary>What a rule sees: the node (inputs, output, parameters) and dOut.</summary>
internal sealed class GradContext(Node node, Tensor g)
{
    /// <summary>The gradient of the node's output.</summary>
    public Tensor G { get; } = g;

    /// <summary>The node's output.</summary>
    public Tensor Out => node.Output;

    /// <summary>The primitive's parameters.</summary>
    public OpSpec Op => node.Op;

    /// <summary>Input i of the node.</summary>
    public Tensor X(int i) => node.Inputs[i];
}

internal delegate Tensor GradRule(GradContext c);

internal static class Gradients
{
    public static readonly IReadOnlyDictionary<Prim, GradRule?[]> Table = new Dictionary<Prim, GradRule?[]>
    {
        [Prim.Neg] = [c => -c.G],
        [Prim.Exp] = [c => c.G * c.Out],
        [Prim.Log] = [c => c.G / c.X(0)],
        [Prim.Tanh] = [c => Tensor.Apply(new OpSpec(Prim.TanhGrad), c.Out, c.G)],
        [Prim.Sigmoid] = [c => Tensor.Apply(new OpSpec(Prim.SigmoidGrad), c.Out, c.G)],
        [Prim.Clamp] = [c => Tensor.Apply(new OpSpec(Prim.ClampGrad, c.Op.A, c.Op.B), c.Out, c.G)],
        [Prim.Pow] = [c => Tensor.Apply(new OpSpec(Prim.PowGrad, c.Op.A), c.X(0), c.G)],
        [Prim.Scale] = [c => c.G * c.Op.A],
        [Prim.AddScalar] = [c => c.G],
        [Prim.Add] = [c => c.G, c => c.Op.A == 1f ? c.G : c.G * c.Op.A],
        [Prim.Mul] = [c => c.G * c.X(1), c => c.G * c.X(0)],
        [Prim.Div] = [c => c.G / c.X(1), c =>
        {
            using var t = c.G * c.Out;
            using var u = t / c.X(1);
            return -u;
        }],
        [Prim.MatMul] = [MatMulGradA, MatMulGradB],
        [Prim.Sum] = [c =>
        {
            var keep = Shapes.Sum(c.X(0).ShapeArray, c.Op.Ints!, keepDim: true);
            using var k = c.G.Reshape(keep);
            return k.Expand(c.X(0).ShapeArray);
        }],
        [Prim.Expand] = [c => c.G],
        [Prim.Reshape] = [c => c.G.Reshape(c.X(0).ShapeArray)],
        [Prim.Transpose] = [c => c.G.Transpose()],
        // Backward halves are not differentiated again (no double backward yet).
        [Prim.ClampGrad] = [null, null],
        [Prim.TanhGrad] = [null, null],
        [Prim.SigmoidGrad] = [null, null],
        [Prim.PowGrad] = [null, null],
    };

    /// <summary>
    /// The gradient of input i of a node for dOut c.G, un-broadcast to the input's shape: the part of
    /// the engine that eager Backward and Graph.Compile's differentiation share. May return c.G itself.
    /// </summary>
    public static Tensor InputGradient(Node node, GradContext c, int i, string caller)
    {
        var rules = Table.TryGetValue(node.Op.Kind, out var r) ? r : null;
        var rule = (rules != null && i < rules.Length ? rules[i] : null)
            ?? throw new AutogradException(
                $"{caller}: no gradient rule for input {i} of {node.Op}. This op is not differentiable here; detach that input or compute it under Autograd.NoGrad().");
        var gi = rule(c);
        var shape = node.Inputs[i].ShapeArray;
        if (gi.ShapeArray.SequenceEqual(shape)) return gi;
        var reduced = Engine.SumTo(gi, shape);
        if (!ReferenceEquals(gi, c.G)) gi.Dispose();
        return reduced;
    }

    // C = op(A) op(B). With the flags (ta, tb):
    //   NN: dA = dC B^T,      dB = A^T dC
    //   TN: dA = B dC^T,      dB = A dC
    //   NT: dA = dC B,        dB = dC^T A
    //   TT: dA = B^T dC^T,    dB = dC^T A^T
    private static Tensor MatMulGradA(GradContext c)
    {
        bool ta = c.Op.Flag1, tb = c.Op.Flag2;
        var b = c.X(1);
        return (ta, tb) switch
        {
            (false, false) => Tensor.MatMul(c.G, false, b, true),
            (true, false) => Tensor.MatMul(b, false, c.G, true),
            (false, true) => Tensor.MatMul(c.G, false, b, false),
            _ => Tensor.MatMul(b, true, c.G, true),
        };
    }

    private static Tensor MatMulGradB(GradContext c)
    {
        bool ta = c.Op.Flag1, tb = c.Op.Flag2;
        var a = c.X(0);
        return (ta, tb) switch
        {
            (false, false) => Tensor.MatMul(a, true, c.G, false),
            (true, false) => Tensor.MatMul(a, false, c.G, false),
            (false, true) => Tensor.MatMul(c.G, true, a, false),
            _ => Tensor.MatMul(c.G, true, a, true),
        };
    }
}
