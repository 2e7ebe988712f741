// Pass 1, trace: run the user's function once with a Tracer current. Every primitive becomes a Node
// on symbolic tensors; tensors from outside (inputs, parameters, constants) are the graph's inputs.
namespace AutogradNet;

internal static class Trace
{
    public static (Tensor Output, List<Node> Nodes, Tracer Tracer) Run(Func<Tensor> fn)
    {
        var tracer = new Tracer();
        try
        {
            Tensor output;
            using (Autograd.EnableGrad()) output = fn();
            if (output is null)
                throw new GraphTraceException("Graph.Compile: the function returned null; return the loss tensor.");
            if (!output.IsSymbolic)
                throw new GraphTraceException(
                    $"Graph.Compile: the function returned tensor {Tensor.ShapeText(output.ShapeArray)} that no op inside it computed; return the result of the ops.");
            return (output, tracer.Nodes, tracer);
        }
        catch
        {
            tracer.Dispose();
            throw;
        }
    }
}
