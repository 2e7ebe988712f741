// Fuse, chains (after Tune, which has chosen each product's kernel): a product followed by small
// products takes them into its launch as its chain tail (Autograd.Kernels/ProductChain.cs), run by its
// last group once every group has stored its part. The seed's h = relu(x w1) takes y = h w2 with its
// loss and dY, then dH = (dY w2^T) masked by h, then w2's SGD update from h^T dY: its step goes
// from 4 launches to 2 on a GPU (the chain, then w1's update).
//
// What may follow: the next products in program order (reshapes between them are views and launch
// nothing), each a fused product or a product with its sum, each of at most MaxChainMacs
// multiply-adds, up to MaxChainStages. A node that cannot be a stage may be passed over when the
// stages after it neither read what it writes nor write what it reads or writes: it then runs after
// the chain (the seed's dW1 update is passed over, and dW2's, 64K multiply-adds, joins the tail; the
// pairing pass leaves such small products unpaired when chains may form). The passes that follow
// see the new order, so the memory plan, made over it, stays right: a stage overwrites only what no
// later node reads, and the head's groups have all finished with their inputs before the tail starts. The
// head is a product (fused or plain) whose chosen kernel can end with a tail
// (MatMulKernels.ChainInSameLaunch); on the CPU device's host SGEMM there is none, and the nodes stay.
// Only with KernelHost.ChainTails (AUTOGRAD_CHAIN=1), and AUTOGRAD_FUSE=0 turns it off with the rest.
using AutogradNet.Kernels;

namespace AutogradNet;

internal static partial class Fuse
{
    /// <summary>Folds small products into the launch of the product before them, as its chain tail.</summary>
    public static List<Node> Chains(List<Node> nodes, Device device)
    {
        var host = device.Host;
        if (!Enabled || !host.ChainTails) return nodes;
        var result = new List<Node>(nodes);
        var root = ViewRoots(nodes);
        for (int i = 0; i < result.Count; i++)
        {
            var head = result[i];
            if (head is not { Op.Kind: Prim.MatMul, Op.Payload: null or MatMulEpilogue, Side: null, InChain: false }) continue;
            var (m, n, k) = Dims(head);
            if (!MatMulKernels.ChainInSameLaunch(host, m, n, k)) continue;
            // The stages in order, passing over what cannot be one (the seed's dW1 update, too large,
            // with dW2's update taken into the tail).
            var stages = Gather(result, i, [], root, (node, _) => Stageable(node), MatMulKernels.MaxChainStages, MaxPassedOver);
            if (stages.Count == 0) continue;
            var members = stages.Select(j => AsStage(result[j])).ToList();
            var chain = ChainKernels.Chain(head.Op, EpilogueOf(head), members);
            i = Reorder(result, i, [i, .. stages], [new(head.Op with { Payload = chain }, head.Inputs, head.Output), .. members]);
        }
        return result;
    }

    // The nodes after `head` that `joins` takes, in order, up to `maxStages` (with those already in
    // `stages`): a node it does not take is passed over, at most `maxPassed` of them, and a later node
    // joins only if it is independent of each passed over (neither reads what the other writes, and
    // they write apart), since those will run after the chain. Reshapes are views and launch nothing.
    private static List<int> Gather(List<Node> nodes, int head, List<int> stages, Func<Tensor, Tensor> root,
        Func<Node, List<int>, bool> joins, int maxStages, int maxPassed)
    {
        var same = ReferenceEqualityComparer.Instance;
        bool Reads(Node n, Node writer) => n.Inputs.Any(x => Writes(writer, root).Contains(root(x), same));
        bool Independent(Node a, Node b) => !Reads(a, b) && !Reads(b, a) && !Writes(a, root).Any(t => Writes(b, root).Contains(t, same));
        var passed = new List<int>();
        for (int j = head + 1; j < nodes.Count && stages.Count < maxStages; j++)
        {
            var node = nodes[j];
            if (node.Op.Kind == Prim.Reshape) continue;
            if (joins(node, stages) && passed.All(p => Independent(node, nodes[p])))
            {
                stages.Add(j);
                continue;
            }
            if (passed.Count == maxPassed) break;
            passed.Add(j);
        }
        return stages;
    }

    // What a node writes, by view root: its output and, for a product with its sum, its side output.
    private static Tensor[] Writes(Node n, Func<Tensor, Tensor> root) => n.Side == null ? [root(n.Output)] : [root(n.Output), root(n.Side)];

    // A stage of a chain: its node with its epilogue made explicit, run by the chain's launch (Emit skips it).
    private static Node AsStage(Node s) =>
        new(s.Op.Payload == null ? s.Op with { Payload = EpilogueOf(s) } : s.Op, s.Inputs, s.Output) { Side = s.Side, InChain = true };

    // Replaces nodes[head..the last taken] with `placed` (the chain's node and its stages), then the
    // nodes of that window not taken, each in order; returns the index of the last placed node. The
    // passes that follow see the new order, so the memory plan, made over it, stays right.
    private static int Reorder(List<Node> nodes, int head, List<int> taken, List<Node> placed)
    {
        int last = taken.Max();
        var rest = Enumerable.Range(head, last - head + 1).Where(j => !taken.Contains(j)).Select(j => nodes[j]).ToList();
        nodes.RemoveRange(head, last - head + 1);
        nodes.InsertRange(head, [.. placed, .. rest]);
        return head + placed.Count - 1;
    }

    /// <summary>Nodes a chain may pass over to reach its next stage.</summary>
    private const int MaxPassedOver = 2;

    // A product one group does alone: small, and fused (its epilogue) or with its sum (a loss one group sums).
    private static bool Stageable(Node n)
    {
        if (n.Op.Kind != Prim.MatMul || n.InChain) return false;
        var (m, cols, k) = Dims(n);
        long macs = (long)m * cols * k;
        if (macs == 0 || macs > MatMulKernels.MaxChainMacs) return false;
        return n.Op.Payload switch
        {
            null or MatMulEpilogue => n.Side == null,
            MatMulSumOp => n.Side != null && (long)m * cols <= MatMulKernels.MaxTailElements,
            _ => false,
        };
    }

    private static (int M, int N, int K) Dims(Node n) => Executor.ProductDims(n.Op, n.Inputs[0].ShapeArray, n.Inputs[1].ShapeArray);
}
