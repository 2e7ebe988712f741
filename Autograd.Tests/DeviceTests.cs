// Device selection, kernel caching, and the tests that need a GPU (skipped with a reason without one).
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class DeviceTests : IClassFixture<SimulatorsReleased>
{
    [Fact]
    public void Cpu_is_always_available_and_listed()
    {
        Device.Available.Should().Contain(d => d.Name == "cpu" && d.Usable);
        Device.Cpu.Kind.Should().Be(DeviceKind.Cpu);
        Device.Get("CPU").Should().BeSameAs(Device.Cpu);
    }

    [Fact]
    public void Cpu_accelerator_is_configured_for_grid_stride_speed()
    {
        var acc = Device.Cpu.Accelerator;
        acc.MaxNumThreadsPerGroup.Should().Be(2, "each simulated thread is an OS thread; small groups are fastest");
        acc.NumMultiprocessors.Should().BeGreaterThanOrEqualTo(2);
    }

    // The CPU accelerator calls a kernel's .NET method and uses its IR only to lay out the launch, so
    // its devices skip ILGPU's IR optimizations (half the load time); GPU code keeps them.
    [Fact]
    public void Cpu_devices_compile_without_IR_optimizations_and_GPUs_with_them()
    {
        Device.Cpu.Accelerator.Context.Properties.OptimizationLevel.Should().Be(ILGPU.OptimizationLevel.O0);
        Device.CpuSimulator(2, 2, 2).Accelerator.Context.Should().BeSameAs(Device.Cpu.Accelerator.Context);
        Device.Context.Properties.OptimizationLevel.Should().Be(ILGPU.OptimizationLevel.O1);
        Device.Context.Should().NotBeSameAs(Device.Cpu.Accelerator.Context);
    }

    // A released simulator ends: its accelerator (and with it the OS thread of each simulated thread)
    // is disposed, and the same shape asked for again is a new device that computes.
    [CpuOnly]
    [Fact]
    public void Released_simulators_are_disposed_and_made_again_on_demand()
    {
        var a = TestData.Normal(7 * 33, 71);
        double want = a.Sum(v => (double)v);
        double SumOn(Device d)
        {
            using var t = Tensor.FromArray(a, [7, 33], d);
            using var s = t.Sum();
            return s.Item();
        }
        var old = Device.CpuSimulator(4, 2, 1);
        SumOn(old).Should().BeApproximately(want, 1e-3);
        Device.ReleaseCpuSimulators();
        old.Accelerator.IsDisposed.Should().BeTrue();
        var made = Device.CpuSimulator(4, 2, 1);
        made.Should().NotBeSameAs(old);
        SumOn(made).Should().BeApproximately(want, 1e-3);
    }

    [Fact]
    public void OpenCL_is_selectable_and_refused_with_a_clear_message_when_unusable()
    {
        var cl = Device.Available.Where(d => d.Kind == DeviceKind.OpenCL).ToList();
        foreach (var d in cl.Where(d => !d.Usable)) d.Reason.Should().NotBeNullOrWhiteSpace();
        if (cl.Any(d => d.Usable)) return; // a usable one is exercised through AUTOGRAD_DEVICE=opencl
        var act = () => Device.Get("opencl");
        act.Should().Throw<DeviceNotFoundException>().WithMessage("*opencl:0*Available: cpu*");
    }

    [Fact]
    public void Kernels_load_once_per_device_and_are_cached()
    {
        var d = TestData.Device;
        var a = TestData.Tensor([7, 33], 1);
        using (var warm = a.Sigmoid()) { }
        int loads = d.KernelLoads;
        for (int i = 0; i < 20; i++) using (var s = a.Sigmoid()) { }
        d.KernelLoads.Should().Be(loads);
    }

    [Fact]
    public void Default_device_follows_the_environment_variable()
    {
        string? env = Environment.GetEnvironmentVariable(Device.EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(env)) return;
        Device.Default.Should().BeSameAs(Device.Get(env));
    }

    [Fact]
    public void Cuda_seed_step_matches_the_cpu_accelerator()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda),
            "no CUDA device on this machine (CI has no GPU; run with AUTOGRAD_DEVICE=cuda on a GPU machine)");
        var cuda = Device.Get("cuda");
        var results = new List<float[]>();
        foreach (var dev in new[] { Device.Cpu, cuda })
        {
            Tensor.ManualSeed(9);
            var x = Tensor.Randn([64, 1000], dev);
            var y = Tensor.Randn([64, 10], dev);
            var w1 = Tensor.Randn([1000, 100], dev, requiresGrad: true);
            var w2 = Tensor.Randn([100, 10], dev, requiresGrad: true);
            var loss = (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum();
            loss.Backward();
            results.Add([loss.Item(), .. w1.Grad!.ToArray(), .. w2.Grad!.ToArray()]);
        }
        TestData.RelativeError(results[1], Reference.ToDouble(results[0])).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void Randn_is_identical_on_cuda_and_cpu()
    {
        Assert.SkipUnless(Device.Available.Any(d => d.Kind == DeviceKind.Cuda),
            "no CUDA device on this machine (CI has no GPU; run with AUTOGRAD_DEVICE=cuda on a GPU machine)");
        Tensor.ManualSeed(77);
        var a = Tensor.Randn([4099], Device.Cpu).ToArray();
        Tensor.ManualSeed(77);
        var b = Tensor.Randn([4099], Device.Get("cuda")).ToArray();
        int differ = a.Zip(b).Count(p => p.First != p.Second);
        differ.Should().BeLessThanOrEqualTo(2, "Philox is exact; Box-Muller in double rounds once to float");
    }
}
