// Backward: walk the recorded nodes from the root in reverse topological order, apply each node's
// rules from the gradient table, un-broadcast each result to its input's shape, and accumulate it
// (+=) into the pending gradient of the input's node or into a leaf's Grad. Then, unless asked to
// retain the graph, release every intermediate's buffer, as PyTorch frees saved tensors, so a
// training loop that never calls Dispose keeps its device memory flat.
namespace AutogradNet;

internal static class Engine
{
    private const string ReleasedReason =
        "it was an intermediate of a graph that Backward() released (pass retainGraph: true to keep the graph)";

    public static void Backward(Tensor root, Tensor? gradient, bool retainGraph)
    {
        lock (root.Device.Sync) BackwardLocked(root, gradient, retainGraph);
    }

    private static void BackwardLocked(Tensor root, Tensor? gradient, bool retainGraph)
    {
        root.Live("Backward on");
        if (!root.RequiresGrad)
            throw new AutogradException(
                $"Backward: tensor {Tensor.ShapeText(root.ShapeArray)} does not require grad, so there is nothing to differentiate. " +
                "Create the parameters with requiresGrad: true (and compute outside Autograd.NoGrad()).");
        if (gradient == null && root.NumElements != 1)
            throw new AutogradException(
                $"Backward: the tensor has shape {Tensor.ShapeText(root.ShapeArray)} ({root.NumElements} elements); Backward() without a gradient " +
                "needs a scalar. Reduce it first (Sum() or Mean()) or pass Backward(gradient) with a tensor of the same shape.");
        if (gradient != null)
        {
            gradient.Live("use as gradient");
            if (!gradient.ShapeArray.SequenceEqual(root.ShapeArray))
                throw new ShapeMismatchException(
                    $"Backward: the gradient has shape {Tensor.ShapeText(gradient.ShapeArray)} but the tensor has {Tensor.ShapeText(root.ShapeArray)}; they must match.");
            if (!ReferenceEquals(gradient.Device, root.Device))
                throw new DeviceMismatchException(
                    $"Backward: the gradient is on {gradient.Device.Name} but the tensor on {root.Device.Name}; put both on one device.");
        }

        using var _ = Autograd.NoGrad();
        if (root.GradFn == null)
        {
            AccumulateLeaf(root, gradient?.Clone() ?? Tensor.Ones(root.ShapeArray, root.Device));
            return;
        }

        // Every tensor in `pending` is owned by the engine; a rule's result that aliases dOut is copied.
        var order = TopologicalOrder(root.GradFn);
        var pending = new Dictionary<Node, Tensor>(ReferenceEqualityComparer.Instance)
        {
            [root.GradFn] = gradient ?? Tensor.Ones(root.ShapeArray, root.Device),
        };
        for (int n = order.Count - 1; n >= 0; n--)
        {
            var node = order[n];
            if (node.Released)
                throw new AutogradException(
                    $"Backward: the graph through {node.Op} was already released by an earlier Backward(). " +
                    "Pass retainGraph: true to the first Backward to go through a graph twice.");
            if (!pending.Remove(node, out var g)) continue;
            var ctx = new GradContext(node, g);
            for (int i = 0; i < node.Inputs.Length; i++)
            {
                var input = node.Inputs[i];
                if (!input.RequiresGrad) continue;
                var gi = Gradients.InputGradient(node, ctx, i, "Backward");
                if (ReferenceEquals(gi, g)) gi = g.Clone();
                if (input.GradFn == null) AccumulateLeaf(input, gi);
                else if (pending.TryGetValue(input.GradFn, out var acc))
                {
                    acc.AddInPlace(gi);
                    gi.Dispose();
                }
                else pending[input.GradFn] = gi;
            }
            if (!ReferenceEquals(g, gradient)) g.Dispose();
        }

        if (!retainGraph)
        {
            foreach (var node in order)
            {
                node.Released = true;
                if (!ReferenceEquals(node.Output, root)) node.Output.Release(ReleasedReason);
            }
        }
    }

    /// <summary>leaf.Grad += g (taking g as the Grad when there is none yet); g is consumed.</summary>
    private static void AccumulateLeaf(Tensor leaf, Tensor g)
    {
        if (leaf.Grad == null || leaf.Grad.IsDisposed)
        {
            leaf.Grad = TensorScope.Release(g); // a gradient outlives the step's scope
            return;
        }
        leaf.Grad.AddInPlace(g);
        g.Dispose();
    }

    /// <summary>Sums g over the dimensions that broadcasting expanded, giving the input's shape.</summary>
    internal static Tensor SumTo(Tensor g, int[] shape)
    {
        int lead = g.Rank - shape.Length;
        var axes = new List<int>();
        for (int i = 0; i < g.Rank; i++)
        {
            if (i < lead) axes.Add(i);
            else if (shape[i - lead] == 1 && g.ShapeArray[i] != 1) axes.Add(i);
        }
        using var s = g.Sum(axes.ToArray(), keepDim: true);
        return s.Reshape(shape);
    }

    internal static List<Node> TopologicalOrder(Node root)
    {
        var order = new List<Node>();
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Node Node, int Next)>();
        stack.Push((root, 0));
        seen.Add(root);
        while (stack.Count > 0)
        {
            var (node, next) = stack.Pop();
            if (next < node.Inputs.Length)
            {
                stack.Push((node, next + 1));
                var child = node.Inputs[next].GradFn;
                if (child != null && seen.Add(child)) stack.Push((child, 0));
            }
            else
            {
                order.Add(node);
            }
        }
        return order; // inputs before the nodes that use them
    }
}
