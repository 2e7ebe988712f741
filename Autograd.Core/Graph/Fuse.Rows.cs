// Fuse, row chains (after Tune, before the chain tails): products that each need only the rows of
// their A that the product before them stored run as one launch, each group a block of rows through
// every one of them (Autograd.Kernels/MatMulKernels.Rows.cs). The seed's h = relu(x w1), y = h w2
// with its loss and dY, and dH = (dY w2^T) masked by h are one row chain: row i of each needs row i
// of x and the weights only. Its two updates read every row (x^T dH, h^T dY) and stay apart: with
// chain tails on, w2's update then runs in the tail of w1's, and the step is 2 launches.
//
// A product joins the chain when, for the chain's stages so far:
// - its C has the chain's rows, and a block's share of it fits one group (MatMulKernels.RowStageFits);
// - its A is untouched by the chain, or is a stage's C (never a loss) read row for row: not
//   transposed, with K the stage's columns;
// - its epilogue operand is untouched by the chain, or a stage's C read element for element (row
//   stride the stage's columns, column stride 1); every other operand (B, a sum's side operand) is
//   untouched by the chain;
// - what it writes, no stage reads or writes (another group may still be reading it).
// Like the chain tails it may pass over nodes its later stages are independent of (up to 4); they run
// after it. The memory plan keeps every buffer a row chain reads or writes until its last stage
// (PlanMemory), since its groups run the stages at different times. Only with KernelHost.RowChains
// (AUTOGRAD_ROWS=1), and AUTOGRAD_FUSE=0 turns it off with the rest.
using AutogradNet.Kernels;

namespace AutogradNet;

internal static partial class Fuse
{
    /// <summary>Runs products that each need only the rows the one before stored as one row chain.</summary>
    public static List<Node> Rows(List<Node> nodes, Device device)
    {
        var host = device.Host;
        if (!Enabled || !host.RowChains) return nodes;
        var result = new List<Node>(nodes);
        var root = ViewRoots(nodes);
        for (int i = 0; i < result.Count; i++)
        {
            var first = result[i];
            if (!RowCandidate(first)) continue;
            var (m, n, k) = Dims(first);
            if (MatMulKernels.RowChainSplit(host, m) is not { } split || !MatMulKernels.RowStageFits(split, m, n, k)) continue;
            var stages = Gather(result, i, [i], root,
                (node, taken) => RowCandidate(node) && RowLocal(node, taken.Select(s => result[s]).ToList(), split, root), int.MaxValue, MaxRowPassedOver);
            if (stages.Count < 2) continue;
            var members = stages.Select(j => AsStage(result[j])).ToList();
            // The first stage's columns shared out among a block's groups, unless it sums (a block's
            // part of the sum needs all of them); the rows are cut as before, so the checks above hold.
            int headColumns = first.Side == null ? n : 0;
            split = MatMulKernels.RowChainSplit(host, m, headColumns)!.Value;
            // The first stage's node carries the chain; the others follow it, then what was passed over.
            var carrier = new Node(first.Op with { Payload = ChainKernels.Rows(members, split, headColumns) }, first.Inputs, first.Output) { Side = first.Side };
            i = Reorder(result, i, stages, [carrier, .. members.Skip(1)]);
        }
        return result;
    }

    /// <summary>
    /// Nodes a row chain may pass over to reach its next stage: more than a chain tail's, as a
    /// backward's row-local products alternate with weight gradients and bias sums (the 3-layer net's
    /// dH1 comes after dW3, db2 and dW2).
    /// </summary>
    private const int MaxRowPassedOver = 4;

    // A product a row chain can run: fused (its epilogue) or with its sum.
    private static bool RowCandidate(Node n) => n is { Op.Kind: Prim.MatMul, InChain: false } && n.Op.Payload switch
    {
        null or MatMulEpilogue => n.Side == null,
        MatMulSumOp => n.Side != null,
        _ => false,
    };

    // Whether the product reads what the chain's stages wrote row for row only, and writes nothing they touch.
    private static bool RowLocal(Node node, List<Node> stages, RowSplit split, Func<Tensor, Tensor> root)
    {
        var same = ReferenceEqualityComparer.Instance;
        var (m, n, k) = Dims(node);
        if (!MatMulKernels.RowStageFits(split, m, n, k)) return false;
        // The C each stage wrote (a product's output, a sum's side output), and the losses, which
        // only the chain's last group knows whole.
        var cOf = new Dictionary<Tensor, Node>(same);
        var losses = new HashSet<Tensor>(same);
        foreach (var s in stages)
        {
            if (s.Side != null) { cOf[root(s.Side)] = s; losses.Add(root(s.Output)); }
            else cOf[root(s.Output)] = s;
        }
        bool Touched(Tensor t) => cOf.ContainsKey(root(t)) || losses.Contains(root(t));
        int Cols(Node writer) => Dims(writer).N;
        var epilogue = node.Op.Payload switch { MatMulEpilogue e => e, MatMulSumOp s => s.Epilogue, _ => null };
        for (int x = 0; x < node.Inputs.Length; x++)
        {
            var input = node.Inputs[x];
            if (!Touched(input)) continue;
            if (!cOf.TryGetValue(root(input), out var writer)) return false;
            bool rowForRow = x switch
            {
                0 => !node.Op.Flag1 && Cols(writer) == k,
                2 when epilogue is { HasOperand: true } e => e.RowStride == Cols(writer) && e.ColStride == 1,
                _ => false,
            };
            if (!rowForRow) return false;
        }
        // What it writes: neither read nor written by a stage.
        var writes = Writes(node, root);
        return !stages.Any(s => s.Inputs.Any(x => writes.Contains(root(x), same)) || Writes(s, root).Any(t => writes.Contains(t, same)));
    }
}
