// Random test data (never zeros), tolerant comparison, and the device under test.
using FluentAssertions;

namespace AutogradNet.Tests.Support;

internal static class TestData
{
    /// <summary>The device the suite runs on: AUTOGRAD_DEVICE, else the best one here.</summary>
    public static Device Device => Device.Default;

    public static bool OnGpu => Device.Kind != DeviceKind.Cpu;

    public static float[] Normal(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - r.NextDouble(), u2 = r.NextDouble();
            x[i] = scale * (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    /// <summary>Uniform in [lo, hi), for ops with a restricted domain (log, pow of negatives).</summary>
    public static float[] Uniform(int n, int seed, float lo, float hi)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * (float)r.NextDouble()).ToArray();
    }

    public static int Count(int[] shape)
    {
        int n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    /// <summary>The seed program's tensors (64, 1000, 100, 10) drawn with Randn from a seed.</summary>
    public static (AutogradNet.Tensor X, AutogradNet.Tensor Y, AutogradNet.Tensor W1, AutogradNet.Tensor W2) SeedNet(ulong seed)
    {
        AutogradNet.Tensor.ManualSeed(seed);
        return (AutogradNet.Tensor.Randn([64, 1000], Device), AutogradNet.Tensor.Randn([64, 10], Device),
                AutogradNet.Tensor.Randn([1000, 100], Device, requiresGrad: true), AutogradNet.Tensor.Randn([100, 10], Device, requiresGrad: true));
    }

    /// <summary>Graph.Compile with fusion on, or off as AUTOGRAD_FUSE=0 turns it off (read while compiling).</summary>
    public static CompiledStep Compile(Func<AutogradNet.Tensor> fn, AutogradNet.Optim.Optimizer optimizer, bool fuse)
    {
        using var env = new EnvironmentScope("AUTOGRAD_FUSE");
        env.Set(fuse ? null : "0");
        return Graph.Compile(fn, optimizer);
    }

    public static Tensor Tensor(int[] shape, int seed, bool requiresGrad = false) =>
        AutogradNet.Tensor.FromArray(Normal(Count(shape), seed), shape, Device, requiresGrad);

    /// <summary>|actual - expected| &lt;= atol + rtol * |expected| elementwise, with the first failure named.</summary>
    public static void ShouldMatch(float[] actual, double[] expected, double rtol, double atol, string what)
    {
        actual.Length.Should().Be(expected.Length, what);
        for (int i = 0; i < actual.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (!(diff <= atol + rtol * Math.Abs(expected[i])))
                throw new Xunit.Sdk.XunitException(
                    $"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (diff {diff:E3} > {atol} + {rtol} * |expected|)");
        }
    }

    /// <summary>Relative L2 error ||a - e|| / ||e||.</summary>
    public static double RelativeError(float[] actual, double[] expected)
    {
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }
        return Math.Sqrt(num) / Math.Max(Math.Sqrt(den), 1e-30);
    }
}
