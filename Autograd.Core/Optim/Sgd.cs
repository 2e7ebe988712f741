// Stochastic gradient descent: p -= lr * p.Grad, one fused in-place kernel per parameter.
namespace AutogradNet.Optim;

/// <summary>Plain SGD over a set of parameters.</summary>
public sealed class Sgd
{
    private readonly Tensor[] _parameters;

    /// <summary>Creates the optimizer.</summary>
    /// <param name="parameters">Leaf tensors with RequiresGrad.</param>
    /// <param name="lr">The learning rate.</param>
    public Sgd(IEnumerable<Tensor> parameters, float lr)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToArray();
        foreach (var p in _parameters)
            if (!p.RequiresGrad || !p.IsLeaf)
                throw new ArgumentException($"Sgd: every parameter must be a leaf with RequiresGrad; got {p}.", nameof(parameters));
        if (!(lr > 0) || float.IsInfinity(lr)) throw new ArgumentOutOfRangeException(nameof(lr), $"Sgd: learning rate must be positive and finite, got {lr}.");
        LearningRate = lr;
    }

    /// <summary>The learning rate.</summary>
    public float LearningRate { get; set; }

    /// <summary>The parameters updated by Step.</summary>
    public IReadOnlyList<Tensor> Parameters => _parameters;

    /// <summary>p -= lr * p.Grad for each parameter that has a gradient.</summary>
    public void Step()
    {
        using var _ = Autograd.NoGrad();
        foreach (var p in _parameters)
            if (p.Grad != null) p.SubInPlace(p.Grad, LearningRate);
    }

    /// <summary>Zeroes every parameter's gradient in place.</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters) p.ZeroGrad();
    }
}
