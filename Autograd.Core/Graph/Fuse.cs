// Pass 4, fuse: shrink the node list before memory is planned.
// - Dead nodes (nothing the outputs need) go.
// - An Expand whose consumers are all broadcasting elementwise ops goes: they read its input
//   directly (the backward of Sum makes one per step: the gradient seed broadcast to the loss's input).
// - Nodes that read only constants (a Mean's gradient seed scaled by 1/n) are evaluated at compile time.
// - Elementwise ops that are the only reader of a product go into its epilogue (Fuse.MatMul.cs).
// - A unary op read only by a sum over all elements goes into the sum, and an elementwise sibling of
//   it that does not need the sum becomes the sum's second output, and a Scale after the sum (a
//   Mean) multiplies its result in the same launch, and a sum of a product that nothing else reads
//   is taken in the product's launch (Fuse.Reduce.cs).
// - A unary elementwise op that is the only consumer of an elementwise op's output is folded into
//   it: the pair becomes one kernel whose op struct is composed at run time (ComposedOps.cs).
// AUTOGRAD_FUSE=0 keeps only dead-code removal and expand folding (to compare, or to bisect a bug).
namespace AutogradNet;

internal static partial class Fuse
{
    /// <param name="nodes">The traced and differentiated nodes.</param>
    /// <param name="outputs">What the step must produce.</param>
    /// <param name="constants">Compile-time constants (the gradient seed); tensors folded from them are
    /// added, owned by the caller.</param>
    public static List<Node> Run(List<Node> nodes, IReadOnlyCollection<Tensor> outputs, List<Tensor> constants)
    {
        nodes = DeadCode(nodes, outputs);
        nodes = DropExpands(nodes, outputs);
        if (!Enabled) return nodes;
        nodes = FoldConstants(nodes, outputs, constants);
        nodes = FoldIntoMatMul(nodes, outputs);
        nodes = FoldIntoSum(nodes, outputs);
        nodes = FoldScaleIntoSum(nodes, outputs);
        nodes = FoldProductIntoSum(nodes, outputs);
        nodes = FoldUnaryChains(nodes, outputs);
        return nodes;
    }

    // Nodes that read only constants (the gradient seed, or what was folded from it: a Mean's seed
    // scaled by 1/n, and its reshapes) are evaluated now, once; their readers read the result. Such a
    // result is ready before any node runs, so the loss pass can write the gradient that reads it.
    private static List<Node> FoldConstants(List<Node> nodes, IReadOnlyCollection<Tensor> outputs, List<Tensor> constants)
    {
        var known = new HashSet<Tensor>(constants, ReferenceEqualityComparer.Instance);
        var value = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        var kept = new List<Node>();
        foreach (var n in nodes)
        {
            var inputs = n.Inputs.Select(x => value.TryGetValue(x, out var v) ? v : x).ToArray();
            for (int j = 0; j < n.Inputs.Length; j++) n.Inputs[j] = inputs[j];
            bool foldable = n.Side == null && n.Op.Payload == null && !outputs.Contains(n.Output)
                && inputs.All(known.Contains) && (n.Op.Kind == Prim.Reshape || Executor.IsElementwise(n.Op.Kind));
            if (!foldable)
            {
                kept.Add(n);
                continue;
            }
            Tensor result;
            using (Autograd.NoGrad())
            {
                if (n.Op.Kind == Prim.Reshape) result = inputs[0].Reshape(n.Output.ShapeArray);
                else
                {
                    result = Tensor.Empty(n.Output.ShapeArray, inputs[0].Device, "Graph.Compile");
                    lock (result.Device.Sync) Executor.Run(n.Op, inputs, result);
                }
            }
            result = TensorScope.Release(result);
            constants.Add(result);
            known.Add(result);
            value[n.Output] = result;
        }
        return kept;
    }

    /// <summary>Whether kernel fusion runs (AUTOGRAD_FUSE=0 turns it off).</summary>
    public static bool Enabled => Environment.GetEnvironmentVariable("AUTOGRAD_FUSE") != "0";

