// Eager execution: runs the kernel of one primitive on device buffers. The only place where
// primitives meet kernels, so the op structs of Autograd.Kernels appear here and nowhere else.
using AutogradNet.Kernels;

namespace AutogradNet;

internal static class Executor
{
    /// <summary>Writes op(x) into y (y already has the inferred shape).</summary>
    public static void Run(OpSpec op, Tensor[] x, Tensor y)
    {
        var h = y.Device.Host;
        switch (op.Kind)
        {
            case Prim.Neg: Map(h, x[0], y, new NegOp()); break;
            case Prim.Exp: Map(h, x[0], y, new ExpOp()); break;
            case Prim.Log: Map(h, x[0], y, new LogOp()); break;
            case Prim.Tanh: Map(h, x[0], y, new TanhOp()); break;
            case Prim.Sigmoid: Map(h, x[0], y, new SigmoidOp()); break;
            case Prim.Clamp: Map(h, x[0], y, new ClampOp(op.A, op.B)); break;
            case Prim.Pow: Map(h, x[0], y, new PowOp(op.A)); break;
            case Prim.Scale: Map(h, x[0], y, new ScaleOp(op.A)); break;
            case Prim.AddScalar: Map(h, x[0], y, new AddScalarOp(op.A)); break;
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
                    var s = y.ShapeArray;
                    int k = op.Flag1 ? x[0].ShapeArray[0] : x[0].ShapeArray[1];
                    long need = MatMulKernels.SplitKScratch(h, s[0], s[1], k);
                    using var scratch = need > 0 ? Tensor.Empty([(int)need], y.Device, "MatMul") : null;
                    MatMulKernels.MatMul(h, x[0].View, op.Flag1, x[1].View, op.Flag2, y.View, s[0], s[1], k,
                        scratch: scratch?.View ?? default);
                    break;
                }
            case Prim.Sum:
                {
                    var axes = op.Ints!;
                    if (axes.Length == x[0].Rank && x[0].NumElements > 0)
                    {
                        using var scratch = Tensor.Empty([Reduce.SumAllScratch(h)], y.Device, "Sum");
                        Reduce.SumAll(h, x[0].View, y.View, scratch.View);
                    }
                    else
                    {
                        Reduce.SumAxes(h, x[0].View, x[0].ShapeArray, axes, y.View);
                    }
                    break;
                }
            case Prim.Expand:
                Elementwise.MapBroadcast(h, x[0].View, x[0].ShapeArray, y.View, y.ShapeArray, new IdentityOp());
                break;
            case Prim.Transpose:
                Layout.Transpose(h, x[0].View, y.View, x[0].ShapeArray[0], x[0].ShapeArray[1]);
                break;
            default:
                throw new NotSupportedException($"Executor: no kernel for primitive {op.Kind}.");
        }
    }

    private static void Map<TOp>(KernelHost h, Tensor x, Tensor y, TOp op) where TOp : struct, IUnaryOp =>
        Elementwise.Map(h, x.View, y.View, op);

    private static void Zip<TOp>(KernelHost h, Tensor[] x, Tensor y, TOp op) where TOp : struct, IBinaryOp =>
        Elementwise.Zip(h, x[0].View, x[0].ShapeArray, x[1].View, x[1].ShapeArray, y.View, y.ShapeArray, op);
}
