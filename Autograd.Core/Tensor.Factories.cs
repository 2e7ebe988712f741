// Creating tensors and reading them back to the host.
using System.Globalization;
using System.Text;
using ILGPU.Runtime;
using AutogradNet.Kernels;

namespace AutogradNet;

public sealed partial class Tensor
{
    private static ulong _seed = 0x5EED;
    private static long _offset;

    /// <summary>
    /// Seeds the generator behind <see cref="Randn"/> (PyTorch's manual_seed). The numbers depend only on
    /// the seed and how many were drawn before, never on the device.
    /// </summary>
    /// <param name="seed">The seed.</param>
    public static void ManualSeed(ulong seed)
    {
        Interlocked.Exchange(ref _seed, seed);
        Interlocked.Exchange(ref _offset, 0);
    }

    /// <summary>Standard normal samples (Philox generator, identical on every device for one seed).</summary>
    /// <param name="shape">The shape (rank 0 to 4).</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result is a parameter that collects gradients.</param>
    public static Tensor Randn(int[] shape, Device? device = null, bool requiresGrad = false)
    {
        var t = Empty(shape, device, "Randn");
        long n = t.NumElements;
        long start = Interlocked.Add(ref _offset, n) - n;
        lock (t.Device.Sync) RandomKernels.Randn(t.Device.Host, t.View, Volatile.Read(ref _seed), (ulong)start);
        t.RequiresGrad = requiresGrad;
        return t;
    }

    /// <summary>A tensor of zeros.</summary>
    /// <param name="shape">The shape (rank 0 to 4).</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result collects gradients.</param>
    public static Tensor Zeros(int[] shape, Device? device = null, bool requiresGrad = false) =>
        Full(shape, 0f, device, requiresGrad);

    /// <summary>A tensor of ones.</summary>
    /// <param name="shape">The shape (rank 0 to 4).</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result collects gradients.</param>
    public static Tensor Ones(int[] shape, Device? device = null, bool requiresGrad = false) =>
        Full(shape, 1f, device, requiresGrad);

    /// <summary>A tensor with every element equal to value.</summary>
    /// <param name="shape">The shape (rank 0 to 4).</param>
    /// <param name="value">The value.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result collects gradients.</param>
    public static Tensor Full(int[] shape, float value, Device? device = null, bool requiresGrad = false)
    {
        var t = Empty(shape, device, "Full");
        lock (t.Device.Sync) Elementwise.Fill(t.Device.Host, t.View, value);
        t.RequiresGrad = requiresGrad;
        return t;
    }

    /// <summary>A scalar (rank-0) tensor.</summary>
    /// <param name="value">The value.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    public static Tensor Scalar(float value, Device? device = null) => Full([], value, device);

    /// <summary>Copies host data into a new tensor of the given shape (row-major).</summary>
    /// <param name="data">The elements, row-major.</param>
    /// <param name="shape">The shape; a 1-D shape of data's length when null.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result collects gradients.</param>
    public static Tensor FromArray(float[] data, int[]? shape = null, Device? device = null, bool requiresGrad = false)
    {
        ArgumentNullException.ThrowIfNull(data);
        shape ??= [data.Length];
        if (Elements(shape) != data.Length)
            throw new ShapeMismatchException(
                $"FromArray: {data.Length} values cannot fill shape {ShapeText(shape)} ({Elements(shape)} elements). Pass a shape whose product is {data.Length}.");
        var t = Empty(shape, device, "FromArray");
        if (data.Length > 0) lock (t.Device.Sync) t.View.CopyFromCPU(t.Device.Host.Stream, data);
        t.RequiresGrad = requiresGrad;
        return t;
    }

    /// <summary>Copies a rank-2 host array into a new (rows, cols) tensor.</summary>
    /// <param name="data">The matrix.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="requiresGrad">Whether the result collects gradients.</param>
    public static Tensor FromArray(float[,] data, Device? device = null, bool requiresGrad = false)
    {
        ArgumentNullException.ThrowIfNull(data);
        int r = data.GetLength(0), c = data.GetLength(1);
        var flat = new float[r * c];
        Buffer.BlockCopy(data, 0, flat, 0, flat.Length * sizeof(float));
        return FromArray(flat, [r, c], device, requiresGrad);
    }

    /// <summary>Copies the elements to a host array (row-major); waits for pending kernels.</summary>
    public float[] ToArray()
    {
        Tracer.ThrowIfTracing("read", this);
        Live("read");
        var view = View;
        var result = new float[NumElements];
        lock (Device.Sync)
        {
            if (result.Length > 0) view.CopyToCPU(Device.Host.Stream, result);
            Device.Host.Synchronize();
        }
        return result;
    }

    /// <summary>The value of a one-element tensor (PyTorch's item()); waits for pending kernels.</summary>
    public float Item()
    {
        if (NumElements != 1)
            throw new ShapeMismatchException(
                $"Item: only a one-element tensor has a single value, this one has shape {ShapeText(_shape)}. Use ToArray(), or Sum() first.");
        return ToArray()[0];
    }

    /// <summary>A new tensor sharing this one's data, cut off from autograd (no history, no grad).</summary>
    public Tensor Detach()
    {
        var s = Live("detach");
        s.AddRef();
        return new Tensor(Device, (int[])_shape.Clone(), s);
    }

    /// <summary>Shape, device and the first values, e.g. <c>Tensor[64, 10] on cpu [0.12, -1.3, ...]</c>.</summary>
    public override string ToString()
    {
        if (IsSymbolic || Tracer.Current != null) return $"Tensor{ShapeText(_shape)} on {Device.Name} (traced)";
        var sb = new StringBuilder();
        sb.Append("Tensor").Append(ShapeText(_shape)).Append(" on ").Append(Device.Name);
        if (RequiresGrad) sb.Append(", requiresGrad");
        if (GradFn != null) sb.Append(", gradFn=").Append(GradFn.Op.Kind);
        if (IsDisposed) return sb.Append(" (released)").ToString();
        var data = ToArray();
        const int preview = 8;
        sb.Append(" [");
        for (int i = 0; i < Math.Min(preview, data.Length); i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(data[i].ToString("G5", CultureInfo.InvariantCulture));
        }
        if (data.Length > preview) sb.Append(", ...");
        return sb.Append(']').ToString();
    }

    /// <summary>A new uninitialised tensor (contents are whatever the buffer held).</summary>
    internal static Tensor Empty(int[] shape, Device? device, string op)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length > MaxRank)
            throw new ShapeMismatchException($"{op}: shape {ShapeText(shape)} has rank {shape.Length}; at most {MaxRank} is supported.");
        foreach (var d in shape)
            if (d < 0) throw new ShapeMismatchException($"{op}: shape {ShapeText(shape)} has a negative extent.");
        long n = Elements(shape);
        if (n > int.MaxValue)
            throw new ShapeMismatchException($"{op}: shape {ShapeText(shape)} has {n} elements; at most {int.MaxValue} are supported.");
        device ??= Device.Default;
        return new Tensor(device, (int[])shape.Clone(), device.Allocator.Take(n));
    }
}
