// The "cpu" device runs its elementwise ops, sums, transposes, optimizer updates and random fills as
// host loops (KernelHost.HostLoops). Each loop must give its kernel's bits on the same accelerator, so
// that a program gets the same numbers whether the loops or the kernels run, and the kernel tests
// (which check both against double twins) keep their meaning. Here: bit for bit, loops against
// kernels, for every launcher that has a loop; and the optimizer kernels against double twins.
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    // One launcher on the given host, over buffers made from the same inputs: returns what it wrote.
    private delegate float[] Launch(KernelHost host);

    public static TheoryData<string> HostLoopCases() => new()
    {
        "map tanh", "map pow3", "map broadcast", "zip add", "zip broadcast clampgrad", "fill",
        "sum all 130", "sum all 100003", "sum all map side", "sum all map side 100003", "sum middle", "sum middle chunks", "sum rows", "sum scattered",
        "transpose", "randn", "momentum", "adam",
    };

    [Theory]
    [MemberData(nameof(HostLoopCases))]
    public void Host_loops_give_the_kernels_bits(string what)
    {
        // The cpu device's groups of 2, and the simulator's 256 threads for the sum a group per row.
        var acc = what == "sum rows" ? Device.CpuSimulator(16, 16, 1).Host : Device.Cpu.Host;
        Launch launch = Case(what);
        var kernels = launch(acc.WithHostLoops(false));
        var loopsHost = acc.WithHostLoops(true);
        long before = loopsHost.Launches;
        var loops = launch(loopsHost);
        (loopsHost.Launches - before).Should().BeGreaterThan(0, "a host loop counts as a launch");
        loops.Should().NotContain(float.NaN, what);
        loops.Select(BitConverter.SingleToInt32Bits).Should().Equal(kernels.Select(BitConverter.SingleToInt32Bits), what);
    }

    private static Launch Case(string what)
    {
        const int n = 4099;
        var x = TestData.Normal(n, 5);
        var y = TestData.Normal(n, 6);
        var big = TestData.Normal(33 * 7 * 65, 7);
        return what switch
        {
            "map tanh" => h => Run(h, n, null, (o, i) => Elementwise.Map(h, i[0], o, new TanhOp()), x),
            "map pow3" => h => Run(h, n, null, (o, i) => Elementwise.Map(h, i[0], o, new PowOp(3f)), x),
            "map broadcast" => h => Run(h, 7 * 65, null, (o, i) => Elementwise.MapBroadcast(h, i[0].SubView(0, 65), [65], o, [7, 65], new ScaleOp(1.3f)), x),
            "zip add" => h => Run(h, n, null, (o, i) => Elementwise.Zip(h, i[0], [n], i[1], [n], o, [n], new AddOp()), x, y),
            "zip broadcast clampgrad" => h => Run(h, 33 * 65, null, (o, i) =>
                Elementwise.Zip(h, i[0].SubView(0, 33), [33, 1], i[1].SubView(0, 65), [65], o, [33, 65], new ClampGradOp(-0.5f, 0.5f)), x, y),
            "fill" => h => Run(h, n, null, (o, _) => Elementwise.Fill(h, o, -1.25f)),
            "sum all 130" => h => Run(h, 1, null, (o, i) => Reduce.SumAll(h, i[0].SubView(0, 130), o, Scratch(h)), x),
            "sum all 100003" => h => Run(h, 1, null, (o, i) => Reduce.SumAll(h, i[0], o, Scratch(h)), TestData.Normal(100_003, 8)),
            // The loss and its gradient in one pass: the sum in element 0, the side output after it.
            "sum all map side" => h => Run(h, 1 + n, null, (o, i) => Reduce.SumAllMap(h, i[0], o.SubView(0, 1), Scratch(h), new PowOp(2f),
                o.SubView(1, n), i[1], 1, new PowGradOp(2f), 0.5f), x, y),
            // Past 4 x the threads, so the kernel's loop of four loads before their adds runs too.
            "sum all map side 100003" => h => Run(h, 1 + 100_003, null, (o, i) => Reduce.SumAllMap(h, i[0], o.SubView(0, 1), Scratch(h), new PowOp(2f),
                o.SubView(1, 100_003), i[1], 1, new PowGradOp(2f), 0.5f), TestData.Normal(100_003, 18), TestData.Normal(100_003, 19)),
            "sum middle" => h => Run(h, 33 * 65, TestData.Normal(33 * 65, 9), (o, i) => Reduce.SumAxes(h, i[0], [33, 7, 65], [1], o, -0.5f, 0.75f), big),
            "sum middle chunks" => h => Chunked(h),
            "sum rows" => h => Run(h, 7, null, (o, i) => Reduce.SumAxes(h, i[0].SubView(0, 7 * 2049), [7, 2049], [1], o), big),
            "sum scattered" => h => Run(h, 3 * 5, null, (o, i) => Reduce.SumAxes(h, i[0].SubView(0, 120), [2, 3, 4, 5], [0, 2], o), x),
            "transpose" => h => Run(h, 130 * 31, null, (o, i) => Layout.Transpose(h, i[0].SubView(0, 130 * 31), o, 130, 31), x),
            "randn" => h => Run(h, n, null, (o, _) => RandomKernels.Randn(h, o, 99, 1UL << 33)),
            // Two steps each, so the state the first writes is read by the second: [p, v] and [p, m, v, t].
            "momentum" => h => Run(h, 2 * n, [.. x, .. TestData.Normal(n, 10)], (o, i) =>
            {
                for (int s = 0; s < 2; s++) OptimizerKernels.Momentum(h, o.SubView(0, n), i[0], o.SubView(n, n), 0.1f, 0.9f);
            }, y),
            _ => h => Run(h, 3 * n + 1, [.. x, .. new float[2 * n + 1]], (o, i) =>
            {
                for (int s = 0; s < 2; s++)
                {
                    OptimizerKernels.Count(h, o.SubView(3 * n, 1));
                    OptimizerKernels.Adam(h, o.SubView(0, n), i[0], o.SubView(n, n), o.SubView(2 * n, n), o.SubView(3 * n, 1), 1e-2f, 0.9f, 0.999f, 1e-8f);
                }
            }, y),
        };
    }

    // y = 2 sums - y over the middle axis of (2, 1024, 3), its rows cut into 5 chunks.
    private static float[] Chunked(KernelHost h)
    {
        h.SumChunks = 5;
        try
        {
            int need = (int)Reduce.SumAxesScratch(h, [2, 1024, 3], [1]);
            need.Should().BeGreaterThan(0);
            return Run(h, 6, TestData.Normal(6, 11), (o, i) => Reduce.SumAxes(h, i[0], [2, 1024, 3], [1], o, 2f, -1f, i[1]),
                TestData.Normal(2 * 1024 * 3, 12), Enumerable.Repeat(float.NaN, need).ToArray());
        }
        finally
        {
            h.SumChunks = null;
        }
    }

    // Random shapes (rank 0 to 4, extents 1 to 33), random broadcasts and random sets of summed axes:
    // each case against the double twin on the loops, and the loops against the kernels bit for bit.
    // The seed is in every message, so a failure replays.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Host_loops_match_kernels_and_twins_on_random_shapes(int seed)
    {
        var rng = new Random(seed);
        int[] extents = [1, 2, 3, 5, 7, 33];
        int[] Shape(int rank) => Enumerable.Range(0, rank).Select(_ => extents[rng.Next(extents.Length)]).ToArray();
        var cpu = Device.Cpu.Host;
        for (int c = 0; c < 40; c++)
        {
            string what = $"seed {seed}, case {c}";
            var cShape = Shape(rng.Next(5));
            // Each operand drops some leading dims and sets some of the rest to 1: it broadcasts to cShape.
            int[] Operand() => cShape.Skip(rng.Next(cShape.Length + 1)).Select(d => rng.Next(3) == 0 ? 1 : d).ToArray();
            var aShape = Operand();
            var bShape = Operand();
            var outShape = Reference.BroadcastShape(aShape, bShape);
            int na = TestData.Count(aShape), nb = TestData.Count(bShape), no = TestData.Count(outShape);
            var a = TestData.Normal(na, seed * 1000 + c);
            var b = TestData.Uniform(nb, seed * 1000 + c + 500, 0.5f, 2f);
            float[] Zip(KernelHost h) => Run(h, no, null, (o, i) => Elementwise.Zip(h, i[0], aShape, i[1], bShape, o, outShape, new DivOp()), a, b);
            var zipLoops = Zip(cpu.WithHostLoops(true));
            TestData.ShouldMatch(zipLoops, Reference.Zip(Reference.ToDouble(a), aShape, Reference.ToDouble(b), bShape, (p, q) => p / q, out _),
                1e-6, 1e-6, $"{what}: {Tensor.ShapeText(aShape)} / {Tensor.ShapeText(bShape)}");
            Bits(zipLoops, Zip(cpu.WithHostLoops(false)), $"{what}: zip");

            float[] Expand(KernelHost h) => Run(h, TestData.Count(cShape), null, (o, i) => Elementwise.MapBroadcast(h, i[0], aShape, o, cShape, new TanhOp()), a);
            if (Reference.BroadcastShape(aShape, cShape).SequenceEqual(cShape))
                Bits(Expand(cpu.WithHostLoops(true)), Expand(cpu.WithHostLoops(false)), $"{what}: expand {Tensor.ShapeText(aShape)} to {Tensor.ShapeText(cShape)}");

            // A random non-empty set of axes of cShape, summed as y = 0.5 sums - y.
            if (cShape.Length == 0) continue;
            var axes = Enumerable.Range(0, cShape.Length).Where(_ => rng.Next(2) == 0).ToArray();
            if (axes.Length == 0) axes = [rng.Next(cShape.Length)];
            int nx = TestData.Count(cShape);
            var x = TestData.Normal(nx, seed * 1000 + c + 900);
            var sums = Reference.SumAxes(Reference.ToDouble(x), cShape, axes, out var keep);
            var y0 = TestData.Normal(TestData.Count(keep), seed + c);
            float[] Sum(KernelHost h) => Run(h, y0.Length, y0, (o, i) => Reduce.SumAxes(h, i[0], cShape, axes, o, 0.5f, -1f, i[1]),
                x, new float[Math.Max(1, (int)Reduce.SumAxesScratch(h, cShape, axes))]);
            var sumLoops = Sum(cpu.WithHostLoops(true));
            string sumWhat = $"{what}: sum {Tensor.ShapeText(cShape)} over {string.Join(',', axes)}";
            TestData.ShouldMatch(sumLoops, sums.Select((v, i) => 0.5 * v - y0[i]).ToArray(), 1e-5, 1e-5, sumWhat);
            Bits(sumLoops, Sum(cpu.WithHostLoops(false)), sumWhat);
        }
    }

    // The broadcasting loops walk runs along the last dim, by vectors where an operand is contiguous
    // (stride 1) or one repeated element (stride 0). Each pairing of strides, with ops that have a
    // vector form and ops that do not, on outputs past the size that splits a loop across the cores
    // (so the parts start and end inside a run): against the double twin, and bit for bit against the kernels.
    [Theory]
    [InlineData(new[] { 65, 1, 33 }, new[] { 1, 40, 33 })]   // both contiguous along the run
    [InlineData(new[] { 65, 40, 1 }, new[] { 1, 40, 33 })]   // a repeated, b contiguous
    [InlineData(new[] { 65, 40, 33 }, new[] { 65, 40, 1 })]  // a contiguous, b repeated
    [InlineData(new[] { 2000, 40, 1 }, new[] { 1 })]         // both of stride 0: runs of one element
    [InlineData(new[] { 3, 1, 7, 1009 }, new[] { 1, 5, 7, 1 })] // rank 4, runs of 1009 split across the cores
    public void Broadcast_loops_walk_runs_with_the_kernels_bits(int[] aShape, int[] bShape)
    {
        var cpu = Device.Cpu.Host;
        var outShape = Reference.BroadcastShape(aShape, bShape);
        int na = TestData.Count(aShape), nb = TestData.Count(bShape), no = TestData.Count(outShape);
        no.Should().BeGreaterThan(65536, "past the size that splits a host loop across the cores");
        var a = TestData.Normal(na, 11);
        var b = TestData.Uniform(nb, 12, 0.5f, 2f);
        string what = $"{Tensor.ShapeText(aShape)} with {Tensor.ShapeText(bShape)}";
        float[] Zip<TOp>(KernelHost h, TOp op) where TOp : struct, IBinaryOp =>
            Run(h, no, null, (o, i) => Elementwise.Zip(h, i[0], aShape, i[1], bShape, o, outShape, op), a, b);
        var div = Zip(cpu.WithHostLoops(true), new DivOp());
        TestData.ShouldMatch(div, Reference.Zip(Reference.ToDouble(a), aShape, Reference.ToDouble(b), bShape, (p, q) => p / q, out _), 1e-6, 1e-6, what);
        Bits(div, Zip(cpu.WithHostLoops(false), new DivOp()), $"{what}: div");
        // PowGrad at a non-integral exponent has no vector form: the run's scalar loop with strides.
        var pg = Zip(cpu.WithHostLoops(true), new PowGradOp(2.5f));
        Bits(pg, Zip(cpu.WithHostLoops(false), new PowGradOp(2.5f)), $"{what}: powgrad");
        // Expanding each operand to the output: a map with its stride (1 or 0) along the run.
        foreach (var (x, shape) in new[] { (a, aShape), (b, bShape) })
        {
            float[] Expand<TOp>(KernelHost h, TOp op) where TOp : struct, IUnaryOp =>
                Run(h, no, null, (o, i) => Elementwise.MapBroadcast(h, i[0], shape, o, outShape, op), x);
            var scaled = Expand(cpu.WithHostLoops(true), new ScaleOp(1.3f));
            TestData.ShouldMatch(scaled, Reference.Zip(Reference.ToDouble(x), shape, new double[no], outShape, (p, _) => (double)(float)(1.3f * (float)p), out _), 1e-6, 1e-6, $"{what}: expand {Tensor.ShapeText(shape)}");
            Bits(scaled, Expand(cpu.WithHostLoops(false), new ScaleOp(1.3f)), $"{what}: scale {Tensor.ShapeText(shape)}");
            Bits(Expand(cpu.WithHostLoops(true), new TanhOp()), Expand(cpu.WithHostLoops(false), new TanhOp()), $"{what}: tanh {Tensor.ShapeText(shape)}");
        }
    }

    private static void Bits(float[] loops, float[] kernels, string what) =>
        loops.Select(BitConverter.SingleToInt32Bits).Should().Equal(kernels.Select(BitConverter.SingleToInt32Bits), what);

    // Uploads the inputs and the output's start (init, or NaN poison), launches, downloads the output.
    private static float[] Run(KernelHost h, int outLength, float[]? init, Action<ArrayView<float>, ArrayView<float>[]> launch, params float[][] inputs)
    {
        var buffers = inputs.Select(d => Upload(h, d)).ToList();
        try
        {
            using var o = Upload(h, init ?? Enumerable.Repeat(float.NaN, outLength).ToArray());
            launch(o.View.SubView(0, outLength), buffers.Select((b, i) => (ArrayView<float>)b.View.SubView(0, inputs[i].Length)).ToArray());
            return Download(h, o, outLength);
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
        }
    }

    private static ArrayView<float> Scratch(KernelHost h) => ScratchBuffers.GetOrAdd(h.Accelerator, a => a.Allocate1D<float>(Reduce.SumAllScratch(h))).View;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Accelerator, MemoryBuffer1D<float, Stride1D.Dense>> ScratchBuffers = new();

    [Theory]
    [InlineData(1)]
    [InlineData(33)]
    [InlineData(4099)]
    public void Optimizer_kernels_match_double_twins(int n)
    {
        var p0 = TestData.Normal(n, n);
        var g = TestData.Normal(n, n + 1);
        var v0 = TestData.Normal(n, n + 2, 0.1f);
        const int steps = 3;
        const float lr = 0.05f, mu = 0.9f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        // SGD with momentum: v = mu v + g; p -= lr v.
        double[] p = Reference.ToDouble(p0), v = Reference.ToDouble(v0);
        for (int s = 0; s < steps; s++)
            for (int i = 0; i < n; i++) { v[i] = mu * v[i] + g[i]; p[i] -= lr * v[i]; }
        // Adam from zero moments, bias-corrected by the step count.
        double[] pa = Reference.ToDouble(p0), m1 = new double[n], m2 = new double[n];
        for (int s = 1; s <= steps; s++)
            for (int i = 0; i < n; i++)
            {
                m1[i] = b1 * m1[i] + (1 - b1) * g[i];
                m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i];
                pa[i] -= lr * (m1[i] / (1 - Math.Pow(b1, s))) / (Math.Sqrt(m2[i] / (1 - Math.Pow(b2, s))) + eps);
            }
        foreach (var host in Hosts())
        {
            using var pb = Upload(host, p0);
            using var gb = Upload(host, g);
            using var vb = Upload(host, v0);
            for (int s = 0; s < steps; s++) OptimizerKernels.Momentum(host, pb.View.SubView(0, n), gb.View.SubView(0, n), vb.View.SubView(0, n), lr, mu);
            TestData.ShouldMatch(Download(host, pb, n), p, 1e-5, 1e-5, $"momentum parameter, {Name(host)}");
            TestData.ShouldMatch(Download(host, vb, n), v, 1e-5, 1e-5, $"momentum velocity, {Name(host)}");

            using var ab = Upload(host, p0);
            using var mb = Upload(host, new float[n]);
            using var qb = Upload(host, new float[n]);
            using var tb = Upload(host, [0f]);
            for (int s = 0; s < steps; s++)
            {
                OptimizerKernels.Count(host, tb.View.SubView(0, 1));
                OptimizerKernels.Adam(host, ab.View.SubView(0, n), gb.View.SubView(0, n), mb.View.SubView(0, n), qb.View.SubView(0, n),
                    tb.View.SubView(0, 1), lr, b1, b2, eps);
            }
            Download(host, tb, 1).Should().Equal([(float)steps], "the step count");
            TestData.ShouldMatch(Download(host, ab, n), pa, 1e-4, 1e-5, $"adam parameter, {Name(host)}");
            TestData.ShouldMatch(Download(host, mb, n), m1, 1e-5, 1e-6, $"adam first moment, {Name(host)}");
            TestData.ShouldMatch(Download(host, qb, n), m2, 1e-5, 1e-6, $"adam second moment, {Name(host)}");
        }
    }
}

