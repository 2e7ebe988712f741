// The primitives: every tensor op is one of these, or a composite built from them. A primitive has
// a kernel (Executor.cs), a shape rule (Shapes.cs) and a gradient rule (Gradients.cs); composites
// (Sub, Relu, Mean, scalar forms) need none of the three.
namespace AutogradNet;

/// <summary>The primitive ops of the engine.</summary>
public enum Prim
{
    /// <summary>-x.</summary>
    Neg,
    /// <summary>exp(x).</summary>
    Exp,
    /// <summary>ln(x).</summary>
    Log,
    /// <summary>tanh(x).</summary>
    Tanh,
    /// <summary>1/(1+exp(-x)).</summary>
    Sigmoid,
    /// <summary>min(max(x, A), B).</summary>
    Clamp,
    /// <summary>x^A.</summary>
    Pow,
    /// <summary>x * A.</summary>
    Scale,
    /// <summary>x + A.</summary>
    AddScalar,
    /// <summary>a + A * b, broadcasting (Sub is Add with A = -1).</summary>
    Add,
    /// <summary>a * b, broadcasting.</summary>
    Mul,
    /// <summary>a / b, broadcasting.</summary>
    Div,
    /// <summary>Backward of Clamp(A, B): dOut where A &lt; y &lt; B, else 0. Inputs (y, dOut), y the clamp's output.</summary>
    ClampGrad,
    /// <summary>Backward of Tanh: dOut * (1 - y^2). Inputs (y, dOut).</summary>
    TanhGrad,
    /// <summary>Backward of Sigmoid: dOut * y * (1 - y). Inputs (y, dOut).</summary>
    SigmoidGrad,
    /// <summary>Backward of Pow(A): dOut * A * x^(A-1). Inputs (x, dOut).</summary>
    PowGrad,
    /// <summary>op(a) op(b) with op = transpose when Flag1 / Flag2 is set.</summary>
    MatMul,
    /// <summary>Sum over Ints (the axes); Flag1 keeps them as extent 1.</summary>
    Sum,
    /// <summary>Broadcast to the shape Ints.</summary>
    Expand,
    /// <summary>Same data, the shape Ints.</summary>
    Reshape,
    /// <summary>2-D transpose.</summary>
    Transpose,
    /// <summary>A chain of elementwise ops fused into one generated kernel (compiled graphs only).</summary>
    Fused,
}

/// <summary>A primitive with its parameters.</summary>
/// <param name="Kind">The primitive.</param>
/// <param name="A">First scalar parameter (bound, exponent, scale, alpha).</param>
/// <param name="B">Second scalar parameter.</param>
/// <param name="Ints">Axes or a shape.</param>
/// <param name="Flag1">First flag (transA, keepDim).</param>
/// <param name="Flag2">Second flag (transB).</param>
/// <param name="Payload">The fused chain, for Fused.</param>
internal sealed record OpSpec(Prim Kind, float A = 0, float B = 0, int[]? Ints = null, bool Flag1 = false, bool Flag2 = false, object? Payload = null)
{
    public override string ToString() => Kind switch
    {
        Prim.Clamp or Prim.ClampGrad => $"{Kind}({A}, {B})",
        Prim.Pow or Prim.PowGrad or Prim.Scale or Prim.AddScalar => $"{Kind}({A})",
        Prim.Add when A != 1 => $"Add(alpha={A})",
        Prim.MatMul when Payload is MatMulEpilogue e => $"Fused({e.Text})",
        Prim.MatMul when Payload is MatMulSumOp f => $"Fused({f.Text})",
        Prim.MatMul when Payload is MatMulPairOp p => $"Paired({p.FirstOp} | {p.SecondOp})",
        Prim.MatMul when Payload is MatMulChainOp c => $"Chain({c.Text})",
        Prim.MatMul when Payload is MatMulRowsOp r => $"Rows({r.Text})",
        Prim.Sum when Payload is SumMapOp s => $"Fused({s.Text})",
        Prim.Sum when Payload is SumInto s => $"Fused({s.Text})",
        Prim.MatMul => $"MatMul({(Flag1 ? "T" : "N")}{(Flag2 ? "T" : "N")})",
        Prim.Sum => $"Sum([{string.Join(", ", Ints ?? [])}]{(Flag1 ? ", keepDim" : "")})",
        Prim.Expand or Prim.Reshape => $"{Kind}({Tensor.ShapeText(Ints ?? [])})",
        Prim.Fused => $"Fused({((FusedOp)Payload!).Text})",
        _ => Kind.ToString(),
    };
}

/// <summary>A recorded application of a primitive: what backward walks.</summary>
internal sealed class Node
{
    public Node(OpSpec op, Tensor[] inputs, Tensor output)
    {
        Op = op;
        Inputs = inputs;
        Output = output;
    }

    public OpSpec Op { get; }

    public Tensor[] Inputs { get; }

    public Tensor Output { get; }

    /// <summary>A second output, written by the same kernel (compiled graphs' fused sums only).</summary>
    public Tensor? Side { get; init; }

    /// <summary>Run in the launch of the product before it, as a stage of its chain tail (compiled graphs only, Fuse.Chain.cs).</summary>
    public bool InChain { get; init; }

    /// <summary>Set once Backward has released the graph (retainGraph: false).</summary>
    public bool Released { get; set; }
}
