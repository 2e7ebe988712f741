// The optimizer pass: the update of each parameter from its planned gradient buffer, appended after
// the backward. The optimizer binds the same kernels as its eager Step (fused SGD, momentum, Adam).
using AutogradNet.Optim;

namespace AutogradNet;

internal static class Update
{
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
