// The optimizer contract: an eager Step over the parameters' Grad, and the same update bound to
// given gradient buffers for a compiled step. Both run the same kernels.
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet.Optim;

/// <summary>Updates a set of parameters from their gradients.</summary>
public abstract class Optimizer : IDisposable
{
    private readonly Tensor[] _parameters;

    /// <summary>Checks and keeps the parameters.</summary>
    /// <param name="parameters">Leaf tensors with RequiresGrad.</param>
    /// <param name="lr">The learning rate.</param>
    protected Optimizer(IEnumerable<Tensor> parameters, float lr)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToArray();
        string name = GetType().Name;
        if (_parameters.Length == 0) throw new ArgumentException($"{name}: no parameters given.", nameof(parameters));
        foreach (var p in _parameters)
            if (!p.RequiresGrad || !p.IsLeaf)
                throw new ArgumentException($"{name}: every parameter must be a leaf with RequiresGrad; got {p}.", nameof(parameters));
        LearningRate = lr;
    }

    private float _lr;

    /// <summary>The learning rate. A compiled step picks up a new value at its next Run.</summary>
    public float LearningRate
    {
        get => _lr;
        set
        {
            if (!(value > 0) || float.IsInfinity(value))
                throw new ArgumentOutOfRangeException(nameof(LearningRate), $"{GetType().Name}: learning rate must be positive and finite, got {value}.");
            _lr = value;
            Interlocked.Increment(ref _version);
        }
    }

    private long _version;

    /// <summary>Changes with every assignment of a hyperparameter: a captured CUDA graph older than it is stale.</summary>
    internal long Version => Interlocked.Read(ref _version);

    /// <summary>Whether the update is exactly p -= lr * g with no state (so a compiled step may fuse it into g's producer).</summary>
    internal virtual bool IsPlainStep => false;

    /// <summary>The parameters this optimizer updates.</summary>
    public IReadOnlyList<Tensor> Parameters => _parameters;

    /// <summary>Updates every parameter that has a gradient (under NoGrad).</summary>
    public void Step()
    {
        using var _ = Autograd.NoGrad();
        var device = _parameters[0].Device;
        lock (device.Sync)
        {
            Prepare();
            BeginStep(device.Host);
            for (int i = 0; i < _parameters.Length; i++)
                if (_parameters[i].Grad is { } g) Update(device.Host, i, g.View);
        }
    }

    /// <summary>Zeroes every parameter's gradient in place.</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters) p.ZeroGrad();
    }

    /// <summary>
    /// Makes the optimizer's state if it does not exist yet: the one place it is made, by the first
    /// Step, or by Graph.Compile so that a compiled step allocates everything before it runs.
    /// </summary>
    internal virtual void Prepare() { }

    /// <summary>Work done once per step before the per-parameter updates (Adam counts steps).</summary>
    internal virtual void BeginStep(KernelHost host) { }

    /// <summary>Launches the update of parameter i from the gradient buffer g.</summary>
    internal abstract void Update(KernelHost host, int i, ArrayView<float> g);

    /// <summary>Frees the optimizer's state buffers.</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>A zero-filled state buffer shaped like parameter i.</summary>
    internal Tensor StateLike(int i) => TensorScope.Release(Tensor.Zeros(_parameters[i].ShapeArray, _parameters[i].Device));
}
