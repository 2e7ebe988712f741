// Running one primitive's kernel on device buffers. The only place where primitives meet kernels:
// eager ops call it with fresh buffers, the compiled graph with its planned buffers and scratch.
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet;

/// <summary>A device buffer and the shape it holds.</summary>
internal readonly record struct Operand(ArrayView<float> View, int[] Shape);

internal static class Executor
{
    /// <summary>Scratch elements the primitive needs beyond its output (0 for most).</summary>
    public static long ScratchElements(KernelHost h, OpSpec op, int[][] xShapes, int[] yShape) => op.Kind switch
    {
        Prim.MatMul when op.Payload is MatMulPairOp p => MatMulKernels.MatMulPairScratch(h,
            ProductRows(op, xShapes), ProductCols(op, xShapes), ProductDepth(op, xShapes),
            ProductRows(p.SecondOp, xShapes[p.FirstInputs..]), ProductCols(p.SecondOp, xShapes[p.FirstInputs..]), ProductDepth(p.SecondOp, xShapes[p.FirstInputs..])),
        // A row chain's launch sums its loss in partials, one a block; alone, its first stage's.
        Prim.MatMul when op.Payload is MatMulRowsOp r => Math.Max(r.Split.Blocks, ScratchElements(h, r.Stages[0].Op, xShapes, yShape)),
        Prim.MatMul when op.Payload is MatMulSumOp => MatMulKernels.MatMulSumScratch(h, ProductRows(op, xShapes), ProductCols(op, xShapes), ProductDepth(op, xShapes)),
        Prim.MatMul => MatMulKernels.SplitKScratch(h, yShape[0], yShape[1], ProductDepth(op, xShapes), op.Flag1, op.Flag2),
        Prim.Sum when op.Payload is SumMapOp || IsSumAll(op, xShapes[0]) => Reduce.SumAllScratch(h),
        Prim.Sum => Reduce.SumAxesScratch(h, xShapes[0], op.Ints!),
        _ => 0,
    };

    /// <summary>A product's M, N and K from its operands' shapes (its output may be a fused loss).</summary>
    public static int ProductRows(OpSpec op, int[][] xShapes) => op.Flag1 ? xShapes[0][1] : xShapes[0][0];

    /// <inheritdoc cref="ProductRows"/>
    public static int ProductCols(OpSpec op, int[][] xShapes) => op.Flag2 ? xShapes[1][0] : xShapes[1][1];

    /// <inheritdoc cref="ProductRows"/>
    public static int ProductDepth(OpSpec op, int[][] xShapes) => op.Flag1 ? xShapes[0][0] : xShapes[0][1];

    /// <summary>A product's (M, N, K) from the shapes of its two operands.</summary>
    public static (int M, int N, int K) ProductDims(OpSpec op, int[] a, int[] b)
    {
        int[][] shapes = [a, b];
        return (ProductRows(op, shapes), ProductCols(op, shapes), ProductDepth(op, shapes));
    }

    /// <summary>Whether a Sum runs as the sum of all elements (else on the axis kernels).</summary>
    public static bool IsSumAll(OpSpec op, int[] xShape) => op.Ints!.Length == xShape.Length && Tensor.Elements(xShape) > 0;

    /// <summary>Eager form: runs op(x) into y, with temporary scratch from the device's cache.</summary>
    public static void Run(OpSpec op, Tensor[] x, Tensor y)
    {
        var h = y.Device.Host;
        var xs = x.Select(t => new Operand(t.View, t.ShapeArray)).ToArray();
        long need = ScratchElements(h, op, x.Select(t => t.ShapeArray).ToArray(), y.ShapeArray);
        using var scratch = need > 0 ? Tensor.Empty([(int)need], y.Device, op.Kind.ToString()) : null;
        Run(h, op, xs, new Operand(y.View, y.ShapeArray), scratch?.View ?? default);
    }