public sealed class HostLoopsSettingTests
{
    [Fact]
    public void The_cpu_device_runs_host_loops_and_simulators_run_kernels()
    {
        Environment.GetEnvironmentVariable(KernelHost.HostLoopsVariable).Should().BeNullOrEmpty("the suite runs with the default");
        Device.Cpu.Kernels.HostLoops.Should().BeTrue();
        Device.CpuSimulator(16, 16, 1).Kernels.HostLoops.Should().BeFalse("a simulator is there to run the kernels");
        Device.Cpu.Kernels.WithHostLoops(false).HostLoops.Should().BeFalse();
        Device.Cpu.Kernels.WithStream(Device.Cpu.Accelerator.DefaultStream).HostLoops.Should().BeTrue("views keep the setting");
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("1", true)]
    [InlineData("0", false)]
    [InlineData("yes", null)]
    public void AUTOGRAD_HOST_LOOPS_is_read_strictly(string? value, bool? expected)
    {
        lock (EnvironmentLock)
        {
            Environment.SetEnvironmentVariable(KernelHost.HostLoopsVariable, value);
            try
            {
                if (expected is { } on) KernelHost.HostLoopsFromEnvironment().Should().Be(on);
                else
                {
                    var act = () => KernelHost.HostLoopsFromEnvironment();
                    act.Should().Throw<ArgumentException>().WithMessage("AUTOGRAD_HOST_LOOPS=yes: use 0 *");
                }
            }
            finally
            {
                Environment.SetEnvironmentVariable(KernelHost.HostLoopsVariable, null);
            }
        }
    }

