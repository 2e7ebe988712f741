// Pass 6, emit: turn each node into a pre-bound launch (operands resolved to planned buffers once),
// then append the optimizer's updates (Update.cs). Kernels are loaded by the first, warm-up replay,
// so that a captured replay never compiles.
using AutogradNet.Kernels;
using AutogradNet.Optim;
using ILGPU;

namespace AutogradNet;

/// <summary>
/// One pre-bound launch of a compiled step. Into, where set, is the same launch writing its output
/// (the step's loss) to another buffer: Run(steps) has each step write its loss straight into the
/// history, instead of a copy launch per step.
/// </summary>
internal sealed record Instr(string Text, Action<KernelHost> Launch, Action<KernelHost, ArrayView<float>>? Into = null);

internal static class Emit
{
    public static List<Instr> Run(List<Node> nodes, MemoryPlan plan, Optimizer? optimizer, Tensor?[] grads, Tensor output)
    {
        var program = new List<Instr>();
        ArrayView<float> scratch = plan.Scratch?.View ?? default;
        // The loss may be written elsewhere when one launch writes it and no launch reads it.
        bool redirectable = output.NumElements == 1 && !nodes.Any(n => n.Inputs.Any(x => ReferenceEquals(x, output)) || ReferenceEquals(n.Side, output));
        foreach (var n in nodes)
        {
            // A chain's stages run in its head's launch.
            if (n.Op.Kind == Prim.Reshape || n.InChain) continue;
            if (n.Op.Payload is MatMulChainOp chain)
            {
                program.Add(Chain(plan, n, chain, scratch, redirectable ? output : null));
                continue;
            }
            if (n.Op.Payload is MatMulRowsOp rows)
            {
                program.Add(Rows(plan, rows, scratch, redirectable ? output : null));
                continue;
            }
            var xs = n.Inputs.Select(x => Operand(plan, x)).ToArray();
            var y = Operand(plan, n.Output);
            var side = n.Side != null ? Operand(plan, n.Side) : default;
            var op = n.Op;
            string text = op.Payload is MatMulPairOp pair ? PairText(n, pair) : Text(op, n.Inputs, n.Output, n.Side);
            Action<KernelHost, ArrayView<float>>? into = redirectable && ReferenceEquals(n.Output, output)
                ? (h, dst) => Executor.Run(h, op, xs, new Operand(dst, y.Shape), scratch, side)
                : null;
            program.Add(new Instr(text, h => Executor.Run(h, op, xs, y, scratch, side), into));
        }
        program.AddRange(Update.Run(plan, optimizer, grads));
        return program;
    }

    // A chain's launch: the head and its stages in one MatMulChain where the device allows when it runs
    // (its settings may have changed since the step was compiled), else each as its own launch. The
    // step's loss, when a stage writes it, can be written elsewhere (Into) as any launch's.
    private static Instr Chain(MemoryPlan plan, Node head, MatMulChainOp chain, ArrayView<float> scratch, Tensor? loss)
    {
        var xs = head.Inputs.Select(x => Operand(plan, x)).ToArray();
        var y = Operand(plan, head.Output);
        var stages = chain.Stages.Select(s => Bind(plan, s)).ToArray();
        var (m, n, k) = Dims(head.Op, head.Inputs);
        void Run(KernelHost h, StageOperands[] bound)
        {
            if (MatMulKernels.ChainInSameLaunch(h, m, n, k))
            {
                chain.Launch(h, xs, y, bound, scratch);
                return;
            }
            chain.Head.Run(h, xs, y, scratch);
            for (int i = 0; i < bound.Length; i++)
                Executor.Run(h, chain.Stages[i].Op, bound[i].X, bound[i].Y, scratch, bound[i].Side);
        }
        string text = $"Chain: {Text(head.Op with { Payload = chain.Head }, head.Inputs, head.Output, null)}, then in its last group "
            + string.Join(", then ", chain.Stages.Select(StageText));
        return new Instr(text, h => Run(h, stages), Redirect(chain.Stages, stages, loss, Run));
    }

