// Graph.Compile: a training step traced once, differentiated with the eager gradient table,
// optimised, planned and emitted as a list of pre-bound launches, then replayed (as a CUDA graph on
// CUDA). The passes, in order, each in its own file: Trace, Differentiate, Fuse, Update (the
// optimizer's pass: folded into the products, or appended by Emit), Fuse's pairing of the products
// the update moved (Fuse.Pair.cs), Tune (the SGEMM choice of each product shape, timed on the device
// where it autotunes), Fuse's row chains (products that need only the rows the one before stored,
// block of rows by block of rows in one launch, Fuse.Rows.cs), Fuse's chains (small products in the
// launch of the product before them, Fuse.Chain.cs), PlanMemory, Emit, Replay.
using System.Text;
using AutogradNet.Kernels;
using AutogradNet.Optim;

namespace AutogradNet;

/// <summary>Compiles a step function into a static graph.</summary>
public static class Graph
{
    /// <summary>
    /// Traces fn once and compiles it. With an optimizer, fn must return a scalar loss and each Run
    /// computes it, the gradients of the optimizer's parameters, and the update, in place on the device.
    /// Tensors that fn reads but did not compute are the step's inputs: their buffers are bound, so
    /// new data goes in with <see cref="CompiledStep.SetInput"/> (or an in-place copy).
    /// </summary>
    /// <param name="fn">The step's forward computation, e.g. <c>() =&gt; (x.MatMul(w) - y).Pow(2).Sum()</c>.</param>
    /// <param name="optimizer">The update to append (SGD, momentum, Adam); null compiles the forward only.</param>
    public static CompiledStep Compile(Func<Tensor> fn, Optimizer? optimizer = null)
    {
        ArgumentNullException.ThrowIfNull(fn);
        var (output, traced, tracer) = Trace.Run(fn);
        // The gradient seed, and whatever Fuse folds from it: owned by the step.
        var constants = new List<Tensor>();
        try
        {
            Tensor?[] grads = [];
            if (optimizer != null)
            {
                using (tracer) { }
                using var differentiating = new Tracer();
                var seed = TensorScope.Release(Tensor.Ones(output.ShapeArray, output.Device));
                constants.Add(seed);
                grads = Differentiate.Run(output, optimizer.Parameters, seed);
                traced.AddRange(differentiating.Nodes);
            }
            else
            {
                tracer.Dispose();
            }
            var outputs = new List<Tensor> { output };
            outputs.AddRange(grads.Where(g => g != null)!);
            int recorded = traced.Count;
            var nodes = Fuse.Run(traced, outputs, constants);
            nodes = Update.Fold(nodes, outputs, optimizer, grads);
            // With row chains, products pair only after them: a pair would hide its halves from a chain.
            var host = output.Device.Host;
            if (!host.RowChains) nodes = Fuse.PairProducts(nodes, chains: host.ChainTails);
            Tune.Run(nodes, output.Device);
            nodes = Fuse.Rows(nodes, output.Device);
            nodes = Fuse.Chains(nodes, output.Device);
            // The small products the pairing pass left apart for the chains, where no chain took them.
            if (host.ChainTails || host.RowChains) nodes = Fuse.PairProducts(nodes);
            var plan = MemoryPlan.Run(nodes, outputs, output.Device);
            optimizer?.Prepare();
            var program = Emit.Run(nodes, plan, optimizer, grads, output);
            return new CompiledStep(output, nodes, recorded, plan, program, optimizer, constants);
        }
        catch
        {
            tracer.Dispose();
            foreach (var c in constants) c.Dispose();
            throw;
        }
    }
}

/// <summary>A compiled step: replay it with <see cref="Run()"/>; dispose it to free its buffers.</summary>
public sealed class CompiledStep : IDisposable
{
    private readonly Tensor _symbolicOutput;
    private readonly List<Node> _nodes;
    private readonly MemoryPlan _plan;
    private readonly List<Instr> _program;
    private readonly Replay _replay;
    private readonly Tensor[] _inputs;
    private readonly List<Tensor> _constants;
    private readonly Optimizer? _optimizer;
    private readonly object _gate = new();
    // Run(steps)'s histories, one per count: a CUDA graph captured for n steps writes into its own.
    private readonly Dictionary<int, Tensor> _histories = new();
    private bool _disposed;

