// Pass 5, plan memory: give every symbolic value a device buffer, all allocated now. A buffer is
// reused once the last node reading it has run (liveness over the node order); reshapes alias their
// input; the graph's outputs get buffers of their own that nothing reuses. One scratch buffer,
// sized for the hungriest node, serves split-K and two-stage sums (nodes run one after another).
namespace AutogradNet;

internal sealed class MemoryPlan : IDisposable
{
    private readonly Dictionary<Tensor, Tensor> _home = new(ReferenceEqualityComparer.Instance);

    public List<Tensor> Buffers { get; } = [];

    public Tensor? Scratch { get; private set; }

    public long Bytes => Buffers.Sum(b => b.NumElements * sizeof(float)) + (Scratch?.NumElements ?? 0) * sizeof(float);

    /// <summary>The buffer holding a symbolic value (its first NumElements elements), or the tensor itself if external.</summary>
    public Tensor Home(Tensor t)
    {
        var root = Root(t);
        return root.IsSymbolic ? _home[root] : root;
    }

    private readonly Dictionary<Tensor, Tensor> _alias = new(ReferenceEqualityComparer.Instance);

    internal Tensor Root(Tensor t)
    {
        while (_alias.TryGetValue(t, out var r)) t = r;
        return t;
    }

    public static MemoryPlan Run(List<Node> nodes, IReadOnlyCollection<Tensor> outputs, Device device)
    {
        var plan = new MemoryPlan();
        foreach (var n in nodes)
            if (n.Op.Kind == Prim.Reshape) plan._alias[n.Output] = n.Inputs[0];

        // Last node index reading each root; outputs live to the end. A row chain's groups run its
        // stages at different times, so whatever any of its stages reads or writes stays live until
        // its last stage, and is never reused within it.
        var lastUse = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < nodes.Count; i++)
        {
            void Use(Tensor t, int at)
            {
                if (t.IsSymbolic) lastUse[plan.Root(t)] = Math.Max(lastUse.GetValueOrDefault(plan.Root(t), -1), at);
            }
            foreach (var x in nodes[i].Inputs) Use(x, i);
            if (nodes[i].Op.Payload is not MatMulRowsOp rows) continue;
            // The row chain's node and its stages, which follow it.
            int until = i + rows.Stages.Count - 1;
            foreach (var n in nodes.GetRange(i, until - i + 1))
                foreach (var t in n.Inputs.Append(n.Output).Concat(n.Side == null ? [] : [n.Side])) Use(t, until);
        }
        var pinned = new HashSet<Tensor>(outputs.Where(o => o.IsSymbolic).Select(plan.Root), ReferenceEqualityComparer.Instance);

        var free = new Dictionary<long, Stack<Tensor>>();
        var live = new List<(Tensor Root, Tensor Buffer)>();
        long scratch = 0;
        for (int i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            scratch = Math.Max(scratch, Executor.ScratchElements(device.Host, n.Op,
                n.Inputs.Select(x => x.ShapeArray).ToArray(), n.Output.ShapeArray));
            // Free what no later node reads (never this node's own inputs: outputs must not alias them).
            for (int j = live.Count - 1; j >= 0; j--)
            {
                var (root, buf) = live[j];
                if (pinned.Contains(root) || lastUse.GetValueOrDefault(root, -1) >= i) continue;
                long cls = buf.NumElements;
                if (!free.TryGetValue(cls, out var st)) free[cls] = st = new();
                st.Push(buf);
                live.RemoveAt(j);
            }
            if (n.Op.Kind == Prim.Reshape) continue;
            foreach (var rootOut in n.Side == null ? [n.Output] : new[] { n.Output, n.Side })
            {
                // An external output is written in place (a parameter updated by a fused SGD step).
                if (!rootOut.IsSymbolic) continue;
                long need = Allocator.RoundUp(Math.Max(1, rootOut.NumElements));
                Tensor buffer;
                if (!pinned.Contains(rootOut) && free.TryGetValue(need, out var stack) && stack.Count > 0) buffer = stack.Pop();
                else
                {
                    buffer = TensorScope.Release(Tensor.Empty([(int)need], device, "Graph.Compile"));
                    plan.Buffers.Add(buffer);
                }
                plan._home[rootOut] = buffer;
                live.Add((rootOut, buffer));
            }
        }
        if (scratch > 0) plan.Scratch = TensorScope.Release(Tensor.Empty([(int)scratch], device, "Graph.Compile"));
        return plan;
    }

    public void Dispose()
    {
        foreach (var b in Buffers) b.Dispose();
        Scratch?.Dispose();
    }
}
