// Every kernel against its double-precision host twin, at awkward shapes, on random data, with the
// output poisoned (NaN) before the kernel writes it.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests : IClassFixture<SimulatorsReleased>
{
    private static KernelHost Host => TestData.Device.Host;

    // The hosts a kernel test launches on: the device's, and where that one runs host loops (the "cpu"
    // device, KernelHost.HostLoops) the same device launching the ILGPU kernels, so both are checked.
    internal static KernelHost[] Hosts() => Host.HostLoops ? [Host, Host.WithHostLoops(false)] : [Host];

    internal static string Name(KernelHost host) => host.HostLoops ? "host loops" : "kernels";

    private static MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] data)
    {
        var b = Host.Accelerator.Allocate1D<float>(Math.Max(1, data.Length));
        if (data.Length > 0) b.View.SubView(0, data.Length).CopyFromCPU(Host.Stream, data);
        return b;
    }

    private static MemoryBuffer1D<float, Stride1D.Dense> Poisoned(int n) =>
        Upload(Enumerable.Repeat(float.NaN, Math.Max(1, n)).ToArray());

    private static float[] Download(MemoryBuffer1D<float, Stride1D.Dense> b, int n)
    {
        var r = new float[n];
        if (n > 0) b.View.SubView(0, n).CopyToCPU(Host.Stream, r);
        Host.Synchronize();
        return r;
    }

    public static TheoryData<string, int> UnaryCases()
    {
        var d = new TheoryData<string, int>();
        foreach (var op in new[] { "neg", "exp", "log", "tanh", "sigmoid", "clamp", "relu", "pow2", "pow3", "pow-1", "pow0.5", "scale", "addscalar", "identity" })
            foreach (var n in new[] { 1, 7, 33, 65, 130, 4099 })
                d.Add(op, n);
        return d;
    }

    [Theory]
    [MemberData(nameof(UnaryCases))]
    public void Map_matches_host_twin(string op, int n)
    {
        var x = op is "log" or "pow0.5" ? TestData.Uniform(n, n, 0.05f, 4f) : TestData.Normal(n, n + 1, 2f);
        if (op == "tanh") x = x.Select((v, i) => i % 3 == 0 ? v * 0.03f : v).ToArray(); // both branches
        Func<double, double> f = op switch
        {
            "neg" => v => -v,
            "exp" => Math.Exp,
            "log" => Math.Log,
            "tanh" => Math.Tanh,
            "sigmoid" => v => 1 / (1 + Math.Exp(-v)),
            "clamp" => v => Math.Clamp(v, -0.5, 0.7),
            "relu" => v => Math.Max(v, 0),
            "pow2" => v => v * v,
            "pow3" => v => v * v * v,
            "pow-1" => v => 1 / v,
            "pow0.5" => Math.Sqrt,
            "scale" => v => v * 1.7,
            "addscalar" => v => v - 0.3,
            _ => v => v,
        };
        using var xb = Upload(x);
        var xv = xb.View.SubView(0, n);
        var expected = x.Select(v => f(v)).ToArray();
        foreach (var host in Hosts())
        {
        using var yb = Poisoned(n);
        var yv = yb.View.SubView(0, n);
        switch (op)
        {
            case "neg": Elementwise.Map(host, xv, yv, new NegOp()); break;
            case "exp": Elementwise.Map(host, xv, yv, new ExpOp()); break;
            case "log": Elementwise.Map(host, xv, yv, new LogOp()); break;
            case "tanh": Elementwise.Map(host, xv, yv, new TanhOp()); break;
            case "sigmoid": Elementwise.Map(host, xv, yv, new SigmoidOp()); break;
            case "clamp": Elementwise.Map(host, xv, yv, new ClampOp(-0.5f, 0.7f)); break;
            case "relu": Elementwise.Map(host, xv, yv, new ClampOp(0f, float.PositiveInfinity)); break;
            case "pow2": Elementwise.Map(host, xv, yv, new PowOp(2f)); break;
            case "pow3": Elementwise.Map(host, xv, yv, new PowOp(3f)); break;
            case "pow-1": Elementwise.Map(host, xv, yv, new PowOp(-1f)); break;
            case "pow0.5": Elementwise.Map(host, xv, yv, new PowOp(0.5f)); break;
            case "scale": Elementwise.Map(host, xv, yv, new ScaleOp(1.7f)); break;
            case "addscalar": Elementwise.Map(host, xv, yv, new AddScalarOp(-0.3f)); break;
            default: Elementwise.Map(host, xv, yv, new IdentityOp()); break;
        }
        TestData.ShouldMatch(Download(yb, n), expected, 2e-5, 1e-6, $"{op} n={n}, {Name(host)}");
        }
    }

    public static TheoryData<string, int[], int[]> BinaryCases()
    {
        var shapes = new (int[], int[])[]
        {
            ([7, 33], [7, 33]), ([7, 33], [33]), ([7, 1], [1, 33]), ([2, 3, 4, 5], [3, 1, 5]),
            ([1], [65]), ([], [7]), ([130, 65], [130, 1]), ([1, 1, 1, 1], [1]),
        };
        var d = new TheoryData<string, int[], int[]>();
        foreach (var op in new[] { "add", "mul", "div", "axpy", "clampgrad", "tanhgrad", "sigmoidgrad", "powgrad" })
            foreach (var (a, b) in shapes) d.Add(op, a, b);
        return d;
    }

    [Theory]
    [MemberData(nameof(BinaryCases))]
    public void Zip_matches_host_twin_with_broadcasting(string op, int[] aShape, int[] bShape)
    {
        int na = TestData.Count(aShape), nb = TestData.Count(bShape);
        var a = TestData.Normal(na, na * 3 + 1);
        var b = op == "div" ? TestData.Uniform(nb, nb + 5, 0.5f, 2f) : TestData.Normal(nb, nb * 7 + 2);
        var cShape = Reference.BroadcastShape(aShape, bShape);
        int nc = TestData.Count(cShape);
        Func<double, double, double> f = op switch
        {
            "add" => (p, q) => p + q,
            "mul" => (p, q) => p * q,
            "div" => (p, q) => p / q,
            "axpy" => (p, q) => p - 0.25 * q,
            "clampgrad" => (p, q) => p > -0.5 && p < 0.5 ? q : 0,
            "tanhgrad" => (p, q) => q * (1 - p * p),
            "sigmoidgrad" => (p, q) => q * p * (1 - p),
            _ => (p, q) => q * 3 * p * p,
        };
        using var ab = Upload(a);
        using var bb = Upload(b);
        var av = ab.View.SubView(0, na);
        var bv = bb.View.SubView(0, nb);
        var expected = Reference.Zip(Reference.ToDouble(a), aShape, Reference.ToDouble(b), bShape, f, out _);
        foreach (var host in Hosts())
        {
        using var cb = Poisoned(nc);
        var cv = cb.View.SubView(0, nc);
        switch (op)
        {
            case "add": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new AddOp()); break;
            case "mul": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new MulOp()); break;
            case "div": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new DivOp()); break;
            case "axpy": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new AxpyOp(-0.25f)); break;
            case "clampgrad": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new ClampGradOp(-0.5f, 0.5f)); break;
            case "tanhgrad": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new TanhGradOp()); break;
            case "sigmoidgrad": Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new SigmoidGradOp()); break;
            default: Elementwise.Zip(host, av, aShape, bv, bShape, cv, cShape, new PowGradOp(3f)); break;
        }
        TestData.ShouldMatch(Download(cb, nc), expected, 2e-5, 1e-6, $"{op} {string.Join('x', aShape)} with {string.Join('x', bShape)}, {Name(host)}");
        }
    }

    [Theory]
    [InlineData(new[] { 33 }, new[] { 7, 33 })]
    [InlineData(new[] { 7, 1 }, new[] { 7, 65 })]
    [InlineData(new int[0], new[] { 2, 3, 5 })]
    [InlineData(new[] { 1, 4, 1 }, new[] { 3, 2, 4, 5 })]
    public void MapBroadcast_expands_like_pytorch(int[] xShape, int[] yShape)
    {
        int nx = TestData.Count(xShape), ny = TestData.Count(yShape);
        var x = TestData.Normal(nx, 11);
        using var xb = Upload(x);
        var expected = Enumerable.Range(0, ny).Select(i => (double)x[Reference.BroadcastIndex(i, yShape, xShape)]).ToArray();
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(ny);
            Elementwise.MapBroadcast(host, xb.View.SubView(0, nx), xShape, yb.View.SubView(0, ny), yShape, new IdentityOp());
            TestData.ShouldMatch(Download(yb, ny), expected, 0, 0, $"expand, {Name(host)}");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(33)]
    [InlineData(130)]
    [InlineData(4097)]
    [InlineData(100_003)]
    public void SumAll_matches_host_twin(int n)
    {
        var x = TestData.Normal(n, n);
        using var xb = Upload(x);
        double expected = x.Sum(v => (double)v);
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(1);
            using var scratch = Poisoned(Reduce.SumAllScratch(host));
            Reduce.SumAll(host, xb.View.SubView(0, n), yb.View.SubView(0, 1), scratch.View);
            TestData.ShouldMatch(Download(yb, 1), [expected], 1e-5, 1e-5 * Math.Sqrt(n), $"sum of {n}, {Name(host)}");
        }
    }

    // y = alpha * sums + beta * y, the form a compiled SGD step uses to update a bias from its
    // gradient's batch sum: a middle run, a trailing run (group per row on wide groups) and scattered axes.
    [Theory]
    [InlineData(new[] { 33, 130 }, new[] { 0 })]
    [InlineData(new[] { 7, 4099 }, new[] { 1 })]
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 0, 2 })]
    public void SumAxes_scales_and_accumulates(int[] shape, int[] axes)
    {
        int n = TestData.Count(shape);
        var x = TestData.Normal(n, n + 3);
        var sums = Reference.SumAxes(Reference.ToDouble(x), shape, axes, out var keep);
        int no = TestData.Count(keep);
        var y0 = TestData.Normal(no, no + 4);
        var expected = sums.Select((v, i) => -0.5 * v + y0[i]).ToArray();
        foreach (var host in Hosts().Append(Device.CpuSimulator(16, 16, 1).Host))
        {
            using var xb = Upload(host, x);
            using var yb = Upload(host, y0);
            Reduce.SumAxes(host, xb.View.SubView(0, n), shape, axes, yb.View.SubView(0, no), alpha: -0.5f, beta: 1f);
            TestData.ShouldMatch(Download(host, yb, no), expected, 1e-5, 1e-5,
                $"y - 0.5 sum {string.Join('x', shape)} over {string.Join(',', axes)}, groups of {host.ReduceGroupSize}, {Name(host)}");
        }
    }

    // The fused loss pass: y = sum of x^2 and, in the same pass, side = PowGrad(2)(x, s) = 2 x s with
    // s one broadcast element or one per element.
    [Theory]
    [InlineData(1, true)]
    [InlineData(7, false)]
    [InlineData(33, true)]
    [InlineData(130, false)]
    [InlineData(4097, true)]
    [InlineData(100_003, false)]
    public void SumAllMap_with_a_side_output_matches_host_twin(int n, bool scalarOperand)
    {
        var x = TestData.Normal(n, n + 1);
        var s = TestData.Normal(scalarOperand ? 1 : n, n + 2);
        using var xb = Upload(x);
        using var sb = Upload(s);
        double expected = x.Sum(v => (double)v * v);
        var sideExpected = x.Select((v, i) => 2.0 * v * s[scalarOperand ? 0 : i]).ToArray();
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(1);
            using var side = Poisoned(n);
            using var scratch = Poisoned(Reduce.SumAllScratch(host));
            Reduce.SumAllMap(host, xb.View.SubView(0, n), yb.View.SubView(0, 1), scratch.View, new PowOp(2f),
                side.View.SubView(0, n), sb.View.SubView(0, s.Length), scalarOperand ? 0 : 1, new PowGradOp(2f));
            TestData.ShouldMatch(Download(yb, 1), [expected], 1e-5, 1e-5 * Math.Sqrt(n), $"sum of squares of {n}, {Name(host)}");
            TestData.ShouldMatch(Download(side, n), sideExpected, 1e-6, 1e-6, $"side output of {n}, {Name(host)}");
        }
    }

    [Theory]
    [InlineData(new[] { 7, 33 }, new[] { 0 })]
    [InlineData(new[] { 7, 33 }, new[] { 1 })]
    [InlineData(new[] { 130, 65 }, new[] { 0, 1 })]
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 1, 3 })]
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 0, 2 })]
    [InlineData(new[] { 1, 65 }, new[] { 0 })]
    [InlineData(new[] { 33, 7, 65 }, new[] { 1 })]        // a middle run: (outer, r, inner) = (33, 7, 65)
    [InlineData(new[] { 3, 130, 33 }, new[] { 2, 1 })]    // a trailing run, r = 4290: a group per row
    [InlineData(new[] { 7, 4099 }, new[] { 1 })]          // long rows
    [InlineData(new[] { 4099, 3 }, new[] { 0 })]          // a long batch sum
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 0, 1 })]    // a leading run: outer 1, inner 20
    [InlineData(new[] { 5, 1, 7 }, new[] { 1 })]          // r = 1
    public void SumAxes_matches_host_twin(int[] shape, int[] axes)
    {
        int n = TestData.Count(shape);
        var x = TestData.Normal(n, n + axes.Sum());
        var expected = Reference.SumAxes(Reference.ToDouble(x), shape, axes, out var keep);
        int no = TestData.Count(keep);
        // The device's own groups, and groups of 256 (where trailing runs take the group-per-row kernel).
        foreach (var host in Hosts().Append(Device.CpuSimulator(16, 16, 1).Host))
        {
            using var xb = Upload(host, x);
            using var yb = Upload(host, Enumerable.Repeat(float.NaN, Math.Max(1, no)).ToArray());
            Reduce.SumAxes(host, xb.View.SubView(0, n), shape, axes, yb.View.SubView(0, no));
            TestData.ShouldMatch(Download(host, yb, no), expected, 1e-5, 1e-5,
                $"sum {string.Join('x', shape)} over {string.Join(',', axes)}, groups of {host.ReduceGroupSize}, {Name(host)}");
        }
    }

    // A batch sum with few outputs and long columns cuts its rows into chunks (a thread per output and
    // chunk), then sums the chunks in order: forced here at several counts, with y = -0.5 sums + y.
    [Theory]
    [InlineData(new[] { 4099, 3 }, new[] { 0 }, 2)]
    [InlineData(new[] { 4099, 3 }, new[] { 0 }, 64)]
    [InlineData(new[] { 3, 130, 33 }, new[] { 1 }, 3)]
    [InlineData(new[] { 33, 7, 65 }, new[] { 1 }, 7)]      // a chunk per row
    [InlineData(new[] { 33, 7, 65 }, new[] { 1 }, 100)]    // more chunks than rows: one per row
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 0, 1 }, 4)]  // a leading run of two axes
    public void SumAxes_in_chunks_matches_host_twin(int[] shape, int[] axes, int chunks)
    {
        int n = TestData.Count(shape);
        var x = TestData.Normal(n, n + chunks);
        var sums = Reference.SumAxes(Reference.ToDouble(x), shape, axes, out var keep);
        int no = TestData.Count(keep);
        var y0 = TestData.Normal(no, no + 5);
        var expected = sums.Select((v, i) => -0.5 * v + y0[i]).ToArray();
        foreach (var host in Hosts())
        {
        host.SumChunks = chunks;
        try
        {
            long need = Reduce.SumAxesScratch(host, shape, axes);
            need.Should().BeGreaterThan(0, "the rows are cut into chunks");
            using var xb = Upload(host, x);
            using var yb = Upload(host, y0);
            using var scratch = Upload(host, Enumerable.Repeat(float.NaN, (int)need).ToArray());
            long launches = host.Launches;
            Reduce.SumAxes(host, xb.View.SubView(0, n), shape, axes, yb.View.SubView(0, no), -0.5f, 1f, scratch.View);
            // Host loops sum the chunks and then their sums in one loop, in the kernels' order.
            (host.Launches - launches).Should().Be(host.HostLoops ? 1 : 2, "the chunks, then their sum");
            TestData.ShouldMatch(Download(host, yb, no), expected, 1e-5, 1e-5, $"{string.Join('x', shape)} over {string.Join(',', axes)} in {chunks} chunks, {Name(host)}");
            Action small = () => Reduce.SumAxes(host, xb.View.SubView(0, n), shape, axes, yb.View.SubView(0, no), scratch: scratch.View.SubView(0, 1));
            small.Should().Throw<ArgumentException>().WithMessage($"SumAxes: summing * rows in * chunks needs a scratch of {need} elements, got 1. Ask SumAxesScratch first.");
        }
        finally
        {
            host.SumChunks = null;
        }
        }
    }

    // The rule, on a device of 256 resident threads (the simulator's 16x16 group): chunks where few
    // outputs meet long columns, one pass for a bias gradient's batch sum. Eager and compiled Sum find
    // their scratch through the executor and the memory plan.
    [Fact]
    public void A_long_batch_sum_with_few_outputs_is_cut_into_chunks_and_Sum_gets_its_scratch()
    {
        var sim = Device.CpuSimulator(16, 16, 1).Host;
        Reduce.SumAxesScratch(sim, [1 << 16, 16], [0]).Should().Be(16L * 16, "16 outputs, 65,536 rows: 16 chunks");
        Reduce.SumAxesScratch(sim, [64, 100], [0]).Should().Be(0, "a bias gradient's batch sum: one pass");
        Reduce.SumAxesScratch(sim, [1 << 16, 512], [0]).Should().Be(0, "512 outputs fill the 256 threads");
        Reduce.SumAxesScratch(sim, [7, 33], [0, 1]).Should().Be(0, "a sum of all elements is not a batch sum");
        int rows = 4099, cols = 16;
        var x = TestData.Normal(rows * cols, 11);
        var expected = Reference.SumAxes(Reference.ToDouble(x), [rows, cols], [0], out _);
        Host.SumChunks = 8;
        try
        {
            using var t = Tensor.FromArray(x, [rows, cols], TestData.Device);
            using var s = t.Sum(0);
            TestData.ShouldMatch(s.ToArray(), expected, 1e-5, 1e-5, "eager sum(0) in 8 chunks");
            using var step = Graph.Compile(() => t.Sum(0) * 2f);
            TestData.ShouldMatch(step.Run().ToArray(), expected.Select(v => 2 * v).ToArray(), 1e-5, 1e-5, "compiled sum(0) in 8 chunks");
        }
        finally
        {
            Host.SumChunks = null;
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 33)]
    [InlineData(130, 65)]
    [InlineData(1000, 101)] // ragged 32x32 tiles, split across the cores on the cpu device
    public void Transpose_matches_host_twin(int m, int n)
    {
        var x = TestData.Normal(m * n, m + n);
        using var xb = Upload(x);
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(m * n);
            Layout.Transpose(host, xb.View.SubView(0, m * n), yb.View.SubView(0, m * n), m, n);
            TestData.ShouldMatch(Download(yb, m * n), Reference.Transpose(Reference.ToDouble(x), m, n), 0, 0, $"transpose, {Name(host)}");
        }
    }

    [Theory]
    [InlineData(1, 0UL)]
    [InlineData(130, 12345UL)]
    [InlineData(4099, 1UL << 40)]
    public void Randn_matches_host_philox(int n, ulong offset)
    {
        var expected = Enumerable.Range(0, n).Select(i => Reference.Normal(0xDEADBEEFCAFEUL, offset + (ulong)i)).ToArray();
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(n);
            RandomKernels.Randn(host, yb.View.SubView(0, n), 0xDEADBEEFCAFEUL, offset);
            TestData.ShouldMatch(Download(yb, n), expected, 1e-6, 1e-6, $"randn, {Name(host)}");
        }
    }

    [Fact]
    public void Randn_has_standard_normal_moments()
    {
        const int n = 200_000;
        using var yb = Poisoned(n);
        RandomKernels.Randn(Host, yb.View, 7, 0);
        var y = Download(yb, n);
        double mean = y.Average(v => (double)v);
        double var = y.Average(v => (v - mean) * (v - mean));
        mean.Should().BeApproximately(0, 0.01);
        var.Should().BeApproximately(1, 0.02);
    }

    [Fact]
    public void Fill_writes_every_element()
    {
        foreach (var host in Hosts())
        {
            using var yb = Poisoned(1001);
            Elementwise.Fill(host, yb.View.SubView(0, 1001), 2.5f);
            Download(yb, 1001).Should().AllSatisfy(v => v.Should().Be(2.5f), Name(host));
            // A view inside a longer buffer, long enough to be split across the cores: only the view is written.
            using var zb = Poisoned(150_010);
            Elementwise.Fill(host, zb.View.SubView(3, 150_001), -0.75f);
            var z = Download(zb, 150_010);
            z.Skip(3).Take(150_001).Should().AllSatisfy(v => v.Should().Be(-0.75f), Name(host));
            z.Take(3).Concat(z.Skip(150_004)).Should().AllSatisfy(v => float.IsNaN(v).Should().BeTrue(), Name(host) + ", outside the view");
        }
    }

    [Fact]
    public void Launchers_reject_wrong_lengths()
    {
        using var a = Poisoned(10);
        using var b = Poisoned(12);
        var act = () => MatMulKernels.MatMul(Host, a.View, false, b.View, false, a.View, 2, 3, 5);
        act.Should().Throw<ArgumentException>().WithMessage("MatMul: buffer b has 12 elements, expected 15.");
    }

    internal static MemoryBuffer1D<float, Stride1D.Dense> Upload(KernelHost host, float[] data)
    {
        var buf = host.Accelerator.Allocate1D<float>(Math.Max(1, data.Length));
        if (data.Length > 0) buf.View.SubView(0, data.Length).CopyFromCPU(host.Stream, data);
        return buf;
    }

    internal static float[] Download(KernelHost host, MemoryBuffer1D<float, Stride1D.Dense> b, int n)
    {
        var r = new float[n];
        b.View.SubView(0, n).CopyToCPU(host.Stream, r);
        host.Synchronize();
        return r;
    }
}
