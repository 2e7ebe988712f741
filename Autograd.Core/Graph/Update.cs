// The optimizer pass. Fold: with plain SGD, a parameter's gradient that is a product, or a sum over
// some axes (a bias's batch sum), read by nothing else is never materialised: the product's epilogue
// or the sum's store updates the parameter in place (p = -lr * g + 1 * p), and the node moves to the
// end of the step, after every reader of p.
// Run: the update of every other parameter from its planned gradient buffer, appended after the
// backward; the optimizer binds the same kernels as its eager Step (fused SGD, momentum, Adam).
using AutogradNet.Kernels;
using AutogradNet.Optim;

namespace AutogradNet;

internal static class Update
{
    /// <summary>Fuses what it can of a plain SGD step into the gradients' products; clears those gradients.</summary>
    public static List<Node> Fold(List<Node> nodes, List<Tensor> outputs, Optimizer? optimizer, Tensor?[] grads)
    {
        if (optimizer is not { IsPlainStep: true } || !Fuse.Enabled) return nodes;
        var result = new List<Node>(nodes);
        var moved = new List<Node>();
        var updated = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < grads.Length; i++)
        {
            if (grads[i] is not { } g || ReferenceEquals(g, outputs[0])) continue;
            var producer = result.Find(n => ReferenceEquals(n.Output, g));
            // A bias's gradient is its batch sum reshaped to the bias's shape: look through the reshape.
            Node? reshape = null;
            if (producer is { Op.Kind: Prim.Reshape } r && result.Count(n => n.Inputs.Contains(r.Inputs[0])) == 1)
            {
                reshape = r;
                producer = result.Find(n => ReferenceEquals(n.Output, r.Inputs[0]));
            }
            bool product = producer is { Op.Kind: Prim.MatMul, Op.Payload: null } && reshape == null;
            // Only sums on the axis kernels, which take the update's alpha and beta.
            bool axisSum = producer is { Op.Kind: Prim.Sum, Op.Payload: null } && !Executor.IsSumAll(producer.Op, producer.Inputs[0].ShapeArray);
            if (!product && !axisSum) continue;
            if (result.Any(n => n.Inputs.Contains(g)) || producer!.Inputs.Any(updated.Contains)) continue;
            var p = optimizer.Parameters[i];
            string text = $"{producer.Op} -> SGD update of {Tensor.ShapeText(p.ShapeArray)}";
            object fused = product
                ? FusedKernels.MatMul(producer.Op, new FirstOp(), text, 0, 0, hasOperand: false, alpha: () => -optimizer.LearningRate, beta: 1f)
                : new SumInto(() => -optimizer.LearningRate, 1f, text);
            result.Remove(producer);
            if (reshape != null) result.Remove(reshape);
            moved.Add(new Node(producer.Op with { Payload = fused }, producer.Inputs, p));
            updated.Add(p);
            outputs.Remove(g);
            grads[i] = null;
        }
        result.AddRange(moved);
        return result;
    }

    public static IEnumerable<Instr> Run(MemoryPlan plan, Optimizer? optimizer, Tensor?[] grads)
    {
        if (optimizer == null) yield break;
        string name = optimizer.GetType().Name;
        yield return new Instr($"{name} begin step", optimizer.BeginStep);
        for (int i = 0; i < grads.Length; i++)
        {
            if (grads[i] is not { } g) continue;
            var gv = Emit.Operand(plan, g).View;
            int index = i;
            yield return new Instr($"{name} update {Tensor.ShapeText(g.ShapeArray)}", h => optimizer.Update(h, index, gv));
        }
    }
}
