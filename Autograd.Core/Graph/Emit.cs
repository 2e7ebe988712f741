// Pass 6, emit: turn each node into a pre-bound launch (operands resolved to planned buffers once),
// then append the optimizer's updates (Update.cs). Kernels are loaded by the first, warm-up replay,
// so that a captured replay never compiles.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using ILGPU;

namespace AutogradNet;

/// <summary>One pre-bound launch of a compiled step.</summary>
internal sealed record Instr(string Text, Action<KernelHost> Launch);

internal static class Emit
{
    public static List<Instr> Run(List<Node> nodes, MemoryPlan plan, Optimizer? optimizer, Tensor?[] grads)
    {
        var program = new List<Instr>();
        ArrayView<float> scratch = plan.Scratch?.View ?? default;
        foreach (var n in nodes)
        {
            if (n.Op.Kind == Prim.Reshape) continue;
            var xs = n.Inputs.Select(x => Operand(plan, x)).ToArray();
            var y = Operand(plan, n.Output);
            var side = n.Side != null ? Operand(plan, n.Side) : default;
            var op = n.Op;
            string text = $"{op} {string.Join(", ", n.Inputs.Select(i => Tensor.ShapeText(i.ShapeArray)))} -> {Tensor.ShapeText(n.Output.ShapeArray)}"
                + (n.Side != null ? $" and {Tensor.ShapeText(n.Side.ShapeArray)}" : "");
            if (op.Kind == Prim.MatMul)
            {
                // Which SGEMM kernel this product runs, so Describe and Profile show it.
                int[][] shapes = [n.Inputs[0].ShapeArray, n.Inputs[1].ShapeArray];
                text += $" [{MatMulKernels.Describe(n.Output.Device.Host, Executor.ProductRows(op, shapes), Executor.ProductCols(op, shapes),
                    Executor.ProductDepth(op, shapes), withSum: op.Payload is MatMulSumOp)}]";
            }
            program.Add(new Instr(text, h => Executor.Run(h, op, xs, y, scratch, side)));
        }
        program.AddRange(Update.Run(plan, optimizer, grads));
        return program;
    }

    internal static Operand Operand(MemoryPlan plan, Tensor t)
    {
        var home = plan.Home(t);
        return new Operand(home.View.SubView(0, t.NumElements), t.ShapeArray);
    }
}