    private static Dictionary<Tensor, List<Node>> Consumers(List<Node> nodes)
    {
        var c = new Dictionary<Tensor, List<Node>>(ReferenceEqualityComparer.Instance);
        foreach (var n in nodes)
            foreach (var x in n.Inputs)
            {
                if (!c.TryGetValue(x, out var list)) c[x] = list = [];
                if (!list.Contains(n)) list.Add(n);
            }
        return c;
    }

    // A reshape is a view: what a node reads or writes through one, it reads or writes of the
    // reshape's input. The function maps a tensor to the tensor it views, through every reshape.
    private static Func<Tensor, Tensor> ViewRoots(List<Node> nodes)
    {
        var viewOf = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var n in nodes.Where(n => n.Op.Kind == Prim.Reshape)) viewOf[n.Output] = n.Inputs[0];
        return t =>
        {
            while (viewOf.TryGetValue(t, out var r)) t = r;
            return t;
        };
    }

    private static List<Node> DeadCode(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var needed = new HashSet<Tensor>(outputs, ReferenceEqualityComparer.Instance);
        var keep = new List<Node>();
        for (int i = nodes.Count - 1; i >= 0; i--)
        {
            if (!needed.Contains(nodes[i].Output)) continue;
            keep.Add(nodes[i]);
            foreach (var x in nodes[i].Inputs) needed.Add(x);
        }
        keep.Reverse();
        return keep;
    }

    // A binary node seen as a function of t and its other operand: its op struct (flipped when t is
    // its second input, so t always comes first), the other operand, and the op's text.
    private static (object Op, Tensor Other, string Text) Against(Node user, Tensor t)
    {
        bool second = !ReferenceEquals(user.Inputs[0], t);
        object op = ComposedOps.Struct(user.Op);
        return second
            ? (FusedKernels.Flip(op), user.Inputs[0], $"{user.Op} (flipped)")
            : (op, user.Inputs[1], user.Op.ToString());
    }

    private static bool IsBinaryElementwise(Prim p) => Executor.IsElementwise(p) && p is Prim.Add or Prim.Mul or Prim.Div
        or Prim.ClampGrad or Prim.TanhGrad or Prim.SigmoidGrad or Prim.PowGrad;

    private static List<Node> DropExpands(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var consumers = Consumers(nodes);
        var drop = new HashSet<Node>();
        foreach (var e in nodes.Where(n => n.Op.Kind == Prim.Expand))
        {
            if (outputs.Contains(e.Output) || !consumers.TryGetValue(e.Output, out var users)) continue;
            bool ok = users.All(u => IsBinaryElementwise(u.Op.Kind) && BroadcastsTo(u, e));
            if (!ok) continue;
            foreach (var u in users)
                for (int j = 0; j < u.Inputs.Length; j++)
                    if (ReferenceEquals(u.Inputs[j], e.Output)) u.Inputs[j] = e.Inputs[0];
            drop.Add(e);
        }
        return nodes.Where(n => !drop.Contains(n)).ToList();
    }

    // The consumer's output shape must not change when it reads the un-expanded tensor.
    private static bool BroadcastsTo(Node user, Node expand)
    {
        var shapes = user.Inputs.Select(x => ReferenceEquals(x, expand.Output) ? expand.Inputs[0].ShapeArray : x.ShapeArray).ToArray();
        try
        {
            return Shapes.Broadcast("fuse", shapes[0], shapes[1]).SequenceEqual(user.Output.ShapeArray);
        }
        catch (ShapeMismatchException)
        {
            return false;
        }
    }

    private static List<Node> FoldUnaryChains(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var consumers = Consumers(nodes);
        var result = new List<Node>(nodes);
        for (int i = 0; i < result.Count; i++)
        {
            var first = result[i];
            if (!ComposedOps.CanLead(first.Op)) continue;
            while (!outputs.Contains(first.Output)
                   && consumers.TryGetValue(first.Output, out var users) && users.Count == 1
                   && ComposedOps.CanFollow(users[0].Op)
                   && users[0].Inputs.Length == 1)
            {
                var next = users[0];
                var fused = new Node(ComposedOps.Compose(first.Op, next.Op), first.Inputs, next.Output);
                result[result.IndexOf(next)] = fused;
                result.RemoveAt(i);
                consumers = Consumers(result);
                i = result.IndexOf(fused);
                first = fused;
            }
        }
        return result;
    }
}