    // A row chain's launch where the device allows it, split as compiled, when it runs (its settings
    // may have changed since), else each stage as its own launch; the loss redirected as a chain's.
    private static Instr Rows(MemoryPlan plan, MatMulRowsOp rows, ArrayView<float> scratch, Tensor? loss)
    {
        var stages = rows.Stages.Select(s => Bind(plan, s)).ToArray();
        void Run(KernelHost h, StageOperands[] bound)
        {
            if (MatMulKernels.RowChainSplit(h, rows.Split.M, rows.HeadColumns) == rows.Split)
            {
                rows.Launch(h, rows.Split, bound, scratch);
                return;
            }
            for (int i = 0; i < bound.Length; i++)
                Executor.Run(h, rows.Stages[i].Op, bound[i].X, bound[i].Y, scratch, bound[i].Side);
        }
        var split = rows.Split;
        string text = (split.Shares == 1 ? $"Rows, {split.Blocks} blocks of {split.RowsPer} rows a group: "
            : $"Rows, {split.Blocks} blocks of {split.RowsPer} rows, {split.Shares} groups a block sharing its first stage: ")
            + string.Join(", then ", rows.Stages.Select(StageText));
        return new Instr(text, h => Run(h, stages), Redirect(rows.Stages, stages, loss, Run));
    }

    private static StageOperands Bind(MemoryPlan plan, Node s) =>
        new(s.Inputs.Select(x => Operand(plan, x)).ToArray(), Operand(plan, s.Output), s.Side != null ? Operand(plan, s.Side) : default);

    private static string StageText(Node s) =>
        $"{s.Op} {string.Join(", ", s.Inputs.Select(i => Tensor.ShapeText(i.ShapeArray)))} -> {Tensor.ShapeText(s.Output.ShapeArray)}"
        + (s.Side != null ? $" and {Tensor.ShapeText(s.Side.ShapeArray)}" : "");

    // The launch with the stage that writes the step's loss writing it to dst instead (Into), or null.
    private static Action<KernelHost, ArrayView<float>>? Redirect(IReadOnlyList<Node> nodes, StageOperands[] stages, Tensor? loss,
        Action<KernelHost, StageOperands[]> run)
    {
        int writer = loss == null ? -1 : nodes.ToList().FindIndex(s => ReferenceEquals(s.Output, loss));
        if (writer < 0) return null;
        return (h, dst) =>
        {
            var bound = (StageOperands[])stages.Clone();
            bound[writer] = bound[writer] with { Y = new Operand(dst, bound[writer].Y.Shape) };
            run(h, bound);
        };
    }

    // "op input shapes -> output shape", and for a product the SGEMM kernel it runs, so Describe and
    // Profile show it.
    private static string Text(OpSpec op, Tensor[] inputs, Tensor output, Tensor? side)
    {
        string text = $"{op} {string.Join(", ", inputs.Select(i => Tensor.ShapeText(i.ShapeArray)))} -> {Tensor.ShapeText(output.ShapeArray)}"
            + (side != null ? $" and {Tensor.ShapeText(side.ShapeArray)}" : "");
        if (op.Kind != Prim.MatMul) return text;
        var (m, n, k) = Dims(op, inputs);
        return text + $" [{MatMulKernels.Describe(output.Device.Host, m, n, k, withSum: op.Payload is MatMulSumOp, transA: op.Flag1, transB: op.Flag2)}]";
    }

    private static (int M, int N, int K) Dims(OpSpec op, Tensor[] inputs) =>
        Executor.ProductDims(op, inputs[0].ShapeArray, inputs[1].ShapeArray);

    // Each half as a product of its own, then whether they share a launch.
    private static string PairText(Node n, MatMulPairOp pair)
    {
        OpSpec first = pair.FirstOp, second = pair.SecondOp;
        Tensor[] x1 = n.Inputs[..pair.FirstInputs], x2 = n.Inputs[pair.FirstInputs..];
        var (m1, n1, k1) = Dims(first, x1);
        var (m2, n2, k2) = Dims(second, x2);
        bool one = MatMulKernels.PairInOneLaunch(n.Output.Device.Host, m1, n1, k1, m2, n2, k2);
        return $"Paired: {Text(first, x1, n.Output, null)} + {Text(second, x2, n.Side!, null)}, {(one ? "in one launch" : "one after the other")}";
    }

    internal static Operand Operand(MemoryPlan plan, Tensor t)
    {
        var home = plan.Home(t);
        return new Operand(home.View.SubView(0, t.NumElements), t.ShapeArray);
    }
}
