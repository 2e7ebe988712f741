// Fuse, reductions: a sum over all elements reads a unary op's output that nothing else reads, so the
// op moves into the sum (Pow then Sum becomes one pass summing x^2). A sibling that reads the same
// input elementwise and does not need the sum joins the pass as a second output: for a loss
// sum((p - y)^2) that is the backward's PowGrad, so the loss and its gradient cost one launch.
using AutogradNet.Kernels;

namespace AutogradNet;

internal static partial class Fuse
{
    private static List<Node> FoldIntoSum(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var result = new List<Node>(nodes);
        for (int i = 0; i < result.Count; i++)
        {
            var sum = result[i];
            if (sum.Op.Kind != Prim.Sum || sum.Op.Payload != null || !Executor.IsSumAll(sum.Op, sum.Inputs[0].ShapeArray)) continue;
            var consumers = Consumers(result);
            Node? mapNode = null;
            var u = sum.Inputs[0];
            object map = new IdentityOp();
            string? mapText = null, sideText = null;
            int producer = result.FindIndex(n => ReferenceEquals(n.Output, u));
            if (producer >= 0 && result[producer] is var p && p.Inputs.Length == 1 && ComposedOps.CanFollow(p.Op)
                && !outputs.Contains(u) && consumers[u].Count == 1)
            {
                mapNode = p;
                map = ComposedOps.Struct(p.Op);
                mapText = p.Op.ToString();
                u = p.Inputs[0];
            }
            var sibling = mapNode == null ? null : Sibling(result, consumers, u, i, mapNode);
            if (mapNode == null && sibling == null) continue;
            object? side = null;
            Tensor[] inputs = [u];
            if (sibling != null)
            {
                (side, var other, sideText) = Against(sibling, u);
                inputs = [u, other];
            }
            var op = new OpSpec(Prim.Sum, Ints: sum.Op.Ints, Flag1: sum.Op.Flag1, Payload: FusedKernels.SumMap(map, side, mapText, sideText));
            result[i] = new Node(op, inputs, sum.Output) { Side = sibling?.Output };
            if (mapNode != null) result.Remove(mapNode);
            if (sibling != null) result.Remove(sibling);
        }
        return result;
    }

    // A Scale that is the only reader of a sum over all elements (Mean is Sum then Scale) multiplies
    // the final sum inside the sum's own launch: the same multiply, so the same bits.
    private static List<Node> FoldScaleIntoSum(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var result = new List<Node>(nodes);
        var consumers = Consumers(result);
        for (int i = 0; i < result.Count; i++)
        {
            var sum = result[i];
            if (sum.Op.Kind != Prim.Sum || outputs.Contains(sum.Output)) continue;
            bool plain = sum.Op.Payload == null && Executor.IsSumAll(sum.Op, sum.Inputs[0].ShapeArray);
            if (!plain && sum.Op.Payload is not SumMapOp) continue;
            if (!consumers.TryGetValue(sum.Output, out var users) || users.Count != 1) continue;
            var scale = users[0];
            if (scale.Op.Kind != Prim.Scale || scale.Inputs.Length != 1) continue;
            var old = sum.Op.Payload as SumMapOp;
            var op = FusedKernels.SumMap(old?.Map ?? new IdentityOp(), old?.Side, old?.MapText, old?.SideText,
                (old?.Scale ?? 1f) * scale.Op.A);
            result[i] = new Node(sum.Op with { Payload = op }, sum.Inputs, scale.Output) { Side = sum.Side };
            result.Remove(scale);
            consumers = Consumers(result);
        }
        return result;
    }

    // A sum over all elements (plain, or mapped with its sibling and scale) whose input is a product
    // read by nothing else becomes the product's tail. The fused node sits where the sum was (its
    // sibling's operand is ready there) and writes the loss, and the product's buffer: the sibling's
    // output (written over the product in place) when there is one, else the product itself.
    private static List<Node> FoldProductIntoSum(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var result = new List<Node>(nodes);
        var consumers = Consumers(result);
        for (int i = 0; i < result.Count; i++)
        {
            var sum = result[i];
            if (sum.Op.Kind != Prim.Sum) continue;
            var mapped = sum.Op.Payload as SumMapOp;
            if (mapped == null && (sum.Op.Payload != null || !Executor.IsSumAll(sum.Op, sum.Inputs[0].ShapeArray))) continue;
            var u = sum.Inputs[0];
            var mm = result.Find(n => ReferenceEquals(n.Output, u));
            if (mm is not { Op.Kind: Prim.MatMul, Op.Payload: null or MatMulEpilogue } || outputs.Contains(u)
                || consumers[u].Count != 1 || sum.Inputs.Skip(1).Contains(u)) continue;
            var tail = mapped ?? FusedKernels.SumMap(new IdentityOp(), null, null, null);
            Tensor[] inputs = [.. mm.Inputs, .. sum.Inputs.Skip(1)];
            var op = mm.Op with { Payload = FusedKernels.MatMulSum(mm.Op, EpilogueOf(mm), tail) };
            var fused = new Node(op, inputs, sum.Output) { Side = sum.Side ?? u };
            result[i] = fused;
            result.Remove(mm);
            consumers = Consumers(result);
            i = result.IndexOf(fused);
        }
        return result;
    }

    // A binary elementwise node after the sum, reading u and an operand that is ready at the sum
    // (external, or made before it) and is u's shape or a single element; its output has u's shape.
    private static Node? Sibling(List<Node> nodes, Dictionary<Tensor, List<Node>> consumers, Tensor u, int sumAt, Node mapNode)
    {
        foreach (var w in consumers[u])
        {
            if (ReferenceEquals(w, mapNode) || w.Inputs.Length != 2 || !ComposedOps.CanLead(w.Op) || w.Op.Kind == Prim.Fused) continue;
            if (nodes.IndexOf(w) < sumAt || !w.Output.ShapeArray.SequenceEqual(u.ShapeArray)) continue;
            var s = Against(w, u).Other;
            if (ReferenceEquals(s, u) || !(s.NumElements == 1 || s.ShapeArray.SequenceEqual(u.ShapeArray))) continue;
            if (!ReadyAt(nodes, s, sumAt)) continue;
            return w;
        }
        return null;
    }

    // Whether t's data exists when node `at` runs: external, or made earlier (reshapes are views, so
    // a reshape recorded later of something made earlier counts as made earlier).
    private static bool ReadyAt(List<Node> nodes, Tensor t, int at)
    {
        while (true)
        {
            if (!t.IsSymbolic) return true;
            int made = nodes.FindIndex(n => ReferenceEquals(n.Output, t) || ReferenceEquals(n.Side, t));
            if (made < 0) return false;
            if (nodes[made].Op.Kind != Prim.Reshape) return made < at;
            t = nodes[made].Inputs[0];
        }
    }
}
