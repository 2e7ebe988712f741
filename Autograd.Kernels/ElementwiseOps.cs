// Elementwise ops as readonly structs. The kernels in Elementwise.cs are generic over them, so each
// op gets its own fully inlined kernel (ILGPU's GenericKernel pattern) and a fused chain is just a
// composed struct. Ops carrying data (a scale, clamp bounds) travel as a kernel argument.
// The *Grad ops are the backward halves: (saved value, dOut) -> dIn, written beside their forward.
using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace AutogradNet.Kernels;

/// <summary>A float -> float function applied elementwise on the device.</summary>
public interface IUnaryOp
{
    /// <summary>Applies the op to one element.</summary>
    /// <param name="x">The input element.</param>
    float Apply(float x);
}

/// <summary>A (float, float) -> float function applied elementwise on the device.</summary>
public interface IBinaryOp
{
    /// <summary>Applies the op to one pair of elements.</summary>
    /// <param name="a">The element of the first operand.</param>
    /// <param name="b">The element of the second operand.</param>
    float Apply(float a, float b);
}

/// <summary>y = x (used for broadcasting copies).</summary>
public readonly partial struct IdentityOp : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => x;
}

/// <summary>y = -x.</summary>
public readonly partial struct NegOp : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => -x;
}

/// <summary>y = exp(x).</summary>
public readonly struct ExpOp : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => XMath.Exp(x);
}

/// <summary>y = ln(x).</summary>
public readonly struct LogOp : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => XMath.Log(x);
}

/// <summary>y = tanh(x), from exp so that PTX does not use tanh.approx (relative error 2^-11).</summary>
public readonly struct TanhOp : IUnaryOp
{
    /// <inheritdoc/>
    // Inlined into the host loops, which are optimised from their first call: a call from them
    // to a method with a loop would run it unoptimised until the JIT tiers it up.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Apply(float x)
    {
        float ax = x < 0 ? -x : x;
        // Near 0, (1 - t) / (1 + t) cancels; the odd series to x^9 is exact in float below 1/8.
        if (ax < 0.125f)
        {
            float x2 = x * x;
            return x * (1f + x2 * (-1f / 3f + x2 * (2f / 15f + x2 * (-17f / 315f + x2 * (62f / 2835f)))));
        }
        float t = XMath.Exp(-2f * ax);
        float r = (1f - t) / (1f + t);
        return x < 0 ? -r : r;
    }
}

/// <summary>y = 1 / (1 + exp(-x)).</summary>
public readonly struct SigmoidOp : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => 1f / (1f + XMath.Exp(-x));
}

/// <summary>y = min(max(x, Min), Max); Relu is Clamp(0, +inf).</summary>
/// <param name="Min">Lower bound (may be -inf).</param>
/// <param name="Max">Upper bound (may be +inf).</param>
public readonly partial record struct ClampOp(float Min, float Max) : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => x < Min ? Min : (x > Max ? Max : x);
}

/// <summary>y = x^P. Integral exponents use repeated multiplication so negative bases work.</summary>
public readonly partial struct PowOp : IUnaryOp
{
    /// <summary>Creates x^p.</summary>
    /// <param name="p">The exponent.</param>
    public PowOp(float p)
    {
        P = p;
        IsInt = p == MathF.Round(p) && Math.Abs(p) <= 64 ? 1 : 0;
        N = IsInt == 1 ? (int)p : 0;
    }

    /// <summary>The exponent.</summary>
    public float P { get; }

    /// <summary>1 when P is an integer of magnitude at most 64.</summary>
    public int IsInt { get; }

    /// <summary>P as an integer when IsInt is 1.</summary>
    public int N { get; }

    /// <inheritdoc/>
    // Inlined into the host loops, like TanhOp.Apply: the seed's loss ran it unoptimised at first (20 µs a step).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Apply(float x)
    {
        if (IsInt == 0) return AnyPow(x, P);
        int n = N < 0 ? -N : N;
        float r = 1f, b = x;
        while (n > 0)
        {
            if ((n & 1) != 0) r *= b;
            b *= b;
            n >>= 1;
        }
        return N < 0 ? 1f / r : r;
    }

    // A call, not inlined: a device kernel inlines Apply at every element it stores (64 a thread in
    // the 128x128-tile SGEMMs' epilogues), and ILGPU's software pow inlined with it made those kernels'
    // PTX 5x the size for an exponent the seed's loss (2) never takes. ILGPU keeps a NoInlining method
    // a function of its own (Inliner.SetupInliningAttributes).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float AnyPow(float x, float p) => XMath.Pow(x, p);
}

/// <summary>y = x * S.</summary>
/// <param name="S">The scale.</param>
public readonly partial record struct ScaleOp(float S) : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => x * S;
}

/// <summary>y = x + S.</summary>
/// <param name="S">The added constant.</param>
public readonly partial record struct AddScalarOp(float S) : IUnaryOp
{
    /// <inheritdoc/>
    public float Apply(float x) => x + S;
}

/// <summary>c = a + b.</summary>
public readonly partial struct AddOp : IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => a + b;
}

/// <summary>c = a * b.</summary>
public readonly partial struct MulOp : IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => a * b;
}