    internal CompiledStep(Tensor output, List<Node> nodes, int recorded, MemoryPlan plan, List<Instr> program, Optimizer? optimizer, List<Tensor> constants)
    {
        _symbolicOutput = output;
        _nodes = nodes;
        RecordedNodes = recorded;
        _plan = plan;
        _program = program;
        _optimizer = optimizer;
        _constants = constants;
        Device = output.Device;
        var owned = new HashSet<Tensor>(constants, ReferenceEqualityComparer.Instance);
        _inputs = nodes.SelectMany(n => n.Inputs).Where(t => !t.IsSymbolic && !owned.Contains(t))
            .Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>().ToArray();
        // The output gets its own buffer; this tensor views it with the output's shape.
        var home = plan.Home(output);
        home.Storage.AddRef();
        Output = TensorScope.Release(new Tensor(Device, output.ShapeArray, home.Storage));
        _replay = new Replay(Device, program, () => optimizer?.Version ?? 0);
        _kernelSettings = Device.Kernels.MatMulSettings;
    }

    // The device's SGEMM settings the step was compiled under: its scratch is planned for them, and a
    // captured CUDA graph keeps the kernels they chose. A value, so the check on every Run allocates nothing.
    private readonly MatMulSettings _kernelSettings;

    /// <summary>The device the step runs on.</summary>
    public Device Device { get; }

    /// <summary>The step's output (the loss), overwritten by each Run; owned by the step.</summary>
    public Tensor Output { get; }

    /// <summary>Nodes the trace and differentiation recorded, before fusion.</summary>
    public int RecordedNodes { get; }

    /// <summary>Nodes after fusion (each a kernel, except reshapes).</summary>
    public int Nodes => _nodes.Count;

    /// <summary>Fused kernels generated for this step (elementwise chains, matmul epilogues, mapped sums).</summary>
    public int FusedKernels => _nodes.Count(n => n.Op.Kind == Prim.Fused || n.Op.Payload is MatMulEpilogue or SumMapOp or MatMulSumOp or MatMulPairOp or MatMulChainOp or MatMulRowsOp);

    /// <summary>Kernel launches per step (known after the first Run).</summary>
    public long LaunchesPerStep => _replay.LaunchesPerStep;

    /// <summary>Device bytes the step's planned buffers hold (allocated at compile time).</summary>
    public long PlannedBytes => _plan.Bytes;

    /// <summary>The buffers each row chain's stages read and write, by their homes in the plan (tests check none is shared).</summary>
    internal IEnumerable<IReadOnlyList<Tensor>> RowChainHomes =>
        RowChainTensors().Select(ts => (IReadOnlyList<Tensor>)ts.Select(_plan.Home).Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>().ToList());

    /// <summary>The symbolic values each row chain's stages touch, as many as the chain's homes must be (views share their root's).</summary>
    internal IEnumerable<int> RowChainValues => RowChainTensors().Select(ts => ts.Select(_plan.Root).Distinct(ReferenceEqualityComparer.Instance).Count());

    // The symbolic tensors each row chain's stages read and write.
    private IEnumerable<IEnumerable<Tensor>> RowChainTensors() => _nodes.Select(n => n.Op.Payload).OfType<MatMulRowsOp>().Select(r =>
        r.Stages.SelectMany(s => s.Inputs.Append(s.Output).Concat(s.Side == null ? [] : [s.Side])).Where(t => t.IsSymbolic));

    /// <summary>Whether replays are CUDA graph launches.</summary>
    public bool UsesCudaGraphs => _replay.UsesCudaGraphs;

