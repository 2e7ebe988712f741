// The ops' vector forms (ElementwiseOps.Vector.cs) against their scalar forms, lane by lane and bit
// for bit, on random values and on the values where a careless vector form differs: ±0 (0 - x is not
// -x), NaN (compares are false), ±infinity, the clamp bounds themselves, denormals. The host loops and
// the host SGEMM's epilogue take the vector form wherever an op has one, and the scalar form is the
// kernels' arithmetic, so these bits are what keeps the loops equal to the kernels.
using System.Numerics;
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    private static readonly float[] Specials =
        [0f, -0f, 1f, -1f, 0.5f, -0.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity,
         float.Epsilon, -float.Epsilon, 1e-39f, float.MaxValue, -float.MaxValue, 2f, 3f, 1e20f, -1e-20f];

    // Specials, each paired with every special, then random normals; a whole number of vectors.
    private static (float[] A, float[] B) VectorCases()
    {
        var a = new List<float>();
        var b = new List<float>();
        foreach (var x in Specials)
            foreach (var y in Specials) { a.Add(x); b.Add(y); }
        a.AddRange(TestData.Normal(1000, 91).Select(v => v * 3));
        b.AddRange(TestData.Normal(1000, 92).Select(v => v * 3));
        int w = Vector<float>.Count;
        while (a.Count % w != 0) { a.Add(0.25f); b.Add(-4f); }
        return (a.ToArray(), b.ToArray());
    }

    private static void UnaryBitsMatch<TOp>(string name, TOp op, bool ownVector) where TOp : struct, IUnaryOp
    {
        VectorOp.Has(op).Should().Be(ownVector, $"{name} has a vector form of its own");
        BitsMatch(name, (va, _) => VectorOp.Apply(op, va), (x, _) => op.Apply(x), unary: true);
    }

    private static void BinaryBitsMatch<TOp>(string name, TOp op, bool ownVector) where TOp : struct, IBinaryOp
    {
        VectorOp.HasBinary(op).Should().Be(ownVector, $"{name} has a vector form of its own");
        BitsMatch(name, (va, vb) => VectorOp.Apply(op, va, vb), op.Apply, unary: false);
    }

    // Every lane of the vector form against the scalar form on the same values (a unary op ignores b).
    private static void BitsMatch(string name, Func<Vector<float>, Vector<float>, Vector<float>> vector,
        Func<float, float, float> scalar, bool unary)
    {
        var (a, b) = VectorCases();
        int w = Vector<float>.Count;
        for (int i = 0; i < a.Length; i += w)
        {
            var v = vector(new Vector<float>(a, i), new Vector<float>(b, i));
            for (int l = 0; l < w; l++)
            {
                float expected = scalar(a[i + l], b[i + l]);
                string args = unary ? $"{a[i + l]:R}" : $"{a[i + l]:R}, {b[i + l]:R}";
                BitConverter.SingleToInt32Bits(v[l]).Should().Be(BitConverter.SingleToInt32Bits(expected),
                    $"{name}({args}): vector {v[l]:R}, scalar {expected:R}");
            }
        }
    }

    [Fact]
    public void Vector_forms_give_the_scalar_bits()
    {
        var relu = new ClampOp(0f, float.PositiveInfinity);
        var band = new ClampOp(-0.5f, 0.5f);
        UnaryBitsMatch("identity", new IdentityOp(), true);
        UnaryBitsMatch("neg", new NegOp(), true);
        UnaryBitsMatch("relu", relu, true);
        UnaryBitsMatch("clamp(-0.5, 0.5)", band, true);
        foreach (float p in new[] { 0f, 1f, 2f, 3f, 7f, -1f, -2f })
            UnaryBitsMatch($"pow {p}", new PowOp(p), true);
        UnaryBitsMatch("pow 2.5 (lane by lane)", new PowOp(2.5f), true);
        UnaryBitsMatch("scale", new ScaleOp(1.3f), true);
        UnaryBitsMatch("add scalar", new AddScalarOp(-0.7f), true);
        UnaryBitsMatch("exp (none)", new ExpOp(), false);
        UnaryBitsMatch("scale then relu", new UnaryThen<ScaleOp, ClampOp>(new ScaleOp(-2f), relu), true);
        UnaryBitsMatch("exp then neg", new UnaryThen<ExpOp, NegOp>(new ExpOp(), new NegOp()), true);

        BinaryBitsMatch("add", new AddOp(), true);
        BinaryBitsMatch("mul", new MulOp(), true);
        BinaryBitsMatch("div", new DivOp(), true);
        BinaryBitsMatch("axpy", new AxpyOp(-3f), true);
        BinaryBitsMatch("relu grad", new ClampGradOp(0f, float.PositiveInfinity), true);
        BinaryBitsMatch("clamp grad", new ClampGradOp(-0.5f, 0.5f), true);
        BinaryBitsMatch("tanh grad", new TanhGradOp(), true);
        BinaryBitsMatch("sigmoid grad", new SigmoidGradOp(), true);
        foreach (float p in new[] { 2f, 3f, 0.5f, -1f })
            BinaryBitsMatch($"pow grad {p}", new PowGradOp(p), true);
        BinaryBitsMatch("first", new FirstOp(), true);
        BinaryBitsMatch("flipped relu grad (the mask epilogue)", new Flip<ClampGradOp>(new ClampGradOp(0f, float.PositiveInfinity)), true);
        BinaryBitsMatch("flipped div", new Flip<DivOp>(new DivOp()), true);
        BinaryBitsMatch("product then relu (the relu epilogue)", new BinaryThen<FirstOp, ClampOp>(new FirstOp(), relu), true);
        BinaryBitsMatch("bias then relu", new BinaryThen<AddOp, ClampOp>(new AddOp(), relu), true);
        BinaryBitsMatch("axpy then neg", new BinaryThen<AxpyOp, NegOp>(new AxpyOp(0.5f), new NegOp()), true);
        BinaryBitsMatch("sub then pow 2", new BinaryThen<AxpyOp, PowOp>(new AxpyOp(-1f), new PowOp(2f)), true);
    }
}
