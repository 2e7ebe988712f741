// Fuse, pairs (after the optimizer's pass, which moves each folded SGD update to the end of the step):
// two products next to each other, neither reading what the other writes, become one node that runs
// them in one launch where the device allows (MatMulKernels.MatMulPair). The seed's last two
// products, w1 -= lr x^T dH and w2 -= lr h^T dY, are such a pair: on a GPU the one-tile update of w2
// then runs beside the 32 tiles of w1's instead of after them.
namespace AutogradNet;

internal static partial class Fuse
{
    /// <summary>Pairs neighbouring independent products (AUTOGRAD_FUSE=0 turns it off with the rest).</summary>
    /// <param name="nodes">The fused nodes, updates folded.</param>
    /// <param name="chains">Whether chain tails may form (KernelHost.ChainTails): a product small enough to
    /// be a chain's stage is then left unpaired, so that it can run in a chain's tail, not in a launch.</param>
    public static List<Node> PairProducts(List<Node> nodes, bool chains = false)
    {
        if (!Enabled) return nodes;
        var result = new List<Node>(nodes);
        var root = ViewRoots(nodes);
        bool Reads(Node n, Tensor t) => n.Inputs.Any(x => ReferenceEquals(root(x), root(t)));
        for (int i = 0; i + 1 < result.Count; i++)
        {
            Node a = result[i], b = result[i + 1];
            if (!Pairable(a) || !Pairable(b) || (chains && (Stageable(a) || Stageable(b))) || Reads(b, a.Output) || Reads(a, b.Output)
                || ReferenceEquals(root(a.Output), root(b.Output))) continue;
            var op = a.Op with { Payload = FusedKernels.MatMulPair(a.Op, EpilogueOf(a), b.Op, EpilogueOf(b), a.Inputs.Length) };
            result[i] = new Node(op, [.. a.Inputs, .. b.Inputs], a.Output) { Side = b.Output };
            result.RemoveAt(i + 1);
        }
        return result;
    }

    private static bool Pairable(Node n) => n is { Op.Kind: Prim.MatMul, Op.Payload: null or MatMulEpilogue, Side: null, InChain: false };
}
