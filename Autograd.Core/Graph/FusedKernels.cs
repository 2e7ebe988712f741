// Run-time kernel generation for the two fusions beyond elementwise chains: an elementwise op in a
// matmul's epilogue, and a reduction that maps its input, scales its sum and writes a sibling
// elementwise result in the same pass. As in ComposedOps, the op struct is composed with MakeGenericType, the launch is
// bound once by reflection, and replays go through the bound delegate.
using System.Reflection;
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet;

/// <summary>Launch of a fused matmul: inputs (a, b[, operand]), output, alpha, beta, scratch.</summary>
internal delegate void MatMulLaunch(KernelHost h, Operand[] x, Operand y, float alpha, float beta, ArrayView<float> scratch);

/// <summary>
/// A MatMul node's epilogue: y = Op(alpha * op(A) op(B) + beta * y, E) with E the node's third input
/// (when it has one) read through (RowStride, ColStride). Alpha comes from a function so that a fused
/// SGD update reads the learning rate when it launches.
/// </summary>
internal sealed record MatMulEpilogue(object Op, string Text, int RowStride, int ColStride, bool HasOperand,
    Func<float> Alpha, float Beta, MatMulLaunch Launch)
{
    public Type OpType => Op.GetType();

    public void Run(KernelHost h, Operand[] x, Operand y, ArrayView<float> scratch) => Launch(h, x, y, Alpha(), Beta, scratch);
}

/// <summary>
/// A fused sum over all elements: y = Scale * sum of Map(u), and, when Side is set, side = Side(u, s)
/// with s the node's second input (broadcast when it has one element).
/// </summary>
internal sealed record SumMapOp(object Map, object? Side, float Scale, string? MapText, string? SideText,
    Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>> Launch)
{
    public string Text => (MapText != null ? MapText + " -> " : "") + "Sum" + (Scale != 1f ? $" -> Scale({Scale})" : "")
        + (SideText != null ? $", with {SideText}" : "");
}

/// <summary>
/// Two independent products in one node (MatMulKernels.MatMulPair): inputs are the first's
/// (FirstInputs of them) then the second's; the first writes the node's output, the second its side.
/// FirstOp and SecondOp are the halves as they were before pairing.
/// </summary>
internal sealed record MatMulPairOp(MatMulEpilogue First, MatMulEpilogue Second, OpSpec FirstOp, OpSpec SecondOp, int FirstInputs,
    Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>> Launch)
{
    public string Text => $"{First.Text} | {Second.Text}";
}

/// <summary>Launch of a product with a sum tail: inputs (a, b[, operand][, s]), the loss, the product's buffer, scratch.</summary>
internal delegate void MatMulSumLaunch(KernelHost h, Operand[] x, Operand loss, Operand c, float alpha, float beta, ArrayView<float> scratch);

/// <summary>
/// A product whose sum over all elements is taken in its launch (MatMulKernels.MatMulSum): the
/// product through Epilogue into the node's side buffer, then loss = Sum's scale * the sum of Sum's
/// map, and the buffer rewritten by Sum's side op when it has one.
/// </summary>
internal sealed record MatMulSumOp(MatMulEpilogue Epilogue, SumMapOp Sum, MatMulSumLaunch Launch)
{
    public string Text => Epilogue.Text + " -> " + Sum.Text;

    public void Run(KernelHost h, Operand[] x, Operand loss, Operand c, ArrayView<float> scratch) =>
        Launch(h, x, loss, c, Epilogue.Alpha(), Epilogue.Beta, scratch);
}

/// <summary>
/// A sum over some axes written into a parameter: p = Alpha * sums + Beta * p (a bias's SGD update
/// from its gradient's batch sum, in the sum's launch).
/// </summary>
internal sealed record SumInto(Func<float> Alpha, float Beta, string Text);