    /// <summary>
    /// Whether each step runs as one persistent kernel (asked for with KernelHost.PersistentSteps before
    /// compiling; known after the first Run). Describe says why a step that asked does not.
    /// </summary>
    public bool IsPersistent => _replay.IsPersistent;

    /// <summary>The persistent kernel's program type (tests compile it to PTX).</summary>
    internal Type? PersistentProgramType => _replay.PersistentProgramType;

    /// <summary>The tensors the step reads but did not compute (inputs, parameters, constants).</summary>
    public IReadOnlyList<Tensor> Inputs => _inputs;

    /// <summary>The generated op structs by the kernel family they close: Map/Zip, MatMul (epilogue), MatMulPair (two epilogues), MatMulSum (epilogue, map, side), MatMulChain (epilogue, chain tail), MatMulRows (stages), SumMap (map, side).</summary>
    internal IEnumerable<(string Family, Type[] Ops)> GeneratedOps => _nodes.Select(n => n.Op.Payload switch
    {
        FusedOp f => (typeof(IBinaryOp).IsAssignableFrom(f.OpType) ? "Zip" : "Map", new[] { f.OpType }),
        MatMulEpilogue e => ("MatMul", new[] { e.OpType }),
        MatMulPairOp p => ("MatMulPair", new[] { p.First.OpType, p.Second.OpType }),
        MatMulChainOp c => ("MatMulChain", new[] { c.Head.OpType, c.TailType }),
        MatMulRowsOp r => ("MatMulRows", new[] { r.StagesType }),
        MatMulSumOp f => ("MatMulSum", new[] { f.Epilogue.OpType, f.Sum.Map.GetType(), (f.Sum.Side ?? new FirstOp()).GetType() }),
        SumMapOp s => ("SumMap", new[] { s.Map.GetType(), (s.Side ?? new FirstOp()).GetType() }),
        _ => ("", Array.Empty<Type>()),
    }).Where(g => g.Item1 != "");

    /// <summary>Enqueues one step and returns the device scalar it computes; reads nothing to the host.</summary>
    public Tensor Run()
    {
        lock (_gate)
        {
            CheckInputs();
            _replay.Run(1);
            return Output;
        }
    }

    /// <summary>
    /// Enqueues `steps` steps without host synchronisation and returns their outputs as a device tensor
    /// of shape [steps] (owned by the step, overwritten by the next Run with as many steps). Output then
    /// holds the last step's.
    /// </summary>
    /// <param name="steps">Number of steps, at least 1.</param>
    public Tensor Run(int steps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        if (_symbolicOutput.NumElements != 1)
            throw new InvalidOperationException($"Run(steps): the step's output has shape {Tensor.ShapeText(_symbolicOutput.ShapeArray)}; a history needs a scalar.");
        lock (_gate)
        {
            CheckInputs();
            if (!_histories.TryGetValue(steps, out var history))
                _histories[steps] = history = TensorScope.Release(Tensor.Zeros([steps], Device));
            _replay.Run(steps, history.View, Output.View);
            return history;
        }
    }

