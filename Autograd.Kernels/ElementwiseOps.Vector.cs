// The ops of ElementwiseOps.cs on SIMD vectors, for the host loops (KernelHost.HostLoops) and the
// host SGEMM's epilogue. Each vector form does, lane by lane, the float operations of the op's Apply
// in the same order (a compare and a bitwise select for a ternary; a sign flip for a negation), so
// its bits are the scalar form's, and so the kernels' (asserted lane by lane on special values:
// Vector_forms_give_the_scalar_bits). An op without one (exp, log, tanh, sigmoid, a non-integral
// pow) runs per lane. Loops over a few floats a cycle would otherwise be: a zero_() of 100K floats
// took 17 µs, an SGD update of them 30.
using System.Numerics;
using System.Runtime.CompilerServices;

namespace AutogradNet.Kernels;

/// <summary>A unary op that also applies to a whole Vector&lt;float&gt; with its scalar form's bits.</summary>
internal interface IVectorUnaryOp
{
    /// <summary>Apply on every lane.</summary>
    Vector<float> Apply(Vector<float> x);
}

/// <summary>A binary op that also applies to whole Vector&lt;float&gt;s with its scalar form's bits.</summary>
internal interface IVectorBinaryOp
{
    /// <summary>Apply on every pair of lanes.</summary>
    Vector<float> Apply(Vector<float> a, Vector<float> b);
}

/// <summary>Vector forms of any op: the op's own where it has one, else lane by lane.</summary>
internal static unsafe class VectorOp
{
    /// <summary>Whether TOp has a vector form of its own (the loops then go by vectors).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Has<TOp>(TOp op) where TOp : struct, IUnaryOp => op is IVectorUnaryOp;

    /// <summary>Whether TOp has a vector form of its own.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool HasBinary<TOp>(TOp op) where TOp : struct, IBinaryOp => op is IVectorBinaryOp;

    /// <summary>op on every lane of x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Apply<TOp>(TOp op, Vector<float> x) where TOp : struct, IUnaryOp
    {
        if (op is IVectorUnaryOp) return ((IVectorUnaryOp)op).Apply(x);
        Vector<float> r = default;
        float* xs = (float*)&x, rs = (float*)&r;
        for (int l = 0; l < Vector<float>.Count; l++) rs[l] = op.Apply(xs[l]);
        return r;
    }

    /// <summary>op on every pair of lanes of a and b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Apply<TOp>(TOp op, Vector<float> a, Vector<float> b) where TOp : struct, IBinaryOp
    {
        if (op is IVectorBinaryOp) return ((IVectorBinaryOp)op).Apply(a, b);
        Vector<float> r = default;
        float* xa = (float*)&a, xb = (float*)&b, rs = (float*)&r;
        for (int l = 0; l < Vector<float>.Count; l++) rs[l] = op.Apply(xa[l], xb[l]);
        return r;
    }

    /// <summary>-x as the scalar negation does it: the sign bit flipped (0 - x would make +0 of +0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Negate(Vector<float> x) =>
        Vector.AsVectorSingle(Vector.AsVectorUInt32(x) ^ new Vector<uint>(0x8000_0000u));
}

public readonly partial struct IdentityOp : IVectorUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x) => x;
}

public readonly partial struct NegOp : IVectorUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x) => VectorOp.Negate(x);
}

public readonly partial record struct ClampOp : IVectorUnaryOp
{
    // x < Min ? Min : (x > Max ? Max : x)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x)
    {
        var min = new Vector<float>(Min);
        var max = new Vector<float>(Max);
        return Vector.ConditionalSelect(Vector.LessThan(x, min), min, Vector.ConditionalSelect(Vector.GreaterThan(x, max), max, x));
    }
}

public readonly partial struct PowOp : IVectorUnaryOp
{
    // The same multiplications as Apply, on every lane; a non-integral exponent goes lane by lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x)
    {
        if (IsInt == 0) return VectorOp.Apply(new PowOp.Lanes(this), x);
        int n = N < 0 ? -N : N;
        Vector<float> r = Vector<float>.One, b = x;
        while (n > 0)
        {
            if ((n & 1) != 0) r *= b;
            b *= b;
            n >>= 1;
        }
        return N < 0 ? Vector<float>.One / r : r;
    }

    // The scalar form alone, so that VectorOp.Apply takes it lane by lane.
    private readonly struct Lanes(PowOp op) : IUnaryOp
    {
        public float Apply(float x) => op.Apply(x);
    }
}

public readonly partial record struct ScaleOp : IVectorUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x) => x * S;
}

public readonly partial record struct AddScalarOp : IVectorUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x) => x + new Vector<float>(S);
}

public readonly partial struct AddOp : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => a + b;
}

public readonly partial struct MulOp : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => a * b;
}

public readonly partial struct DivOp : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => a / b;
}

public readonly partial record struct AxpyOp : IVectorBinaryOp
{
    // a + Alpha * b: the product rounded, then the sum (the JIT fuses neither form).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => a + b * Alpha;
}

public readonly partial record struct ClampGradOp : IVectorBinaryOp
{
    // a > Min && a < Max ? b : 0
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) =>
        Vector.ConditionalSelect(Vector.GreaterThan(a, new Vector<float>(Min)) & Vector.LessThan(a, new Vector<float>(Max)), b, Vector<float>.Zero);
}

public readonly partial struct TanhGradOp : IVectorBinaryOp
{
    // b * (1 - a * a)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => b * (Vector<float>.One - a * a);
}

public readonly partial struct SigmoidGradOp : IVectorBinaryOp
{
    // b * a * (1 - a), left to right
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => b * a * (Vector<float>.One - a);
}

public readonly partial struct PowGradOp : IVectorBinaryOp
{
    // b * P * a^(P - 1), left to right
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => b * P * VectorOp.Apply(Pm1, a);
}

public readonly partial struct FirstOp : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => a;
}

public readonly partial record struct Flip<T> : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => VectorOp.Apply(Op, b, a);
}

public readonly partial struct UnaryThen<T1, T2> : IVectorUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorUnaryOp.Apply(Vector<float> x) => VectorOp.Apply(Next, VectorOp.Apply(First, x));
}

public readonly partial struct BinaryThen<TB, TU> : IVectorBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    Vector<float> IVectorBinaryOp.Apply(Vector<float> a, Vector<float> b) => VectorOp.Apply(Next, VectorOp.Apply(First, a, b));
}
