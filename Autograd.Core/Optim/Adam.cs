// Adam (Kingma and Ba, 2015) with bias correction; the step count is a device scalar, so compiled
// replays need nothing from the host. One fused kernel per parameter, plus the counter.
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet.Optim;

/// <summary>The Adam optimizer.</summary>
public sealed class Adam : Optimizer
{
    private readonly Tensor?[] _m, _v;
    private readonly Tensor _t;

    /// <summary>Creates the optimizer.</summary>
    /// <param name="parameters">Leaf tensors with RequiresGrad.</param>
    /// <param name="lr">The learning rate.</param>
    /// <param name="beta1">First-moment decay.</param>
    /// <param name="beta2">Second-moment decay.</param>
    /// <param name="eps">Denominator guard.</param>
    public Adam(IEnumerable<Tensor> parameters, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f)
        : base(parameters, lr)
    {
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(beta1), $"Adam: betas must be in [0, 1), got {beta1} and {beta2}.");
        Beta1 = beta1; Beta2 = beta2; Eps = eps;
        _m = new Tensor?[Parameters.Count];
        _v = new Tensor?[Parameters.Count];
        _t = TensorScope.Release(Tensor.Zeros([1], Parameters[0].Device));
    }

    /// <summary>First-moment decay.</summary>
    public float Beta1 { get; }

    /// <summary>Second-moment decay.</summary>
    public float Beta2 { get; }

    /// <summary>Denominator guard.</summary>
    public float Eps { get; }

    internal override void Prepare()
    {
        for (int i = 0; i < _m.Length; i++)
        {
            _m[i] ??= StateLike(i);
            _v[i] ??= StateLike(i);
        }
    }

    internal override void BeginStep(KernelHost host) => OptimizerKernels.Count(host, _t.View);

    internal override void Update(KernelHost host, int i, ArrayView<float> g)
    {
        var p = Parameters[i];
        var m = _m[i]!;
        var v = _v[i]!;
        OptimizerKernels.Adam(host, p.View, g, m.View, v.View, _t.View, LearningRate, Beta1, Beta2, Eps);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var t in _m.Concat(_v)) t?.Dispose();
        _t.Dispose();
        base.Dispose();
    }
}
