// Pass 2, differentiate: walk the traced forward graph from the loss in reverse topological order
// and apply the same gradient table as eager Backward, still under the tracer, so every rule's ops
// are recorded as backward nodes. Accumulation is an Add node; un-broadcasting a Sum and Reshape.
namespace AutogradNet;

internal static class Differentiate
{
    /// <summary>Appends the backward graph; returns the symbolic gradient of each parameter (or null).</summary>
    public static Tensor?[] Run(Tensor loss, IReadOnlyList<Tensor> parameters, Tensor seed)
    {
        if (loss.NumElements != 1)
            throw new GraphTraceException(
                $"Graph.Compile: with an optimizer the function must return a scalar loss, got shape {Tensor.ShapeText(loss.ShapeArray)}. Reduce it with Sum() or Mean().");
        if (loss.GradFn == null)
            throw new GraphTraceException("Graph.Compile: the loss does not depend on any parameter that requires grad.");
        using var _ = Autograd.NoGrad();
        var order = Engine.TopologicalOrder(loss.GradFn);
        var pending = new Dictionary<Node, Tensor>(ReferenceEqualityComparer.Instance) { [loss.GradFn] = seed };
        var leafGrads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        for (int n = order.Count - 1; n >= 0; n--)
        {
            var node = order[n];
            if (!pending.Remove(node, out var g)) continue;
            var ctx = new GradContext(node, g);
            for (int i = 0; i < node.Inputs.Length; i++)
            {
                var input = node.Inputs[i];
                if (!input.RequiresGrad) continue;
                var gi = Gradients.InputGradient(node, ctx, i, "Graph.Compile");
                if (input.GradFn != null)
                    pending[input.GradFn] = pending.TryGetValue(input.GradFn, out var acc) ? acc + gi : gi;
                else
                    leafGrads[input] = leafGrads.TryGetValue(input, out var acc) ? acc + gi : gi;
            }
        }
        return parameters.Select(p => leafGrads.TryGetValue(p, out var g) ? g : null).ToArray();
    }
}
