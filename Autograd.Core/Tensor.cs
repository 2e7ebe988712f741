// Tensor: a float32 array of rank 0 to 4 in a contiguous row-major device buffer, with the autograd
// fields (RequiresGrad, Grad, the node that made it). Ops live in the Tensor.*.cs files by theme.
using System.Collections.ObjectModel;
using ILGPU;

namespace AutogradNet;

/// <summary>A float32 tensor on a device, with PyTorch-style autograd.</summary>
public sealed partial class Tensor : IDisposable
{
    /// <summary>Largest rank supported.</summary>
    public const int MaxRank = 4;

    private readonly int[] _shape;
    // Null for a symbolic tensor; the lease is what a dropped tensor's finalization needs (StorageLease).
    private readonly StorageLease? _lease;
    private string? _releasedBy;
    private bool _requiresGrad;

    internal Tensor(Device device, int[] shape, Storage storage)
    {
        Device = device;
        _shape = shape;
        Shape = new ReadOnlyCollection<int>(shape);
        _lease = new StorageLease(storage);
        TensorScope.Adopt(this);
    }

    /// <summary>
    /// Opens a scope that disposes every tensor created on this thread until it is disposed, except
    /// those kept with <see cref="TensorScope.Keep(Tensor)"/>. Scopes nest.
    /// </summary>
    public static TensorScope Scope() => new();

    /// <summary>The scope that will dispose this tensor, if any.</summary>
    internal TensorScope? OwnerScope { get; set; }

    /// <summary>A symbolic tensor of a graph being compiled: a shape and a device, no data.</summary>
    internal Tensor(Device device, int[] shape)
    {
        Device = device;
        _shape = shape;
        Shape = new ReadOnlyCollection<int>(shape);
        IsSymbolic = true;
    }

    /// <summary>The extents, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<int> Shape { get; }

    /// <summary>Number of dimensions (0 to 4).</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements.</summary>
    public long NumElements => Elements(_shape);

    /// <summary>The device the data lives on.</summary>
    public Device Device { get; }

    /// <summary>Whether Dispose (or Backward, for an intermediate) released the data.</summary>
    public bool IsDisposed => _lease?.Storage == null;

    /// <summary>
    /// Whether gradients flow to this tensor. Set it on leaves (parameters); results of ops on such
    /// tensors require grad automatically while grad mode is on.
    /// </summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (!IsLeaf && !value)
                throw new AutogradException(
                    $"RequiresGrad: cannot turn off gradients of a non-leaf tensor {ShapeText(_shape)} made by {GradFn!.Op.Kind}. Use Detach() for a copy without history.");
            _requiresGrad = value;
        }
    }

    /// <summary>The accumulated gradient of a leaf after Backward; null until then.</summary>
    public Tensor? Grad { get; internal set; }

    /// <summary>True for tensors not produced by a recorded op (user-created, or made under NoGrad).</summary>
    public bool IsLeaf => GradFn == null;

    /// <summary>The recorded op that produced this tensor, when autograd is tracking it.</summary>
    internal Node? GradFn { get; set; }


    internal int[] ShapeArray => _shape;

    /// <summary>A value of a graph being compiled (see Graph.Compile): it has no data of its own.</summary>
    internal bool IsSymbolic { get; }

    internal ArrayView<float> View => Live("use").View.SubView(0, NumElements);

    /// <summary>
    /// The device buffer (row-major, NumElements long) for custom ILGPU kernels and benchmarks. Valid
    /// while this tensor lives; writes through it bypass autograd.
    /// </summary>
    public ArrayView<float> AsArrayView() => View;

    internal Storage Storage => Live("use");

    /// <summary>Extent of one dimension; negative dims count from the end.</summary>
    /// <param name="dim">The dimension.</param>
    public int Size(int dim) => _shape[NormalizeDim(dim, "Size")];

    /// <summary>Releases the device buffer (idempotent). The gradient, if any, is released too.</summary>
    public void Dispose()
    {
        Release(null);
        var g = Grad;
        Grad = null;
        g?.Dispose();
    }

    internal void Release(string? reason)
    {
        var s = _lease?.Take();
        if (s == null) return;
        _releasedBy = reason;
        s.Release();
    }

    internal Storage Live(string what)
    {
        var s = _lease?.Storage;
        if (s != null) return s;
        if (IsSymbolic)
            throw new GraphTraceException(
                $"Cannot {what} tensor {ShapeText(_shape)} inside a function being compiled: it has no value until the compiled step runs. " +
                "Return it from the function and read the result of step.Run() instead.");
        string why = _releasedBy ?? "it was disposed";
        throw new ObjectDisposedException(nameof(Tensor),
            $"Cannot {what} tensor {ShapeText(_shape)} on {Device.Name}: {why}. " +
            "Keep a tensor alive by not disposing it, or read it (Item/ToArray) before releasing it.");
    }

    internal static long Elements(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    internal static string ShapeText(ReadOnlySpan<int> shape) => $"[{string.Join(", ", shape.ToArray())}]";

    internal int NormalizeDim(int dim, string op)
    {
        int r = Rank;
        int d = dim < 0 ? dim + r : dim;
        if (d < 0 || d >= Math.Max(r, 1) || (r == 0))
            throw new ArgumentOutOfRangeException(nameof(dim),
                $"{op}: dimension {dim} is out of range for a tensor of shape {ShapeText(_shape)} (rank {r}); use -{r}..{r - 1}.");
        return d;
    }
}