    private static readonly object EnvironmentLock = new();

    // A launcher that forgets its loop would still work on the cpu device, only 100x slower: so the
    // work of eager and compiled steps (each optimizer, a bias, tanh, sigmoid, means, sums along a dim)
    // is counted here on a device of its own with host loops on, where no ILGPU kernel may run.
    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("adam")]
    public void With_host_loops_eager_and_compiled_steps_launch_no_ILGPU_kernel(string optimizer)
    {
        var dev = Device.CpuSimulator(2, 1, 5);
        dev.Kernels.HostLoops = true;
        Tensor.ManualSeed(5);
        var x = Tensor.Randn([33, 7], dev);
        var y = Tensor.Randn([33, 3], dev);
        var w1 = Tensor.Randn([7, 65], dev, requiresGrad: true);
        var b1 = Tensor.Randn([65], dev, requiresGrad: true);
        var w2 = Tensor.Randn([65, 3], dev, requiresGrad: true);
        Tensor Loss() => ((x.MatMul(w1) + b1).Tanh().MatMul(w2).Sigmoid() - y).Pow(2).Mean() + w1.Sum(0).Pow(2).Sum() * 1e-3f;
        Optim.Optimizer Make() => optimizer switch
        {
            "sgd" => new Optim.Sgd([w1, b1, w2], 0.01f),
            "momentum" => new Optim.Sgd([w1, b1, w2], 0.01f, momentum: 0.9f),
            _ => new Optim.Adam([w1, b1, w2], 0.01f),
        };
        long before = dev.Kernels.IlgpuLaunches, launches = dev.Kernels.Launches;
        using (var eager = Make())
            for (int s = 0; s < 2; s++)
            {
                Loss().Backward();
                eager.Step();
                eager.ZeroGrad();
            }
        using (var o = Make())
        using (var step = Graph.Compile(Loss, o))
        {
            step.Run();
            step.Run(steps: 2).ToArray().Should().OnlyContain(v => float.IsFinite(v));
        }
        dev.Kernels.Launches.Should().BeGreaterThan(launches, "the loops count as launches");
        dev.Kernels.IlgpuLaunches.Should().Be(before, "every launcher of these steps has a host loop");
    }

    // The runtime compiles a method unoptimised first (tier 0: every vector operation a call) and
    // optimises it only after 30 calls and a quiet spell with no new method compiled; a program's
    // first few hundred steps can run in that spell. A host job's methods run per element or per piece
    // of a product, so each must be compiled optimised from its first call, or be inlined into one
    // that is. A helper left out cost the example's first 500 CPU steps ~130 us a step (StripOfA).
    [Fact]
    public void Host_jobs_are_optimised_from_their_first_call()
    {
        const System.Reflection.BindingFlags all = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Static |
            System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.DeclaredOnly;
        const System.Reflection.MethodImplAttributes optimised =
            System.Reflection.MethodImplAttributes.AggressiveOptimization | System.Reflection.MethodImplAttributes.AggressiveInlining;
        var jobs = typeof(IHostJob).Assembly.GetTypes().Where(t => t.IsValueType && t.GetInterfaces().Contains(typeof(IHostJob))).ToList();
        jobs.Select(t => t.Name).Should().Contain(["HostGemm`3", "PackJob", "MapJob`1", "SumGroupsJob`2", "AdamJob", "RandnJob"]);
        var slow = jobs
            .SelectMany(t => t.GetMethods(all).Where(m => !m.IsAbstract).Select(m => (t, m)))
            .Where(x => (x.m.MethodImplementationFlags & optimised) == 0)
            .Select(x => $"{x.t.Name}.{x.m.Name}")
            .ToList();
        slow.Should().BeEmpty("each runs per element or per piece: mark it AggressiveOptimization, or AggressiveInlining if it is small");
        // A job's helpers outside it: the host SGEMM's column cut, the elementwise runs, the sums'
        // group loop and the random words.
        var helpers = new[]
        {
            typeof(MatMulKernels).GetNestedType("HostColumns", all)!.GetMethod("Start", all)!,
            typeof(MatMulKernels).GetNestedType("HostColumns", all)!.GetMethod("Size", all)!,
            typeof(Elementwise).GetMethod("MapRun", all)!,
            typeof(Elementwise).GetMethod("ZipRun", all)!,
            typeof(Reduce).GetMethod("GroupOnHost", all)!,
            typeof(RandomKernels).GetMethod(nameof(RandomKernels.Philox), all)!,
            typeof(RandomKernels).GetMethod(nameof(RandomKernels.ToNormal), all)!,
        };
        helpers.Where(m => (m.MethodImplementationFlags & optimised) == 0).Select(m => $"{m.DeclaringType!.Name}.{m.Name}")
            .Should().BeEmpty("a job calls each per element or per piece");
    }

    [Fact]
    public void A_GPU_refuses_host_loops()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda), "needs a CUDA device: host loops are refused only off the CPU accelerator");
        var act = () => Device.Get("cuda").Kernels.HostLoops = true;
        act.Should().Throw<InvalidOperationException>().WithMessage("KernelHost.HostLoops: * is not the CPU accelerator*Leave HostLoops off on a GPU.");
        Device.Get("cuda").Kernels.HostLoops.Should().BeFalse();
    }
}
