// Devices: one ILGPU Context per process, one accelerator per device, created on first use and kept
// for the life of the process (kernels are cached on it).
//
// Default order: CUDA, then an OpenCL device that ILGPU accepts, then the CPU accelerator. The
// environment variable AUTOGRAD_DEVICE (cpu | cuda | cuda:N | opencl | opencl:N) overrides it.
// The CPU accelerator is a simulator in which every thread is an OS thread: it is configured with
// 2-thread groups and one group per core, the fastest shape measured (ilgpu-facts.md).
using System.Collections.Concurrent;
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace AutogradNet;

/// <summary>The kind of accelerator behind a device.</summary>
public enum DeviceKind
{
    /// <summary>ILGPU's CPU accelerator (runs everywhere; what CI uses).</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through CUDA.</summary>
    Cuda,
    /// <summary>A GPU through OpenCL (needs the generic address space).</summary>
    OpenCL,
}

/// <summary>A device found on this machine, and whether ILGPU can use it.</summary>
/// <param name="Name">The name to pass to <see cref="Device.Get(string)"/> (cpu, cuda:0, opencl:1).</param>
/// <param name="Kind">The accelerator kind.</param>
/// <param name="Description">The hardware's own name.</param>
/// <param name="Usable">False when ILGPU refuses the device.</param>
/// <param name="Reason">Why it is refused, when it is.</param>
public sealed record DeviceInfo(string Name, DeviceKind Kind, string Description, bool Usable, string? Reason);

/// <summary>An accelerator that tensors live on.</summary>
public sealed class Device
{
    /// <summary>Environment variable that chooses the default device.</summary>
    public const string EnvironmentVariable = "AUTOGRAD_DEVICE";

    private static readonly Lazy<Context> SharedContext = new(() =>
        Context.Create(b => b.Cuda().OpenCL(_ => true).EnableAlgorithms()));
    // The CPU accelerator runs a kernel's own .NET method (ILGPU's IL backend calls it); its IR is
    // built only to find the kernel's shared memory and parameters, so optimizing that IR buys nothing
    // there. Without the optimizations a kernel loads in about half the time (the persistent seed
    // program on a CPU simulator: 7.5 -> 3.9-4.6 s), which is most of what the CPU spends in a first step.
    private static readonly Lazy<Context> CpuContext = new(() =>
        Context.Create(b => b.EnableAlgorithms().Optimize(OptimizationLevel.O0)));
    private static readonly ConcurrentDictionary<string, Lazy<Device>> Devices = new();
    private static readonly object DefaultLock = new();
    private static Device? _default;

    private Device(string name, DeviceKind kind, Accelerator accelerator)
    {
        Name = name;
        Kind = kind;
        Accelerator = accelerator;
        Host = new KernelHost(accelerator);
        Allocator = new Allocator(this);
    }

    /// <summary>The device's name as <see cref="Get(string)"/> takes it (cpu, cuda:0, ...).</summary>
    public string Name { get; }

    /// <summary>The accelerator kind.</summary>
    public DeviceKind Kind { get; }

    /// <summary>The hardware's own name (e.g. "NVIDIA H100 80GB HBM3").</summary>
    public string Description => Accelerator.Name;

    /// <summary>The ILGPU accelerator (for users who write their own kernels).</summary>
    public Accelerator Accelerator { get; }

    internal KernelHost Host { get; }

    /// <summary>
    /// Times every candidate SGEMM choice for C (M, N) = op(A) op(B) on this device and, unless the shape
    /// was tuned before, records the fastest. Graph.Compile does this for each product shape where
    /// <c>Kernels.Autotune</c> is on (by default on a GPU); eager MatMul follows the recorded choice too.
    /// Returns each candidate's time and the choice.
    /// </summary>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="transposeA">A is stored (K, M).</param>
    /// <param name="transposeB">B is stored (N, K).</param>
    public MatMulTuning TuneMatMul(int m, int n, int k, bool transposeA = false, bool transposeB = false) =>
        Tune.Product(this, m, n, k, transposeA, transposeB);

    /// <summary>
    /// Serialises the work of several threads on this device: every op, copy, backward, optimizer
    /// step and replay holds it (re-entrantly) while it enqueues, so tensors may be shared by threads.
    /// </summary>
    internal object Sync { get; } = new();

    /// <summary>
    /// A cap on the bytes this device's allocator takes from the driver (live and cached), or null for
    /// none. Past it an allocation throws <see cref="DeviceOutOfMemoryException"/> (after returning the
    /// cache), like running out of device memory, so a process can share a GPU.
    /// </summary>
    public long? MemoryLimitBytes { get; set; }

