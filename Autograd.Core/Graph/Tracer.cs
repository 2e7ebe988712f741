// The trace hook: while a Tracer is current on a thread, every primitive applied there (forward ops,
// and during differentiation the gradient rules) is recorded as a Node on symbolic tensors instead
// of running. Host reads and in-place updates are refused while tracing, so nothing is baked in.
namespace AutogradNet;

internal sealed class Tracer : IDisposable
{
    [ThreadStatic] private static Tracer? _current;
    private readonly Tracer? _previous;

    public Tracer()
    {
        _previous = _current;
        _current = this;
    }

    public static Tracer? Current => _current;

    /// <summary>Every recorded node, in program order.</summary>
    public List<Node> Nodes { get; } = [];

    public Tensor Record(OpSpec op, Tensor[] inputs, Tensor output)
    {
        var node = new Node(op, inputs, output);
        Nodes.Add(node);
        if (Autograd.IsGradEnabled && inputs.Any(t => t.RequiresGrad))
        {
            output.GradFn = node;
            output.RequiresGrad = true;
        }
        return output;
    }

    public static void ThrowIfTracing(string what, Tensor t)
    {
        if (_current == null) return;
        throw new GraphTraceException(
            $"Cannot {what} tensor {Tensor.ShapeText(t.ShapeArray)} (Item, ToArray or ToString) inside a function being compiled: " +
            "the value would be baked into the graph as a constant. Return the tensor from the function and read step.Run()'s result.");
    }

    public void Dispose() => _current = _previous;
}
