// Stochastic gradient descent, optionally with momentum (PyTorch's formulation: v = mu v + g,
// p -= lr v). One fused kernel per parameter.
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet.Optim;

/// <summary>SGD, optionally with momentum.</summary>
public sealed class Sgd : Optimizer
{
    private readonly Tensor?[] _velocity;

    /// <summary>Creates the optimizer.</summary>
    /// <param name="parameters">Leaf tensors with RequiresGrad.</param>
    /// <param name="lr">The learning rate.</param>
    /// <param name="momentum">Momentum factor (0: plain SGD).</param>
    public Sgd(IEnumerable<Tensor> parameters, float lr, float momentum = 0f) : base(parameters, lr)
    {
        if (momentum < 0 || !float.IsFinite(momentum))
            throw new ArgumentOutOfRangeException(nameof(momentum), $"Sgd: momentum must be >= 0, got {momentum}.");
        Momentum = momentum;
        _velocity = new Tensor?[Parameters.Count];
    }

    /// <summary>Creates plain SGD over the given parameters.</summary>
    /// <param name="lr">The learning rate.</param>
    /// <param name="parameters">Leaf tensors with RequiresGrad.</param>
    public Sgd(float lr, params Tensor[] parameters) : this(parameters, lr) { }

    /// <summary>The momentum factor.</summary>
    public float Momentum { get; }

    internal override bool IsPlainStep => Momentum == 0f;

    internal override void Prepare()
    {
        if (Momentum == 0f) return;
        for (int i = 0; i < _velocity.Length; i++) _velocity[i] ??= StateLike(i);
    }

    internal override void Update(KernelHost host, int i, ArrayView<float> g)
    {
        var p = Parameters[i];
        if (Momentum == 0f)
        {
            Elementwise.Zip(host, p.View, p.ShapeArray, g, p.ShapeArray, p.View, p.ShapeArray, new AxpyOp(-LearningRate));
            return;
        }
        var v = _velocity[i]!;
        OptimizerKernels.Momentum(host, p.View, g, v.View, LearningRate, Momentum);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var v in _velocity) v?.Dispose();
        base.Dispose();
    }
}