    /// <summary>
    /// Times each launch of the step, repeated `reps` times back to back (within one CUDA graph each,
    /// where the step uses graphs). The updates run too, so this advances the parameters: profile a
    /// step you do not train with.
    /// </summary>
    /// <param name="reps">Repetitions per launch.</param>
    public IReadOnlyList<(string Launch, double Microseconds)> Profile(int reps = 100)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(reps, 1);
        lock (_gate)
        {
            CheckInputs();
            return _replay.Profile(reps);
        }
    }

    /// <summary>Copies new data into one of the step's inputs (same shape and device as traced).</summary>
    /// <param name="input">The tensor the function read when it was compiled.</param>
    /// <param name="value">The new data.</param>
    public void SetInput(Tensor input, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(value);
        if (!_inputs.Contains(input))
            throw new GraphSignatureException($"SetInput: tensor {Tensor.ShapeText(input.ShapeArray)} on {input.Device.Name} is not an input of this compiled step.");
        if (!value.ShapeArray.SequenceEqual(input.ShapeArray) || !ReferenceEquals(value.Device, input.Device))
            throw new GraphSignatureException(
                $"SetInput: expected shape {Tensor.ShapeText(input.ShapeArray)} on {input.Device.Name}, got {Tensor.ShapeText(value.ShapeArray)} on {value.Device.Name}. " +
                "A compiled step has a fixed signature; compile another step for other shapes.");
        using (Autograd.NoGrad()) input.CopyFrom(value);
    }

    private void CheckInputs()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var settings = Device.Kernels.MatMulSettings;
        if (settings != _kernelSettings)
            throw new GraphSignatureException(
                $"Run: {Device.Name}'s kernel settings changed since the step was compiled (compiled under {_kernelSettings}; now {settings}). " +
                "Put them back, or compile the step again under the new settings.");
        foreach (var t in _inputs)
            if (t.IsDisposed)
                throw new GraphSignatureException(
                    $"Run: input tensor {Tensor.ShapeText(t.ShapeArray)} on {t.Device.Name} was disposed after the step was compiled; keep the step's inputs alive while it is used.");
    }

    /// <summary>Nodes, fused kernels, launches per step and the buffer plan, as text.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"compiled step on {Device}: {RecordedNodes} recorded nodes -> {Nodes} after fusion ({FusedKernels} fused kernels)");
        sb.AppendLine($"launches per step: {(LaunchesPerStep > 0 ? LaunchesPerStep.ToString() : "(known after the first Run)")}; CUDA graphs: {UsesCudaGraphs}");
        sb.AppendLine($"buffer plan: {_plan.Buffers.Count} buffers + scratch, {PlannedBytes:N0} bytes, allocated at compile time");
        if (_replay.PersistentText is { } persistent) sb.AppendLine(persistent);
        sb.AppendLine("program:");
        foreach (var i in _program) sb.AppendLine("  " + i.Text);
        return sb.ToString();
    }

    /// <summary>The graph in Graphviz dot: nodes are ops, edges are tensors (with shapes).</summary>
    public string ToDot()
    {
        var ids = new Dictionary<object, string>(ReferenceEqualityComparer.Instance);
        string Id(object o) => ids.TryGetValue(o, out var s) ? s : ids[o] = $"n{ids.Count}";
        var sb = new StringBuilder("digraph step {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
        var producer = new Dictionary<Tensor, Node>(ReferenceEqualityComparer.Instance);
        foreach (var n in _nodes)
        {
            producer[n.Output] = n;
            if (n.Side != null) producer[n.Side] = n;
        }
        foreach (var t in _inputs)
            sb.AppendLine($"  {Id(t)} [shape=ellipse, label=\"{(t.RequiresGrad ? "param" : "input")} {Tensor.ShapeText(t.ShapeArray)}\"];");
        foreach (var n in _nodes)
        {
            sb.AppendLine($"  {Id(n)} [label=\"{n.Op.ToString().Replace("\"", "'")}\"];");
            foreach (var x in n.Inputs)
            {
                object from = producer.TryGetValue(x, out var p) ? p : x;
                sb.AppendLine($"  {Id(from)} -> {Id(n)} [label=\"{Tensor.ShapeText(x.ShapeArray)}\"];");
            }
        }
        if (producer.TryGetValue(_symbolicOutput, out var last))
            sb.AppendLine($"  out [shape=ellipse, label=\"output {Tensor.ShapeText(_symbolicOutput.ShapeArray)}\"];\n  {Id(last)} -> out;");
        return sb.Append("}\n").ToString();
    }

    /// <summary>Frees every buffer the step owns (idempotent). The optimizer and inputs are the caller's.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            Device.Synchronize();
            _replay.Dispose();
            Output.Dispose();
            foreach (var h in _histories.Values) h.Dispose();
            _histories.Clear();
            foreach (var c in _constants) c.Dispose();
            _plan.Dispose();
        }
    }
}
