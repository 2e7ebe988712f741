// Run-time kernel generation for fusion: an elementwise primitive maps to its op struct, and a chain
// of them composes into UnaryThen / BinaryThen types built with MakeGenericType. The launch for the
// composed type is bound once by reflection and replayed through a typed delegate.
using System.Reflection;
using AutogradNet.Kernels;

namespace AutogradNet;

/// <summary>A fused chain of elementwise ops: the composed op struct and its bound launch.</summary>
internal sealed record FusedOp(object Op, string Text, Action<KernelHost, Operand[], Operand> Launch)
{
    public Type OpType => Op.GetType();
}

internal static class ComposedOps
{
    public static bool CanLead(OpSpec op) => op.Kind == Prim.Fused || Executor.IsElementwise(op.Kind);

    public static bool CanFollow(OpSpec op) => op.Kind is Prim.Neg or Prim.Exp or Prim.Log or Prim.Tanh
        or Prim.Sigmoid or Prim.Clamp or Prim.Pow or Prim.Scale or Prim.AddScalar;

    /// <summary>The fused primitive doing first, then next (a unary op).</summary>
    public static OpSpec Compose(OpSpec first, OpSpec next)
    {
        object a = first.Kind == Prim.Fused ? ((FusedOp)first.Payload!).Op : Struct(first);
        object b = Struct(next);
        bool binary = a is IBinaryOp;
        var type = (binary ? typeof(BinaryThen<,>) : typeof(UnaryThen<,>)).MakeGenericType(a.GetType(), b.GetType());
        object composed = Activator.CreateInstance(type, a, b)!;
        string text = (first.Kind == Prim.Fused ? ((FusedOp)first.Payload!).Text : first.ToString()) + " -> " + next;
        return new OpSpec(Prim.Fused, Payload: new FusedOp(composed, text, Bind(composed, binary)));
    }

    /// <summary>The op struct of an elementwise primitive.</summary>
    public static object Struct(OpSpec op) => op.Kind switch
    {
        Prim.Neg => new NegOp(),
        Prim.Exp => new ExpOp(),
        Prim.Log => new LogOp(),
        Prim.Tanh => new TanhOp(),
        Prim.Sigmoid => new SigmoidOp(),
        Prim.Clamp => new ClampOp(op.A, op.B),
        Prim.Pow => new PowOp(op.A),
        Prim.Scale => new ScaleOp(op.A),
        Prim.AddScalar => new AddScalarOp(op.A),
        Prim.Add => op.A == 1f ? new AddOp() : new AxpyOp(op.A),
        Prim.Mul => new MulOp(),
        Prim.Div => new DivOp(),
        Prim.ClampGrad => new ClampGradOp(op.A, op.B),
        Prim.TanhGrad => new TanhGradOp(),
        Prim.SigmoidGrad => new SigmoidGradOp(),
        Prim.PowGrad => new PowGradOp(op.A),
        _ => throw new NotSupportedException($"Fuse: {op.Kind} is not elementwise."),
    };

    private static Action<KernelHost, Operand[], Operand> Bind(object op, bool binary)
    {
        var m = typeof(ComposedOps).GetMethod(binary ? nameof(BindZip) : nameof(BindMap), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(op.GetType());
        return (Action<KernelHost, Operand[], Operand>)m.Invoke(null, [op])!;
    }

    private static Action<KernelHost, Operand[], Operand> BindMap<TOp>(object op) where TOp : struct, IUnaryOp
    {
        var o = (TOp)op;
        return (h, x, y) => Elementwise.Map(h, x[0].View, y.View, o);
    }

    private static Action<KernelHost, Operand[], Operand> BindZip<TOp>(object op) where TOp : struct, IBinaryOp
    {
        var o = (TOp)op;
        return (h, x, y) => Elementwise.Zip(h, x[0].View, x[0].Shape, x[1].View, x[1].Shape, y.View, y.Shape, o);
    }
}
