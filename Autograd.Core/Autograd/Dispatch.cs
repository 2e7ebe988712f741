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
            y = new Tensor(device, shape, s);
        }
        else
        {
            y = Tensor.Empty(shape, device, op.Kind.ToString());
            lock (device.Sync) Executor.Run(op, inputs, y);
            GC.KeepAlive(inputs);
            if (Autograd.IsAnomalyDetectionEnabled) CheckFinite(op, inputs, y);
        }
        if (Autograd.IsGradEnabled && inputs.Any(t => t.RequiresGrad))
        {
            y.GradFn = new Node(op, inputs, y);
            y.RequiresGrad = true;
        }
        return y;
    }

    private static void CheckFinite(OpSpec op, Tensor[] inputs, Tensor y)
    {
        if (y.ToArray().All(float.IsFinite)) return;
        string shapes = string.Join(" and ", inputs.Select(t => Tensor.ShapeText(t.ShapeArray)));
        for (int i = 0; i < inputs.Length; i++)
            if (!inputs[i].ToArray().All(float.IsFinite))
                throw new AnomalyException(
                    $"{op}: input {i} {Tensor.ShapeText(inputs[i].ShapeArray)} already holds NaN or Inf that no checked op produced; it came in from outside (FromArray, an in-place update, or an op run before DetectAnomaly).");
        var bad = y.ToArray().First(v => !float.IsFinite(v));
        throw new AnomalyException(
            $"{op} produced {bad.ToString(System.Globalization.CultureInfo.InvariantCulture)} from finite inputs of shape {shapes} (output {Tensor.ShapeText(y.ShapeArray)}). " +
            "This is the first op of the computation to do so; check its inputs' range (log of 0, overflow of exp, division by 0).");
    }
}
