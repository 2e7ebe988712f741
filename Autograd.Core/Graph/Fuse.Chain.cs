// Fuse, chains (after Tune, which has chosen each product's kernel): a product followed by small
// products takes them into its launch as its chain tail (Autograd.Kernels/ProductChain.cs), run by its
// last group once every group has stored its part. The seed's h = relu(x w1) takes y = h w2 with its
// loss and dY, then dH = (dY w2^T) masked by h: its step goes from 4 launches to 2 on a GPU.
//
// What may follow: the next products in program order (reshapes between them are views and launch
// nothing), each a fused product or a product with its sum, each of at most MaxChainMacs
// multiply-adds, up to MaxChainStages. They run after the head in the same order as before, so the
// memory plan, made over the same node order, stays right: a stage overwrites only what no later
// node reads, and the head's groups have all finished with their inputs before the tail starts. The
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
        for (int i = 0; i < result.Count; i++)
        {
            var head = result[i];
            if (head is not { Op.Kind: Prim.MatMul, Op.Payload: null or MatMulEpilogue, Side: null, InChain: false }) continue;
            var (m, n, k) = Dims(head);
            if (!MatMulKernels.ChainInSameLaunch(host, m, n, k)) continue;
            var stages = new List<int>();
            for (int j = i + 1; j < result.Count && stages.Count < MatMulKernels.MaxChainStages; j++)
            {
                if (result[j].Op.Kind == Prim.Reshape) continue;
                if (!Stageable(result[j])) break;
                stages.Add(j);
            }
            if (stages.Count == 0) continue;
            foreach (int j in stages)
            {
                var s = result[j];
                var op = s.Op.Payload == null ? s.Op with { Payload = EpilogueOf(s) } : s.Op;
                result[j] = new Node(op, s.Inputs, s.Output) { Side = s.Side, InChain = true };
            }
            var chain = ChainKernels.Chain(head.Op, EpilogueOf(head), stages.Select(j => result[j]).ToList());
            result[i] = new Node(head.Op with { Payload = chain }, head.Inputs, head.Output);
            i = stages[^1];
        }
        return result;
    }

    // A product one group does alone: small, and fused (its epilogue) or with its sum (a loss one group sums).
    private static bool Stageable(Node n)
    {
        if (n.Op.Kind != Prim.MatMul || n.InChain) return false;
        var (m, rows, k) = Dims(n);
        long macs = (long)m * rows * k;
        if (macs == 0 || macs > MatMulKernels.MaxChainMacs) return false;
        return n.Op.Payload switch
        {
            null or MatMulEpilogue => n.Side == null,
            MatMulSumOp => n.Side != null && (long)m * rows <= MatMulKernels.MaxTailElements,
            _ => false,
        };
    }

    private static (int M, int N, int K) Dims(Node n)
    {
        int[][] shapes = [n.Inputs[0].ShapeArray, n.Inputs[1].ShapeArray];
        return (Executor.ProductRows(n.Op, shapes), Executor.ProductCols(n.Op, shapes), Executor.ProductDepth(n.Op, shapes));
    }
}
