// Reductions: Sum is the primitive; Mean is Sum scaled.
namespace AutogradNet;

public sealed partial class Tensor
{
    /// <summary>Sum of all elements, as a scalar (rank-0) tensor.</summary>
    public Tensor Sum() => Sum(Enumerable.Range(0, Rank).ToArray(), keepDim: false);

    /// <summary>Sum along one dimension.</summary>
    /// <param name="dim">The dimension (negative counts from the end).</param>
    /// <param name="keepDim">Keep the summed dimension with extent 1.</param>
    public Tensor Sum(int dim, bool keepDim = false) => Sum([dim], keepDim);

    /// <summary>Sum along several dimensions.</summary>
    /// <param name="dims">The dimensions (negative counts from the end), each at most once.</param>
    /// <param name="keepDim">Keep the summed dimensions with extent 1.</param>
    public Tensor Sum(int[] dims, bool keepDim = false)
    {
        ArgumentNullException.ThrowIfNull(dims);
        var axes = dims.Select(d => NormalizeDim(d, "Sum")).Distinct().Order().ToArray();
        if (axes.Length != dims.Length)
            throw new ArgumentException($"Sum: dimensions [{string.Join(", ", dims)}] repeat a dimension of shape {ShapeText(_shape)}.");
        Tune.BeforeEagerSum(this, axes);
        return Apply(new OpSpec(Prim.Sum, Ints: axes, Flag1: keepDim), this);
    }

    /// <summary>Mean of all elements, as a scalar tensor.</summary>
    public Tensor Mean()
    {
        using var s = Sum();
        return s.Mul(1f / Math.Max(1, NumElements));
    }

    /// <summary>Mean along one dimension.</summary>
    /// <param name="dim">The dimension (negative counts from the end).</param>
    /// <param name="keepDim">Keep the dimension with extent 1.</param>
    public Tensor Mean(int dim, bool keepDim = false)
    {
        int d = NormalizeDim(dim, "Mean");
        using var s = Sum([d], keepDim);
        return s.Mul(1f / Math.Max(1, _shape[d]));
    }
}
