// In-place updates and autograd entry points. In-place ops never record history: they are for
// parameters inside Autograd.NoGrad() (the optimizer step, zeroing gradients).
using AutogradNet.Kernels;

namespace AutogradNet;

public sealed partial class Tensor
{
    /// <summary>Computes the gradients of this scalar with respect to every leaf that requires grad.</summary>
    /// <param name="gradient">dOut for a non-scalar tensor (same shape); null for a scalar.</param>
    /// <param name="retainGraph">Keep the graph and its intermediates for another Backward.</param>
    public void Backward(Tensor? gradient = null, bool retainGraph = false) =>
        Engine.Backward(this, gradient, retainGraph);

    /// <summary>this += alpha * other (other broadcasts to this shape).</summary>
    /// <param name="other">The increment.</param>
    /// <param name="alpha">Its factor.</param>
    public Tensor AddInPlace(Tensor other, float alpha = 1f) => AddInPlace("AddInPlace", other, alpha);

    private Tensor AddInPlace(string op, Tensor other, float alpha)
    {
        ArgumentNullException.ThrowIfNull(other);
        CheckInPlace(op, other);
        Shapes.Broadcast(op, other.ShapeArray, _shape, target: true);
        var h = Device.Host;
        lock (Device.Sync)
        {
            if (alpha == 1f) Elementwise.Zip(h, View, _shape, other.View, other.ShapeArray, View, _shape, new AddOp());
            else Elementwise.Zip(h, View, _shape, other.View, other.ShapeArray, View, _shape, new AxpyOp(alpha));
        }
        GC.KeepAlive(other);
        return this;
    }

    /// <summary>this -= alpha * other (PyTorch's sub_).</summary>
    /// <param name="other">The decrement.</param>
    /// <param name="alpha">Its factor.</param>
    public Tensor SubInPlace(Tensor other, float alpha = 1f) => AddInPlace("SubInPlace", other, -alpha);

    /// <summary>this *= s.</summary>
    /// <param name="s">The factor.</param>
    public Tensor MulInPlace(float s)
    {
        CheckInPlace("MulInPlace", null);
        lock (Device.Sync) Elementwise.Map(Device.Host, View, View, new ScaleOp(s));
        return this;
    }

    /// <summary>
    /// In place, as in PyTorch: <c>w -= learning_rate * w.Grad</c> (inside <c>Autograd.NoGrad()</c>)
    /// updates w's own buffer, so every reference to w sees it. Same as <see cref="SubInPlace"/>.
    /// </summary>
    /// <param name="other">The decrement (broadcasts to this shape).</param>
    public void operator -=(Tensor other) => SubInPlace(other);

    /// <summary>In place: this += other (broadcasts to this shape). Same as <see cref="AddInPlace(Tensor, float)"/>.</summary>
    /// <param name="other">The increment.</param>
    public void operator +=(Tensor other) => AddInPlace(other);

    /// <summary>In place: this *= s. Same as <see cref="MulInPlace"/>.</summary>
    /// <param name="s">The factor.</param>
    public void operator *=(float s) => MulInPlace(s);

    /// <summary>Sets every element to value.</summary>
    /// <param name="value">The value.</param>
    public Tensor FillInPlace(float value)
    {
        CheckInPlace("FillInPlace", null);
        lock (Device.Sync) Elementwise.Fill(Device.Host, View, value);
        return this;
    }

    /// <summary>Sets every element to 0 (PyTorch's zero_).</summary>
    public Tensor ZeroInPlace() => FillInPlace(0f);

    /// <summary>Copies other's elements into this tensor (same shape, same device).</summary>
    /// <param name="other">The source.</param>
    public Tensor CopyFrom(Tensor other)
    {
        CheckInPlace("CopyFrom", other);
        if (!other.ShapeArray.SequenceEqual(_shape))
            throw new ShapeMismatchException($"CopyFrom: source shape {ShapeText(other.ShapeArray)} differs from {ShapeText(_shape)}.");
        lock (Device.Sync) Elementwise.Map(Device.Host, other.View, View, new IdentityOp());
        return this;
    }

    /// <summary>A copy with its own buffer (no history).</summary>
    public Tensor Clone()
    {
        var t = Empty(_shape, Device, "Clone");
        lock (Device.Sync) Elementwise.Map(Device.Host, View, t.View, new IdentityOp());
        return t;
    }

    /// <summary>Zeroes the gradient in place, if there is one.</summary>
    public void ZeroGrad() => Grad?.ZeroInPlace();

    private void CheckInPlace(string op, Tensor? other)
    {
        if (Tracer.Current != null)
            throw new GraphTraceException(
                $"{op} inside a function being compiled: a compiled step updates parameters through its optimizer. " +
                "Pass optimizer: to Graph.Compile instead of updating tensors in the function.");
        Live(op);
        if (other != null)
        {
            other.Live(op);
            if (!ReferenceEquals(other.Device, Device))
                throw new DeviceMismatchException(
                    $"{op}: the tensor is on {Device.Name} but the operand on {other.Device.Name}. Put both on one device.");
        }
        if (Autograd.IsGradEnabled && (RequiresGrad || (other?.RequiresGrad ?? false)))
            throw new AutogradException(
                $"{op}: an in-place update of a tensor that requires grad ({ShapeText(_shape)}) would corrupt autograd's history. " +
                "Do it inside using (Autograd.NoGrad()) { ... }, as an optimizer step does.");
    }
}
