// Host loops: the CPU accelerator's elementwise kernels, sums, transposes, optimizer updates and
// random fills run as plain .NET loops over the same buffers when KernelHost.HostLoops is on (the
// "cpu" device turns it on). Why: the CPU accelerator's buffers are host memory, and an ILGPU launch
// there costs 150-300 us of thread wake-ups (2 cores, 2026-11-27), while mapping the seed's 640 or
// 6,400 elements costs 1-5 us. Each twin does the kernel's float operations in the kernel's order on
// that accelerator, so it gives the kernel's bits; MatMulKernels.Host.cs is the SGEMM's twin. The
// kernels themselves still run on CPU simulators (Device.CpuSimulator), in the kernel tests and in
// the PTX check. Never used on a GPU.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>A loop body over the index range [from, to).</summary>
internal interface IHostJob
{
    void Run(int from, int to);
}

internal static class HostLoop
{
    // Below this many elements the loop runs on the calling thread: waking a core costs more.
    private const int ParallelFrom = 1 << 16;

    /// <summary>
    /// Runs job over [0, n) on the host and counts it as a launch; split across the cores when the
    /// elements touched (work, n when not given) are many.
    /// </summary>
    public static void For<TJob>(KernelHost host, long n, TJob job, long work = -1)
        where TJob : struct, IHostJob
    {
        Begin(host, "a host loop");
        Split(checked((int)n), job, work < 0 ? n : work);
    }

    /// <summary>Runs job over [0, count) on this thread, or split across the cores when the elements touched (work) are many.</summary>
    public static void Split<TJob>(int count, TJob job, long work)
        where TJob : struct, IHostJob
    {
        int parts = work < ParallelFrom ? 1 : Math.Min(Environment.ProcessorCount, count);
        HostFork.Run(count, job, parts);
    }

    /// <summary>Waits for queued copies (launches on the CPU accelerator finish before they return) and counts one launch.</summary>
    public static void Begin(KernelHost host, string what)
    {
        if (!host.HostLoops) throw new InvalidOperationException($"KernelHost: {what} reads host memory and runs only where HostLoops is on (the CPU accelerator).");
        host.Synchronize();
        host.CountLaunch();
    }

    /// <summary>The address of element 0 of a view of CPU-accelerator memory.</summary>
    public static unsafe float* Ptr(ArrayView<float> v) => v.Length == 0 ? null : (float*)v.LoadEffectiveAddressAsPtr();
}