internal static class FusedKernels
{
    /// <summary>A matmul whose epilogue is op (an IBinaryOp struct) with the operand at the given strides.</summary>
    public static MatMulEpilogue MatMul(OpSpec mm, object op, string text, int rowStride, int colStride, bool hasOperand,
        Func<float>? alpha = null, float beta = 0f)
    {
        var m = typeof(FusedKernels).GetMethod(nameof(BindMatMul), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(op.GetType());
        var launch = (MatMulLaunch)m.Invoke(null, [op, mm.Flag1, mm.Flag2, rowStride, colStride, hasOperand])!;
        return new MatMulEpilogue(op, text, rowStride, colStride, hasOperand, alpha ?? (static () => 1f), beta, launch);
    }

    /// <summary>The epilogue followed by a unary op (an IUnaryOp struct).</summary>
    public static MatMulEpilogue Then(OpSpec mm, MatMulEpilogue e, object unary, string text)
    {
        var type = typeof(BinaryThen<,>).MakeGenericType(e.OpType, unary.GetType());
        var op = Activator.CreateInstance(type, e.Op, unary)!;
        return MatMul(mm, op, text, e.RowStride, e.ColStride, e.HasOperand, e.Alpha, e.Beta);
    }

    /// <summary>The binary op with its operands swapped.</summary>
    public static object Flip(object binary) =>
        Activator.CreateInstance(typeof(Flip<>).MakeGenericType(binary.GetType()), binary)!;

    private static MatMulLaunch BindMatMul<TEpi>(object op, bool ta, bool tb, int rs, int cs, bool hasOperand)
        where TEpi : struct, IBinaryOp
    {
        var epi = (TEpi)op;
        return (h, x, y, alpha, beta, scratch) =>
        {
            int k = ta ? x[0].Shape[0] : x[0].Shape[1];
            var e = hasOperand ? x[2].View : y.View;
            MatMulKernels.MatMul(h, x[0].View, ta, x[1].View, tb, y.View, y.Shape[0], y.Shape[1], k,
                alpha, beta, scratch, epi, e, hasOperand ? rs : 0, hasOperand ? cs : 0);
        };
    }

    /// <summary>Two products with their epilogues, in one MatMulPair.</summary>
    public static MatMulPairOp MatMulPair(OpSpec mm1, MatMulEpilogue e1, OpSpec mm2, MatMulEpilogue e2, int firstInputs)
    {
        var m = typeof(FusedKernels).GetMethod(nameof(BindMatMulPair), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(e1.OpType, e2.OpType);
        var launch = (Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>>)m.Invoke(null, [mm1, e1, mm2, e2, firstInputs])!;
        return new MatMulPairOp(e1, e2, mm1, mm2, firstInputs, launch);
    }

    private static Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>> BindMatMulPair<TEpi1, TEpi2>(
        OpSpec mm1, MatMulEpilogue e1, OpSpec mm2, MatMulEpilogue e2, int firstInputs)
        where TEpi1 : struct, IBinaryOp
        where TEpi2 : struct, IBinaryOp
    {
        var epi1 = (TEpi1)e1.Op;
        var epi2 = (TEpi2)e2.Op;
        // One half's call from its inputs (a, b[, operand]) at `at` and its output.
        static GemmCall Call(OpSpec mm, MatMulEpilogue e, Operand[] x, int at, Operand c) => new(
            x[at].View, mm.Flag1, x[at + 1].View, mm.Flag2, c.View, c.Shape[0], c.Shape[1],
            mm.Flag1 ? x[at].Shape[0] : x[at].Shape[1], e.Alpha(), e.Beta,
            e.HasOperand ? x[at + 2].View : c.View, e.HasOperand ? e.RowStride : 0, e.HasOperand ? e.ColStride : 0);
        return (h, x, y, side, scratch) =>
            MatMulKernels.MatMulPair(h, Call(mm1, e1, x, 0, y), epi1, Call(mm2, e2, x, firstInputs, side), epi2, scratch);
    }

    /// <summary>The product with epilogue e, summed as the fused sum describes, in one MatMulSum.</summary>
    public static MatMulSumOp MatMulSum(OpSpec mm, MatMulEpilogue e, SumMapOp sum)
    {
        var m = typeof(FusedKernels).GetMethod(nameof(BindMatMulSum), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(e.OpType, sum.Map.GetType(), (sum.Side ?? new FirstOp()).GetType());
        var launch = (MatMulSumLaunch)m.Invoke(null, [e.Op, mm.Flag1, mm.Flag2, e.RowStride, e.ColStride, e.HasOperand, sum])!;
        return new MatMulSumOp(e, sum, launch);
    }

    private static MatMulSumLaunch BindMatMulSum<TEpi, TMap, TSide>(object op, bool ta, bool tb, int rs, int cs, bool hasOperand, SumMapOp sum)
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var epi = (TEpi)op;
        return (h, x, loss, c, alpha, beta, scratch) =>
        {
            int k = ta ? x[0].Shape[0] : x[0].Shape[1];
            var e = hasOperand ? x[2].View : c.View;
            var tail = Tail<TMap, TSide>(sum, loss, x);
            MatMulKernels.MatMulSum(h, x[0].View, ta, x[1].View, tb, c.View, c.Shape[0], c.Shape[1], k,
                alpha, beta, scratch, epi, e, hasOperand ? rs : 0, hasOperand ? cs : 0, tail);
        };
    }

    /// <summary>
    /// A product's fused sum as the tail that takes it: into the loss, with the side op's operand the
    /// node's last input (one element broadcasts). MatMulSum's launch and a chain's stage bind it alike.
    /// </summary>
    internal static SumTail<TMap, TSide> Tail<TMap, TSide>(SumMapOp sum, Operand loss, Operand[] x)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp =>
        sum.Side is { } side
            ? new SumTail<TMap, TSide>(loss.View, (TMap)sum.Map, sum.Scale, (TSide)side, x[^1].View, x[^1].View.Length == 1 ? 0 : 1)
            : new SumTail<TMap, TSide>(loss.View, (TMap)sum.Map, sum.Scale);

    /// <summary>scale * the sum of map(u) over all elements, with an optional sibling side(u, s) written alongside.</summary>
    /// <param name="map">The unary op struct summed (IdentityOp for a plain sum).</param>
    /// <param name="side">The sibling's binary op struct, or null.</param>
    /// <param name="mapText">The map's primitive, for Describe (null for none).</param>
    /// <param name="sideText">The sibling's primitive, for Describe (null for none).</param>
    /// <param name="scale">Multiplies the sum.</param>
    public static SumMapOp SumMap(object map, object? side, string? mapText, string? sideText, float scale = 1f)
    {
        var m = typeof(FusedKernels).GetMethod(nameof(BindSumMap), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(map.GetType(), (side ?? new FirstOp()).GetType());
        var launch = (Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>>)m.Invoke(null, [map, side, scale])!;
        return new SumMapOp(map, side, scale, mapText, sideText, launch);
    }

    private static Action<KernelHost, Operand[], Operand, Operand, ArrayView<float>> BindSumMap<TMap, TSide>(object map, object? side, float scale)
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        var mapOp = (TMap)map;
        var sideOp = side is null ? default : (TSide)side;
        bool hasSide = side != null;
        return (h, x, y, s, scratch) =>
        {
            if (!hasSide)
            {
                Reduce.SumAllMap(h, x[0].View, y.View, scratch, mapOp, scale);
                return;
            }
            int stride = x[1].View.Length == 1 ? 0 : 1;
            Reduce.SumAllMap(h, x[0].View, y.View, scratch, mapOp, s.View, x[1].View, stride, sideOp, scale);
        };
    }
}
