// Elementwise math. Primitives go through Dispatch.Apply; composites (Sub, Relu, scalar forms)
// are written with primitives and need no kernel or gradient rule of their own.
namespace AutogradNet;

public sealed partial class Tensor
{
    internal static Tensor Apply(OpSpec op, params Tensor[] inputs) => Dispatch.Apply(op, inputs);

    /// <summary>this + other, with broadcasting.</summary>
    /// <param name="other">The other operand.</param>
    public Tensor Add(Tensor other) => Apply(new OpSpec(Prim.Add, 1f), this, other);

    /// <summary>this + alpha * other, with broadcasting (PyTorch's add(other, alpha=)).</summary>
    /// <param name="other">The other operand.</param>
    /// <param name="alpha">The factor on other.</param>
    public Tensor Add(Tensor other, float alpha) => Apply(new OpSpec(Prim.Add, alpha), this, other);

    /// <summary>this - other, with broadcasting.</summary>
    /// <param name="other">The other operand.</param>
    public Tensor Sub(Tensor other) => Add(other, -1f);

    /// <summary>this * other elementwise, with broadcasting.</summary>
    /// <param name="other">The other operand.</param>
    public Tensor Mul(Tensor other) => Apply(new OpSpec(Prim.Mul), this, other);

    /// <summary>this / other elementwise, with broadcasting.</summary>
    /// <param name="other">The other operand.</param>
    public Tensor Div(Tensor other) => Apply(new OpSpec(Prim.Div), this, other);

    /// <summary>this + s.</summary>
    /// <param name="s">The scalar.</param>
    public Tensor Add(float s) => Apply(new OpSpec(Prim.AddScalar, s), this);

    /// <summary>this - s.</summary>
    /// <param name="s">The scalar.</param>
    public Tensor Sub(float s) => Add(-s);

    /// <summary>this * s.</summary>
    /// <param name="s">The scalar.</param>
    public Tensor Mul(float s) => Apply(new OpSpec(Prim.Scale, s), this);

    /// <summary>this / s.</summary>
    /// <param name="s">The scalar.</param>
    public Tensor Div(float s) => Mul(1f / s);

    /// <summary>-this.</summary>
    public Tensor Neg() => Apply(new OpSpec(Prim.Neg), this);

    /// <summary>this ^ exponent elementwise (integral exponents accept negative bases).</summary>
    /// <param name="exponent">The exponent.</param>
    public Tensor Pow(float exponent) => Apply(new OpSpec(Prim.Pow, exponent), this);

    /// <summary>e ^ this.</summary>
    public Tensor Exp() => Apply(new OpSpec(Prim.Exp), this);

    /// <summary>Natural logarithm.</summary>
    public Tensor Log() => Apply(new OpSpec(Prim.Log), this);

    /// <summary>Hyperbolic tangent.</summary>
    public Tensor Tanh() => Apply(new OpSpec(Prim.Tanh), this);

    /// <summary>Logistic sigmoid 1 / (1 + e^-x).</summary>
    public Tensor Sigmoid() => Apply(new OpSpec(Prim.Sigmoid), this);

    /// <summary>Clamps to [min, max]; a null bound is open. Gradient flows where min &lt;= x &lt;= max.</summary>
    /// <param name="min">Lower bound, or null.</param>
    /// <param name="max">Upper bound, or null.</param>
    public Tensor Clamp(float? min = null, float? max = null)
    {
        if (min == null && max == null)
            throw new ArgumentException("Clamp: give at least one of min and max, e.g. Clamp(min: 0).");
        float lo = min ?? float.NegativeInfinity, hi = max ?? float.PositiveInfinity;
        if (lo > hi) throw new ArgumentException($"Clamp: min ({lo}) is greater than max ({hi}).");
        return Apply(new OpSpec(Prim.Clamp, lo, hi), this);
    }

    /// <summary>max(x, 0), i.e. Clamp(min: 0).</summary>
    public Tensor Relu() => Clamp(min: 0f);

    /// <summary>Elementwise sum with broadcasting.</summary>
    /// <param name="a">Left operand.</param>
    /// <param name="b">Right operand.</param>
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);

    /// <summary>Elementwise difference with broadcasting.</summary>
    /// <param name="a">Left operand.</param>
    /// <param name="b">Right operand.</param>
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);

    /// <summary>Elementwise product with broadcasting.</summary>
    /// <param name="a">Left operand.</param>
    /// <param name="b">Right operand.</param>
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);

    /// <summary>Elementwise quotient with broadcasting.</summary>
    /// <param name="a">Left operand.</param>
    /// <param name="b">Right operand.</param>
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);

    /// <summary>Negation.</summary>
    /// <param name="a">The operand.</param>
    public static Tensor operator -(Tensor a) => a.Neg();

    /// <summary>Tensor plus scalar.</summary>
    /// <param name="a">The tensor.</param>
    /// <param name="s">The scalar.</param>
    public static Tensor operator +(Tensor a, float s) => a.Add(s);

    /// <summary>Scalar plus tensor.</summary>
    /// <param name="s">The scalar.</param>
    /// <param name="a">The tensor.</param>
    public static Tensor operator +(float s, Tensor a) => a.Add(s);

    /// <summary>Tensor minus scalar.</summary>
    /// <param name="a">The tensor.</param>
    /// <param name="s">The scalar.</param>
    public static Tensor operator -(Tensor a, float s) => a.Sub(s);

    /// <summary>Scalar minus tensor.</summary>
    /// <param name="s">The scalar.</param>
    /// <param name="a">The tensor.</param>
    public static Tensor operator -(float s, Tensor a)
    {
        using var n = a.Neg();
        return n.Add(s);
    }

    /// <summary>Tensor times scalar.</summary>
    /// <param name="a">The tensor.</param>
    /// <param name="s">The scalar.</param>
    public static Tensor operator *(Tensor a, float s) => a.Mul(s);

    /// <summary>Scalar times tensor.</summary>
    /// <param name="s">The scalar.</param>
    /// <param name="a">The tensor.</param>
    public static Tensor operator *(float s, Tensor a) => a.Mul(s);

    /// <summary>Tensor divided by scalar.</summary>
    /// <param name="a">The tensor.</param>
    /// <param name="s">The scalar.</param>
    public static Tensor operator /(Tensor a, float s) => a.Div(s);

    /// <summary>Scalar divided by tensor.</summary>
    /// <param name="s">The scalar.</param>
    /// <param name="a">The tensor.</param>
    public static Tensor operator /(float s, Tensor a)
    {
        using var r = a.Pow(-1f);
        return r.Mul(s);
    }
}
