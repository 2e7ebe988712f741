// Applying a primitive: check the operands, infer the shape, allocate, run the kernel, and record a
// node for backward when grad mode is on and an input requires grad. Every public op ends here.
namespace AutogradNet;

internal static class Dispatch
{
    public static Tensor Apply(OpSpec op, params Tensor[] inputs)
    {
        var device = inputs[0].Device;
        var tracer = Tracer.Current;
        foreach (var t in inputs)
        {
            if (tracer == null || !t.IsSymbolic) t.Live(op.Kind.ToString());
            if (!ReferenceEquals(t.Device, device))
                throw new DeviceMismatchException(
                    $"{op.Kind}: operands are on different devices ({device.Name} and {t.Device.Name}). " +
                    "Create both tensors on one device (the device: argument, or Device.Default).");
        }
        var shape = Shapes.Infer(op, inputs);
        if (tracer != null) return tracer.Record(op, inputs, new Tensor(device, shape));
        Tensor y;
        if (op.Kind == Prim.Reshape)
        {
            // A reshape of a contiguous buffer is a view: share the storage.
            var s = inputs[0].Storage;
            s.AddRef();
            y = new Tensor(device, shape, s, fromOp: true);
        }
        else
        {
            y = Tensor.Empty(shape, device, op.Kind.ToString(), fromOp: true);
            Executor.Run(op, inputs, y);
            GC.KeepAlive(inputs);
        }
        if (Autograd.IsGradEnabled && inputs.Any(t => t.RequiresGrad))
        {
            y.GradFn = new Node(op, inputs, y);
            y.RequiresGrad = true;
        }
        return y;
    }
}
