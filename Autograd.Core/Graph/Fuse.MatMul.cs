// Fuse, matmul epilogues: the elementwise op that is the only reader of a product moves into the
// product's store, so the product never makes a round trip through memory and the op costs no launch.
// - A binary op with one operand beside the product (bias, y subtracted, the clamp mask of the
//   backward) becomes the epilogue, the operand read through strides: same shape (N, 1), a broadcast
//   row (0, 1), a broadcast column (1, 0) or a scalar (0, 0).
// - Unary ops after it (relu, tanh, a scale) compose onto the epilogue.
using AutogradNet.Kernels;

namespace AutogradNet;

internal static partial class Fuse
{
    private static List<Node> FoldIntoMatMul(List<Node> nodes, IReadOnlyCollection<Tensor> outputs)
    {
        var result = new List<Node>(nodes);
        bool changed = true;
        while (changed)
        {
            changed = false;
            var consumers = Consumers(result);
            for (int i = 0; i < result.Count && !changed; i++)
            {
                var mm = result[i];
                if (mm.Op.Kind != Prim.MatMul || mm.Op.Payload is not (null or MatMulEpilogue)) continue;
                if (outputs.Contains(mm.Output) || !consumers.TryGetValue(mm.Output, out var users) || users.Count != 1) continue;
                var user = users[0];
                var fused = user.Inputs.Length == 1 ? WithUnary(mm, user) : WithBinary(mm, user);
                if (fused == null) continue;
                result[result.IndexOf(user)] = fused;
                result.RemoveAt(i);
                changed = true;
            }
        }
        return result;
    }

    private static Node? WithUnary(Node mm, Node user)
    {
        if (!ComposedOps.CanFollow(user.Op)) return null;
        var current = EpilogueOf(mm);
        var e = FusedKernels.Then(mm.Op, current, ComposedOps.Struct(user.Op), current.Text + " -> " + user.Op);
        return new Node(mm.Op with { Payload = e }, mm.Inputs, user.Output);
    }

    // A product's epilogue: the one fused into it, or the plain store (FirstOp) when it has none.
    private static MatMulEpilogue EpilogueOf(Node mm) => mm.Op.Payload as MatMulEpilogue
        ?? FusedKernels.MatMul(mm.Op, new FirstOp(), mm.Op.ToString(), 0, 0, hasOperand: false);

    private static Node? WithBinary(Node mm, Node user)
    {
        // One operand only, and before any unary op (the epilogue is Binary then unary).
        if (mm.Op.Payload != null || user.Inputs.Length != 2 || !ComposedOps.CanLead(user.Op) || user.Op.Kind == Prim.Fused) return null;
        var (op, operand, opText) = Against(user, mm.Output);
        if (ReferenceEquals(operand, mm.Output) || !user.Output.ShapeArray.SequenceEqual(mm.Output.ShapeArray)) return null;
        if (Strides(operand.ShapeArray, mm.Output.ShapeArray) is not var (rs, cs)) return null;
        string text = $"{mm.Op} -> {opText} with {Tensor.ShapeText(operand.ShapeArray)}";
        var e = FusedKernels.MatMul(mm.Op, op, text, rs, cs, hasOperand: true);
        return new Node(mm.Op with { Payload = e }, [mm.Inputs[0], mm.Inputs[1], operand], user.Output);
    }

    // How an operand of this shape broadcasts over an (M, N) product, as element strides per row and
    // per column; null when it does not (then the op stays a kernel of its own).
    private static (int Row, int Col)? Strides(int[] s, int[] mn)
    {
        int m = mn[0], n = mn[1];
        int rank = s.Length;
        if (rank > 2 && s.Take(rank - 2).Any(d => d != 1)) return null;
        int r = rank >= 2 ? s[rank - 2] : 1, c = rank >= 1 ? s[rank - 1] : 1;
        if (r == 1 && c == 1) return (0, 0);
        if (r == m && c == n) return (n, 1);
        if (r == 1 && c == n) return (0, 1);
        if (r == m && c == 1) return (1, 0);
        return null;
    }
}