    /// <summary>
    /// Writes op(x) into y (y has the inferred shape; scratch has ScratchElements elements), and into
    /// side the second output of a fused sum that has one.
    /// </summary>
    public static void Run(KernelHost h, OpSpec op, Operand[] x, Operand y, ArrayView<float> scratch, Operand side = default)
    {
        switch (op.Payload)
        {
            case MatMulEpilogue e: e.Run(h, x, y, scratch); return;
            case MatMulSumOp ms: ms.Run(h, x, y, side, scratch); return;
            case MatMulPairOp mp: mp.Launch(h, x, y, side, scratch); return;
            case MatMulChainOp or MatMulRowsOp:
                throw new InvalidOperationException("Executor: a chain's stages are other nodes' operands; the compiled program (Emit) launches it.");
            case SumMapOp s: s.Launch(h, x, y, side, scratch); return;
            case SumInto s: Reduce.SumAxes(h, x[0].View, x[0].Shape, op.Ints!, y.View, s.Alpha(), s.Beta, scratch); return;
        }
        switch (op.Kind)
        {
            case Prim.Neg: Map(h, x, y, new NegOp()); break;
            case Prim.Exp: Map(h, x, y, new ExpOp()); break;
            case Prim.Log: Map(h, x, y, new LogOp()); break;
            case Prim.Tanh: Map(h, x, y, new TanhOp()); break;
            case Prim.Sigmoid: Map(h, x, y, new SigmoidOp()); break;
            case Prim.Clamp: Map(h, x, y, new ClampOp(op.A, op.B)); break;
            case Prim.Pow: Map(h, x, y, new PowOp(op.A)); break;
            case Prim.Scale: Map(h, x, y, new ScaleOp(op.A)); break;
            case Prim.AddScalar: Map(h, x, y, new AddScalarOp(op.A)); break;
            case Prim.Add:
                if (op.A == 1f) Zip(h, x, y, new AddOp());
                else Zip(h, x, y, new AxpyOp(op.A));
                break;
            case Prim.Mul: Zip(h, x, y, new MulOp()); break;
            case Prim.Div: Zip(h, x, y, new DivOp()); break;
            case Prim.ClampGrad: Zip(h, x, y, new ClampGradOp(op.A, op.B)); break;
            case Prim.TanhGrad: Zip(h, x, y, new TanhGradOp()); break;
            case Prim.SigmoidGrad: Zip(h, x, y, new SigmoidGradOp()); break;
            case Prim.PowGrad: Zip(h, x, y, new PowGradOp(op.A)); break;
            case Prim.MatMul:
                {
                    int k = op.Flag1 ? x[0].Shape[0] : x[0].Shape[1];
                    MatMulKernels.MatMul(h, x[0].View, op.Flag1, x[1].View, op.Flag2, y.View, y.Shape[0], y.Shape[1], k,
                        scratch: scratch);
                    break;
                }
            case Prim.Sum:
                if (IsSumAll(op, x[0].Shape)) Reduce.SumAll(h, x[0].View, y.View, scratch);
                else Reduce.SumAxes(h, x[0].View, x[0].Shape, op.Ints!, y.View, scratch: scratch);
                break;
            case Prim.Expand:
                Elementwise.MapBroadcast(h, x[0].View, x[0].Shape, y.View, y.Shape, new IdentityOp());
                break;
            case Prim.Transpose:
                Layout.Transpose(h, x[0].View, y.View, x[0].Shape[0], x[0].Shape[1]);
                break;
            case Prim.Fused:
                ((FusedOp)op.Payload!).Launch(h, x, y);
                break;
            default:
                throw new NotSupportedException($"Executor: no kernel for primitive {op.Kind}.");
        }
    }

    /// <summary>Whether the primitive is elementwise (one output element from the same index of each input).</summary>
    public static bool IsElementwise(Prim p) => p is Prim.Neg or Prim.Exp or Prim.Log or Prim.Tanh or Prim.Sigmoid
        or Prim.Clamp or Prim.Pow or Prim.Scale or Prim.AddScalar or Prim.Add or Prim.Mul or Prim.Div
        or Prim.ClampGrad or Prim.TanhGrad or Prim.SigmoidGrad or Prim.PowGrad;

    private static void Map<TOp>(KernelHost h, Operand[] x, Operand y, TOp op) where TOp : struct, IUnaryOp =>
        Elementwise.Map(h, x[0].View, y.View, op);

    private static void Zip<TOp>(KernelHost h, Operand[] x, Operand y, TOp op) where TOp : struct, IBinaryOp =>
        Elementwise.Zip(h, x[0].View, x[0].Shape, x[1].View, x[1].Shape, y.View, y.Shape, op);
}