    /// <summary>Device buffers held by tensors of this device now.</summary>
    public long LiveBuffers => Allocator.LiveBuffers;

    /// <summary>Bytes of the device buffers held by tensors of this device now.</summary>
    public long LiveBytes => Allocator.LiveBytes;

    /// <summary>The kernel host of this device: its stream and loaded kernels (for benchmarks and custom launches).</summary>
    public KernelHost Kernels => Host;

    internal Allocator Allocator { get; }

    /// <summary>
    /// The process's ILGPU context for GPUs (algorithms enabled). CPU-accelerator devices have one of
    /// their own, without IR optimizations (they run a kernel's .NET code, not its IR): use
    /// <c>device.Accelerator.Context</c> for the context of a given device.
    /// </summary>
    public static Context Context => SharedContext.Value;

    /// <summary>ILGPU's CPU accelerator, configured for speed.</summary>
    public static Device Cpu => Get("cpu");

    /// <summary>
    /// Times <see cref="Default"/> was read in this process. The tests marked CpuOnly check that they
    /// never read it: on a GPU machine it is the CUDA device, and those tests are left out there.
    /// </summary>
    internal static long DefaultReads { get; private set; }

    /// <summary>
    /// The device tensors go to when none is named: AUTOGRAD_DEVICE if set, else CUDA, then a usable
    /// OpenCL device, then the CPU accelerator. Settable (e.g. in tests or a program's options).
    /// </summary>
    public static Device Default
    {
        get
        {
            lock (DefaultLock)
            {
                DefaultReads++;
                return _default ??= Resolve(Environment.GetEnvironmentVariable(EnvironmentVariable));
            }
        }
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            lock (DefaultLock) _default = value;
        }
    }

    /// <summary>Every device on this machine, usable or not (refused ones carry their reason).</summary>
    public static IReadOnlyList<DeviceInfo> Available
    {
        get
        {
            var list = new List<DeviceInfo> { new("cpu", DeviceKind.Cpu, "ILGPU CPU accelerator", true, null) };
            int ci = 0;
            foreach (var d in Context.GetCudaDevices())
                list.Add(new($"cuda:{ci++}", DeviceKind.Cuda, d.Name, true, null));
            int oi = 0;
            foreach (var d in Context.GetCLDevices())
            {
                string? reason = OpenCLRefusal(d);
                list.Add(new($"opencl:{oi++}", DeviceKind.OpenCL, d.Name, reason == null, reason));
            }
            return list;
        }
    }

    /// <summary>
    /// The device with this name: "cpu", "cuda" or "cuda:N", "opencl" or "opencl:N", or "best".
    /// Throws <see cref="DeviceNotFoundException"/> listing what exists when it is absent or refused.
    /// </summary>
    /// <param name="name">The device name (case-insensitive).</param>
    public static Device Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = Normalize(name);
        if (key == "best") return Best();
        return Devices.GetOrAdd(key, k => new Lazy<Device>(() => Create(k))).Value;
    }

    /// <summary>
    /// A CPU-accelerator device of another shape (a separate device, cached by its shape). Tests use it
    /// to run the GPU-shaped kernels (groups of 256) on the CPU, and as a second device.
    /// </summary>
    /// <param name="threadsPerWarp">Simulated threads per warp.</param>
    /// <param name="warpsPerGroup">Simulated warps per multiprocessor (group size = product).</param>
    /// <param name="multiprocessors">Simulated multiprocessors (groups running at once).</param>
    public static Device CpuSimulator(int threadsPerWarp, int warpsPerGroup, int multiprocessors)
    {
        string key = $"{SimulatorPrefix}{threadsPerWarp}x{warpsPerGroup}x{multiprocessors}";
        return Devices.GetOrAdd(key, k => new Lazy<Device>(() =>
        {
            var cpu = new CPUDevice(threadsPerWarp, warpsPerGroup, multiprocessors);
            return new Device(k, DeviceKind.Cpu, cpu.CreateCPUAccelerator(CpuContext.Value, CPUAcceleratorMode.Parallel));
        })).Value;
    }

    // The cache key of a simulator device: this prefix, then its shape.
    private const string SimulatorPrefix = "cpu-sim:";

    /// <summary>
    /// Disposes every simulator <see cref="CpuSimulator"/> has made and forgets it: the next call for a
    /// shape makes a new one. A simulator holds an OS thread for each simulated thread (a group of 256
    /// is 256 threads) for as long as it lives, and every garbage collection stops them all, so a
    /// process that is done with its simulators lets them go (the tests do, after each class).
    /// Tensors, compiled steps and kernel hosts of a released simulator must not be used again.
    /// </summary>
    internal static void ReleaseCpuSimulators()
    {
        foreach (var key in Devices.Keys.Where(k => k.StartsWith(SimulatorPrefix, StringComparison.Ordinal)).ToList())
        {
            if (!Devices.TryRemove(key, out var lazy) || !lazy.IsValueCreated) continue;
            var device = lazy.Value;
            lock (device.Sync)
            {
                device.Synchronize();
                device.Allocator.EmptyCache();
                // ILGPU's accelerator disposes what it made (buffers, kernels, streams) and ends its threads.
                device.Accelerator.Dispose();
            }
        }
    }

    /// <summary>Waits for every queued kernel of this device to finish.</summary>
    public void Synchronize() => Host.Synchronize();

    /// <summary>Kernels compiled and loaded on this device so far (each is loaded once, then cached).</summary>
    public int KernelLoads => Host.KernelLoads;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Description})";

    internal static IEnumerable<Device> AllCreated() =>
        Devices.Values.Where(l => l.IsValueCreated).Select(l => l.Value);

    private static Device Resolve(string? env) =>
        string.IsNullOrWhiteSpace(env) ? Best() : Get(env);

    private static Device Best()
    {
        if (Context.GetCudaDevices().Count > 0) return Get("cuda:0");
        int oi = 0;
        foreach (var d in Context.GetCLDevices())
        {
            if (OpenCLRefusal(d) == null) return Get($"opencl:{oi}");
            oi++;
        }
        return Get("cpu");
    }

    private static string Normalize(string name)
    {
        string k = name.Trim().ToLowerInvariant();
        return k switch
        {
            "cuda" or "gpu" => "cuda:0",
            "opencl" or "cl" => "opencl:0",
            _ => k,
        };
    }

    private static Device Create(string key)
    {
        if (key == "cpu")
        {
            // 2 threads per group, one group per core: the fastest CPU-simulator shape measured.
            var cpu = new CPUDevice(2, 1, Math.Max(2, Environment.ProcessorCount));
            var device = new Device("cpu", DeviceKind.Cpu, cpu.CreateCPUAccelerator(CpuContext.Value, CPUAcceleratorMode.Parallel));
            // Its buffers are host memory: loops over them beat ILGPU's thread wake-ups (KernelHost.HostLoops).
            device.Host.HostLoops = KernelHost.HostLoopsFromEnvironment();
            return device;
        }
        if (TryIndex(key, "cuda:", out int c))
        {
            var cuda = Context.GetCudaDevices();
            if (c < cuda.Count) return new Device(key, DeviceKind.Cuda, cuda[c].CreateAccelerator(Context));
        }
        else if (TryIndex(key, "opencl:", out int o))
        {
            var cl = Context.GetCLDevices();
            if (o < cl.Count)
            {
                string? reason = OpenCLRefusal(cl[o]);
                if (reason != null)
                    throw new DeviceNotFoundException(
                        $"Device '{key}' ({cl[o].Name}) cannot run ILGPU kernels: {reason}. {ListForMessage()}");
                return new Device(key, DeviceKind.OpenCL, cl[o].CreateAccelerator(Context));
            }
        }
        throw new DeviceNotFoundException($"No device '{key}' on this machine. {ListForMessage()}");
    }

    private static bool TryIndex(string key, string prefix, out int index)
    {
        index = -1;
        return key.StartsWith(prefix, StringComparison.Ordinal) &&
               int.TryParse(key.AsSpan(prefix.Length), out index) && index >= 0;
    }

    internal static string ListForMessage()
    {
        var parts = Available.Select(d => d.Usable ? $"{d.Name} ({d.Description})" : $"{d.Name} ({d.Description}, refused: {d.Reason})");
        return $"Available: {string.Join("; ", parts)}. Choose one with Device.Get(name) or {EnvironmentVariable}=cpu|cuda|opencl.";
    }

    private static string? OpenCLRefusal(CLDevice d)
    {
        if (!d.Capabilities.GenericAddressSpace)
            return "the device lacks the OpenCL generic address space that ILGPU needs";
        if (d.CLStdVersion < ILGPU.Backends.OpenCL.CLBackend.MinimumVersion)
            return $"OpenCL C {d.CLStdVersion} is older than ILGPU's minimum {ILGPU.Backends.OpenCL.CLBackend.MinimumVersion}";
        return null;
    }
}