/// <summary>c = a / b.</summary>
public readonly partial struct DivOp : IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => a / b;
}

/// <summary>c = a + Alpha * b (the in-place update of SGD and of gradient accumulation).</summary>
/// <param name="Alpha">The factor on b.</param>
public readonly partial record struct AxpyOp(float Alpha) : IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => a + Alpha * b;
}

/// <summary>
/// Backward of Clamp from its output: dX = dOut where Min &lt; y &lt; Max, else 0. Read on the output,
/// the mask is exact (Min &lt; clamp(x) &lt; Max exactly when Min &lt; x &lt; Max), so a fused forward need
/// not keep x. Like PyTorch's relu (which tests the result), not its clamp (which tests x inclusively):
/// the two differ only where x equals a bound exactly.
/// </summary>
/// <param name="Min">Lower bound of the forward clamp.</param>
/// <param name="Max">Upper bound of the forward clamp.</param>
public readonly partial record struct ClampGradOp(float Min, float Max) : IBinaryOp
{
    /// <summary>a = y (the clamp's output), b = dOut.</summary>
    /// <param name="a">The forward output y.</param>
    /// <param name="b">The incoming gradient dOut.</param>
    public float Apply(float a, float b) => a > Min && a < Max ? b : 0f;
}

/// <summary>Backward of Tanh from its output: dX = dOut * (1 - y^2).</summary>
public readonly partial struct TanhGradOp : IBinaryOp
{
    /// <summary>a = y (the tanh's output), b = dOut.</summary>
    /// <param name="a">The forward output y.</param>
    /// <param name="b">The incoming gradient dOut.</param>
    public float Apply(float a, float b) => b * (1f - a * a);
}

/// <summary>Backward of Sigmoid from its output: dX = dOut * y * (1 - y).</summary>
public readonly partial struct SigmoidGradOp : IBinaryOp
{
    /// <summary>a = y (the sigmoid's output), b = dOut.</summary>
    /// <param name="a">The forward output y.</param>
    /// <param name="b">The incoming gradient dOut.</param>
    public float Apply(float a, float b) => b * a * (1f - a);
}

/// <summary>Backward of Pow(p): dX = dOut * p * x^(p-1).</summary>
public readonly partial struct PowGradOp : IBinaryOp
{
    /// <summary>The backward of x^p.</summary>
    /// <param name="p">The forward exponent.</param>
    public PowGradOp(float p)
    {
        P = p;
        Pm1 = new PowOp(p - 1f);
    }

    /// <summary>The forward exponent.</summary>
    public float P { get; }

    /// <summary>x^(p-1).</summary>
    public PowOp Pm1 { get; }

    /// <summary>a = x (the pow's input), b = dOut.</summary>
    /// <param name="a">The forward input x.</param>
    /// <param name="b">The incoming gradient dOut.</param>
    public float Apply(float a, float b) => b * P * Pm1.Apply(a);
}

/// <summary>c = a: the binary op that ignores its second operand (a matmul epilogue without one).</summary>
public readonly partial struct FirstOp : IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => a;
}

/// <summary>c = Op(b, a): a binary op with its operands swapped.</summary>
/// <typeparam name="T">The op.</typeparam>
/// <param name="Op">The op.</param>
public readonly partial record struct Flip<T>(T Op) : IBinaryOp where T : struct, IBinaryOp
{
    /// <inheritdoc/>
    public float Apply(float a, float b) => Op.Apply(b, a);
}

/// <summary>y = Next(First(x)): two unary ops as one (a fused kernel is Map over this).</summary>
/// <typeparam name="T1">The op applied first.</typeparam>
/// <typeparam name="T2">The op applied to its result.</typeparam>
public readonly partial struct UnaryThen<T1, T2> : IUnaryOp
    where T1 : struct, IUnaryOp
    where T2 : struct, IUnaryOp
{
    /// <summary>Composes two ops.</summary>
    /// <param name="first">Applied first.</param>
    /// <param name="next">Applied to the result.</param>
    public UnaryThen(T1 first, T2 next) { First = first; Next = next; }

    /// <summary>Applied first.</summary>
    public T1 First { get; }

    /// <summary>Applied to the result.</summary>
    public T2 Next { get; }

    /// <inheritdoc/>
    public float Apply(float x) => Next.Apply(First.Apply(x));
}

/// <summary>c = Next(First(a, b)): a binary op followed by a unary one (a fused kernel is Zip over this).</summary>
/// <typeparam name="TB">The binary op.</typeparam>
/// <typeparam name="TU">The unary op applied to its result.</typeparam>
public readonly partial struct BinaryThen<TB, TU> : IBinaryOp
    where TB : struct, IBinaryOp
    where TU : struct, IUnaryOp
{
    /// <summary>Composes the ops.</summary>
    /// <param name="first">The binary op.</param>
    /// <param name="next">Applied to its result.</param>
    public BinaryThen(TB first, TU next) { First = first; Next = next; }

    /// <summary>The binary op.</summary>
    public TB First { get; }

    /// <summary>Applied to its result.</summary>
    public TU Next { get; }

    /// <inheritdoc/>
    public float Apply(float a, float b) => Next.Apply(First.Apply(a, b));
}
