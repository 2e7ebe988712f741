// Shape ops and matrix products.
namespace AutogradNet;

public sealed partial class Tensor
{
    /// <summary>The same elements viewed with another shape (shares the buffer); one extent may be -1.</summary>
    /// <param name="shape">The new shape.</param>
    public Tensor Reshape(params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var s = (int[])shape.Clone();
        int infer = Array.IndexOf(s, -1);
        if (infer >= 0)
        {
            long known = 1;
            for (int i = 0; i < s.Length; i++) if (i != infer) known *= s[i];
            if (known == 0 || NumElements % known != 0 || Array.LastIndexOf(s, -1) != infer)
                throw new ShapeMismatchException(
                    $"Reshape: cannot infer the -1 in {ShapeText(shape)} for a tensor of shape {ShapeText(_shape)} ({NumElements} elements).");
            s[infer] = (int)(NumElements / known);
        }
        if (s.Length > MaxRank)
            throw new ShapeMismatchException($"Reshape: shape {ShapeText(s)} has rank {s.Length}; at most {MaxRank} is supported.");
        return Apply(new OpSpec(Prim.Reshape, Ints: s), this);
    }

    /// <summary>Broadcasts to a larger shape (PyTorch's expand, but the result is materialised).</summary>
    /// <param name="shape">The target shape.</param>
    public Tensor Expand(params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return Apply(new OpSpec(Prim.Expand, Ints: (int[])shape.Clone()), this);
    }

    /// <summary>The transpose of a 2-D tensor.</summary>
    public Tensor Transpose() => Apply(new OpSpec(Prim.Transpose), this);

    /// <summary>Matrix product of (M, K) and (K, N) tensors.</summary>
    /// <param name="other">The right operand, (K, N).</param>
    public Tensor MatMul(Tensor other) => MatMul(this, false, other, false);

    /// <summary>op(a) op(b), op = transpose where asked, without materialising a transpose.</summary>
    /// <param name="a">(M, K), or (K, M) when transposeA.</param>
    /// <param name="transposeA">Use a transposed.</param>
    /// <param name="b">(K, N), or (N, K) when transposeB.</param>
    /// <param name="transposeB">Use b transposed.</param>
    public static Tensor MatMul(Tensor a, bool transposeA, Tensor b, bool transposeB)
    {
        Tune.BeforeEager(a, transposeA, b, transposeB);
        return Apply(new OpSpec(Prim.MatMul, Flag1: transposeA, Flag2: transposeB), a, b);
    }
}
