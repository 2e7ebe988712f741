// KernelHost: one per accelerator. It owns the stream every launch goes to, the launch geometry
// derived from the accelerator's limits, and the cache of loaded kernels.
//
// Why a cache: loading an ILGPU kernel compiles it (100+ ms the first time, 1-5 ms after); a cached
// delegate costs a dictionary lookup. Every launcher in this assembly goes through Load().
// Why grid-stride geometry: on the CPU accelerator each simulated thread is an OS thread, so a grid
// of a few groups looping over the data beats one thread per element by 10-50x (ilgpu-facts.md);
// on a GPU the same loop with enough resident groups runs at full occupancy.
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>The SGEMM kernel choice.</summary>
public enum MatMulPath
{
    /// <summary>Host on the CPU accelerator; on a GPU, the autotuned choice for the shape (KernelHost.Autotune), else Large or Tiled by the shape (Tiled where groups of 256 do not fit).</summary>
    Auto,
    /// <summary>The register-blocked kernel without shared memory.</summary>
    Small,
    /// <summary>The shared-memory tiled kernel; its group and tile come from the accelerator's limits (KernelHost.TiledGroup).</summary>
    Tiled,
    /// <summary>The shared-memory tiled kernel, 128x128 tiles (needs groups of 256).</summary>
    Large,
    /// <summary>Vectorised .NET on the CPU accelerator's host memory (CPU accelerator only).</summary>
    Host,
    /// <summary>128x128 tiles with 16-byte loads and double-buffered 8-deep slices (needs groups of 256; Auto takes it where autotuning finds it fastest).</summary>
    Wide,
    /// <summary>A team of warps per 4x4 block of C with K split across its threads, for products with few outputs (Auto takes it where autotuning finds it fastest, or by the rule up to KernelHost.WarpMaxOutputs, 0 by default).</summary>
    Warp,
    /// <summary>Wide with 16-deep slices: half the barriers per k (needs groups of 256; Auto's rule takes it where there are enough 128x128 tiles, and autotuning keeps it unless another kernel is over 3% faster).</summary>
    Wide16,
}

/// <summary>The settings of a kernel host that decide which SGEMM kernels run and how much scratch they need.</summary>
/// <param name="Path">KernelHost.MatMulPath.</param>
/// <param name="TiledGroup">KernelHost.TiledGroup.</param>
/// <param name="SplitK">KernelHost.MatMulSplitK.</param>
/// <param name="SplitKInOneLaunch">KernelHost.SplitKInOneLaunch.</param>
/// <param name="WarpMaxOutputs">KernelHost.WarpMaxOutputs.</param>
/// <param name="SumTailInLaunch">KernelHost.SumTailInLaunch.</param>
/// <param name="PairProducts">KernelHost.PairProducts.</param>
/// <param name="WarpTeam">KernelHost.WarpTeam.</param>
/// <param name="Autotune">KernelHost.Autotune.</param>
public readonly record struct MatMulSettings(MatMulPath Path, (int X, int Y) TiledGroup, int? SplitK, bool SplitKInOneLaunch, int WarpMaxOutputs,
    bool SumTailInLaunch = true, bool PairProducts = true, int? WarpTeam = null, bool Autotune = false)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"MatMulPath {Path}, TiledGroup {TiledGroup.X}x{TiledGroup.Y}, MatMulSplitK {SplitK?.ToString() ?? "auto"}, " +
        $"SplitKInOneLaunch {SplitKInOneLaunch}, WarpMaxOutputs {WarpMaxOutputs}, SumTailInLaunch {SumTailInLaunch}, PairProducts {PairProducts}, WarpTeam {WarpTeam?.ToString() ?? "auto"}, Autotune {Autotune}";
}

/// <summary>
/// Per-accelerator state for the kernels: the stream, launch geometry and the loaded-kernel cache.
/// </summary>
public sealed partial class KernelHost
{
    private readonly ConcurrentDictionary<(string Name, Type? Shape, Type? Op), Delegate> _cache;
    private readonly StrongBox<int> _loads;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _arrivals;
    private readonly StrongBox<long> _launches;
    private (int X, int Y) _tiledGroup;

    /// <summary>Output tiles a one-launch split-K product may have (more fall back to two launches).</summary>
    public const int MaxSplitKTiles = 4096;

    /// <summary>Wraps an accelerator; the host does not own it.</summary>
    /// <param name="accelerator">The accelerator every kernel of this host runs on.</param>
    public KernelHost(Accelerator accelerator)
    {
        Accelerator = accelerator ?? throw new ArgumentNullException(nameof(accelerator));
        _cache = new();
        _loads = new(0);
        _launches = new(0);
        _tuned = new();
        Stream = accelerator.DefaultStream;
        IsCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        int maxGroup = accelerator.MaxNumThreadsPerGroup;
        GroupSize = Math.Min(256, maxGroup);
        // Power of two for the tree reductions.
        ReduceGroupSize = 1;
        while (ReduceGroupSize * 2 <= GroupSize) ReduceGroupSize *= 2;
        int groupsPerSm = Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / GroupSize);
        MaxGroups = Math.Max(1, accelerator.NumMultiprocessors * groupsPerSm);
        MatMulPath = PathFromEnvironment();
        // Zero once; every split-K launch and every SumTail leaves its counters at zero again.
        // One counter per split-K tile, and after them the SumTail's count of groups.
        _arrivals = accelerator.Allocate1D<int>(MaxSplitKTiles + 1);
        _arrivals.MemSetToZero(Stream);
        Stream.Synchronize();
        // The 128x128-tile kernels are written for 16x16 threads; the tiled kernel takes its group from the limits.
        CanUseLargeMatMul = maxGroup >= MatMulKernels.LargeThreads;
        _tiledGroup = MatMulKernels.TiledGroupFor(maxGroup, accelerator.MaxSharedMemoryPerGroup);
        DefaultTiledGroup = _tiledGroup;
        Autotune = AutotuneFromEnvironment(IsCpu);
    }

    // A copy on another stream; shareLaunches: its launches count as this host's (a view for one shape).
    // table: the tuned table it reads (default: the other's, shared).
    private KernelHost(KernelHost other, AcceleratorStream stream, bool shareLaunches = false,
        ConcurrentDictionary<(int M, int N, int K), MatMulChoice>? table = null)
    {
        Accelerator = other.Accelerator;
        _cache = other._cache;
        _loads = other._loads;
        _launches = shareLaunches ? other._launches : new(0);
        _tuned = table ?? other._tuned;
        _tunedChunks = other._tunedChunks;
        DefaultTiledGroup = other.DefaultTiledGroup;
        Stream = stream;
        IsCpu = other.IsCpu;
        GroupSize = other.GroupSize;
        ReduceGroupSize = other.ReduceGroupSize;
        MaxGroups = other.MaxGroups;
        CanUseLargeMatMul = other.CanUseLargeMatMul;
        MatMulSettings = other.MatMulSettings;
        SumChunks = other.SumChunks;
        _hostLoops = other._hostLoops;
        TakeSwitches(other);
        Recorder = other.Recorder;
        // Shared: the streams' work is ordered on the default stream (a captured graph is launched there).
        _arrivals = other._arrivals;
    }

    // The switches that pick among kernels and step forms giving the same values (not the SGEMM choice
    // a tuned view pins): copied into each host made from another, and again into a tuned view each
    // time ForShape hands it out, so that a view never launches with a setting its root has left.
    private void TakeSwitches(KernelHost other)
    {
        LaunchBounds = other.LaunchBounds;
        WholeTiles = other.WholeTiles;
        AsyncCopies = other.AsyncCopies;
        AsyncCopiesAlongK = other.AsyncCopiesAlongK;
        TransposedCopies = other.TransposedCopies;
        TransposedCopyMinSide = other.TransposedCopyMinSide;
        PersistentSteps = other.PersistentSteps;
        BarrierFence = other.BarrierFence;
        ChainTails = other.ChainTails;
        OneThreadFences = other.OneThreadFences;
        RowChains = other.RowChains;
        RowShares = other.RowShares;
    }

    /// <summary>A host that launches the same cached kernels on another stream (e.g. one being captured).</summary>
    /// <param name="stream">A stream of the same accelerator.</param>
    public KernelHost WithStream(AcceleratorStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (stream.Accelerator != Accelerator) throw new ArgumentException("WithStream: the stream belongs to another accelerator.");
        return new KernelHost(this, stream);
    }

    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The stream every launch of this host is queued on (in order).</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>True for ILGPU's CPU accelerator (a simulator of a GPU).</summary>
    public bool IsCpu { get; }

    /// <summary>Environment variable: AUTOGRAD_HOST_LOOPS=0 makes the "cpu" device launch ILGPU kernels where it would run host loops.</summary>
    public const string HostLoopsVariable = "AUTOGRAD_HOST_LOOPS";

    private bool _hostLoops;

    /// <summary>
    /// Whether elementwise maps, fills, sums, transposes, optimizer updates and random fills run as
    /// host loops over the buffers (each with its kernel's bits) instead of ILGPU launches, as the SGEMM
    /// runs on the host there. CPU accelerator only, where a launch costs 150-300 us of thread
    /// wake-ups. Off for a host made here; the "cpu" device turns it on (unless AUTOGRAD_HOST_LOOPS=0);
    /// CPU simulators (Device.CpuSimulator) leave it off, to run the kernels.
    /// </summary>
    public bool HostLoops
    {
        get => _hostLoops;
        set
        {
            if (value && !IsCpu)
                throw new InvalidOperationException($"KernelHost.HostLoops: {Accelerator.Name} is not the CPU accelerator; host loops read host memory. Leave HostLoops off on a GPU.");
            _hostLoops = value;
        }
    }

    /// <summary>A host like this one with HostLoops set as given (same kernels, stream and tuned tables; its own launch count).</summary>
    /// <param name="on">Whether the view runs host loops.</param>
    public KernelHost WithHostLoops(bool on) => new(this, Stream) { HostLoops = on };

    /// <summary>Whether the "cpu" device runs host loops: on unless AUTOGRAD_HOST_LOOPS=0.</summary>
    public static bool HostLoopsFromEnvironment() =>
        SwitchFromEnvironment(HostLoopsVariable, unset: true, "ILGPU kernels on the cpu device", "host loops, the default", "");

    // A 0/1 switch read from the environment: unset (or empty) gives `unset`; any other value throws,
    // saying what 0, 1 and unset mean.
    private static bool SwitchFromEnvironment(string variable, bool unset, string zero, string one, string unsetMeans) =>
        Environment.GetEnvironmentVariable(variable)?.Trim() switch
        {
            null or "" => unset,
            "0" => false,
            "1" => true,
            var v => throw new ArgumentException($"{variable}={v}: use 0 ({zero}) or 1 ({one}), or unset it{unsetMeans}."),
        };

    /// <summary>Threads per group of the grid-stride kernels.</summary>
    public int GroupSize { get; }

    /// <summary>Threads per group of the tree reductions (a power of two).</summary>
    public int ReduceGroupSize { get; }

    /// <summary>Groups that fit on the device at once; grid-stride launches use at most this.</summary>
    public int MaxGroups { get; }

    /// <summary>Whether the 128x128-tile SGEMM kernels (Large, Wide) can run: groups of at least 256 threads.</summary>
    public bool CanUseLargeMatMul { get; }

    /// <summary>
    /// Threads (along x, along y) of a tiled-SGEMM group, each computing 4x4 of a (4y, 4x) tile of C:
    /// the largest shape of MatMulKernels.TiledGroups the accelerator's group size and shared memory
    /// allow (16x16 on a GPU). Tests and benchmarks may set a smaller one, before compiling steps: a
    /// compiled step plans its split-K scratch for the settings it was compiled under.
    /// </summary>
    public (int X, int Y) TiledGroup
    {
        get => _tiledGroup;
        set
        {
            if (!MatMulKernels.TiledGroups.Contains(value))
                throw new ArgumentException(
                    $"TiledGroup: {value.X}x{value.Y} is not a tiled-SGEMM group; use one of {string.Join(", ", MatMulKernels.TiledGroups.Select(t => $"{t.X}x{t.Y}"))}.");
            if (!MatMulKernels.TiledGroupFits(value, Accelerator.MaxNumThreadsPerGroup, Accelerator.MaxSharedMemoryPerGroup))
                throw new ArgumentException(
                    $"TiledGroup: {value.X}x{value.Y} needs {value.X * value.Y} threads and {MatMulKernels.TiledSharedBytes(value)} bytes of shared memory per group; " +
                    $"{Accelerator.Name} allows {Accelerator.MaxNumThreadsPerGroup} threads and {Accelerator.MaxSharedMemoryPerGroup} bytes. Use a smaller group.");
            _tiledGroup = value;
        }
    }

    /// <summary>
    /// Which SGEMM kernel MatMul takes (tests and benchmarks pin one; AUTOGRAD_MATMUL sets the initial
    /// value; Auto otherwise). Set it before compiling steps, which plan their scratch for it.
    /// </summary>
    public MatMulPath MatMulPath { get; set; }

    /// <summary>
    /// On a GPU, Auto runs products with at most this many outputs (M x N) on the warp-split kernel;
    /// 0 (the default until a GPU measures it) never does. Set it before compiling steps.
    /// </summary>
    public int WarpMaxOutputs
    {
        get => _warpMaxOutputs;
        set => _warpMaxOutputs = value >= 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "WarpMaxOutputs: a count of outputs, 0 or more (0 turns the rule off).");
    }

    private int _warpMaxOutputs;

    /// <summary>
    /// Forces the warps per 4x4 block of C of the Warp kernel (tests and benchmarks: 1, or a power of two
    /// dividing the group's warps); null chooses by shape (MatMulKernels.WarpTeam).
    /// </summary>
    public int? WarpTeam
    {
        get => _warpTeam;
        set => _warpTeam = value is null || (value > 0 && (value & (value - 1)) == 0) ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "WarpTeam: a power of two of warps (1, 2, 4, ...), or null to choose by shape.");
    }

    private int? _warpTeam;

    /// <summary>
    /// The settings that choose the SGEMM kernels, read or put back together (a compiled step keeps the
    /// ones it was compiled under; a test or benchmark restores the ones it found).
    /// </summary>
    public MatMulSettings MatMulSettings
    {
        get => new(MatMulPath, TiledGroup, MatMulSplitK, SplitKInOneLaunch, WarpMaxOutputs, SumTailInLaunch, PairProducts, WarpTeam, Autotune);
        set
        {
            TiledGroup = value.TiledGroup; // validated first: a refused group changes nothing
            MatMulPath = value.Path;
            MatMulSplitK = value.SplitK;
            SplitKInOneLaunch = value.SplitKInOneLaunch;
            WarpMaxOutputs = value.WarpMaxOutputs;
            SumTailInLaunch = value.SumTailInLaunch;
            PairProducts = value.PairProducts;
            WarpTeam = value.WarpTeam;
            Autotune = value.Autotune;
        }
    }

    /// <summary>Forces the number of K slices of the tiled SGEMM (tests); null chooses by shape.</summary>
    public int? MatMulSplitK { get; set; }

    /// <summary>Forces the number of chunks a batch sum's rows are cut into (tests); null chooses by shape.</summary>
    internal int? SumChunks { get; set; }

    /// <summary>Number of kernels compiled and loaded so far (each name and op type once).</summary>
    public int KernelLoads => _loads.Value;

    /// <summary>Kernel launches issued through this host (each launcher call counts its launches).</summary>
    public long Launches => Interlocked.Read(ref _launches.Value);

    /// <summary>ILGPU kernels launched through this host object (not its views), host loops and the host SGEMM excluded.</summary>
    internal long IlgpuLaunches => Interlocked.Read(ref _ilgpuLaunches);

    private long _ilgpuLaunches;

    /// <summary>Returns the cached kernel for (name, op), loading it on first use.</summary>
    /// <typeparam name="T">The launcher delegate type.</typeparam>
    /// <param name="name">Kernel name, unique within this assembly.</param>
    /// <param name="op">The op struct the kernel is specialised on, if any.</param>
    /// <param name="load">Loads the kernel; called once per key.</param>
    public T Load<T>(string name, Type? op, Func<Accelerator, T> load) where T : Delegate => Load(name, null, op, load);

    /// <summary>Returns the cached kernel for (name, shape, op), loading it on first use.</summary>
    /// <typeparam name="T">The launcher delegate type.</typeparam>
    /// <param name="name">Kernel name, unique within this assembly.</param>
    /// <param name="shape">The shape struct (e.g. a tile shape) the kernel is specialised on, if any.</param>
    /// <param name="op">The op struct the kernel is specialised on, if any.</param>
    /// <param name="load">Loads the kernel; called once per key.</param>
    public T Load<T>(string name, Type? shape, Type? op, Func<Accelerator, T> load) where T : Delegate
    {
        // A launch that is not a phase of the persistent kernel: it records nothing, and it must not run.
        if (Recorder != null)
            throw new PersistentRefusedException($"{name} cannot run as a phase of the persistent kernel (the 128x128-tile SGEMMs cannot; Persistent.cs lists what can)");
        // Every launcher loads right before it launches, so this also counts launches.
        Interlocked.Increment(ref _launches.Value);
        Interlocked.Increment(ref _ilgpuLaunches);
        return Peek(name, shape, op, load);
    }

    /// <summary>Load without counting a launch: for a kernel loaded to be measured (its occupancy) before it runs.</summary>
    internal T Peek<T>(string name, Type? shape, Type? op, Func<Accelerator, T> load) where T : Delegate
    {
        if (_cache.TryGetValue((name, shape, op), out var d)) return (T)d;
        return (T)_cache.GetOrAdd((name, shape, op), _ =>
        {
            Interlocked.Increment(ref _loads.Value);
            try
            {
                return load(Accelerator);
            }
            catch (InternalCompilerException)
            {
                // ILGPU 1.5.3's IR caches can fail a later, valid kernel's compile (a NullReferenceException
                // in its view lowering: seen on a momentum step's persistent kernel compiled after a row
                // chain's). Cleared, the same compile succeeds (ilgpu-facts.md); a second failure is real.
                Accelerator.Context.ClearCache(ClearCacheMode.Everything);
                return load(Accelerator);
            }
        });
    }

    /// <summary>The path named by AUTOGRAD_MATMUL (auto, small, tiled, large, wide, warp, wide16, host), else Auto.</summary>
    public static MatMulPath PathFromEnvironment()
    {
        string? name = Environment.GetEnvironmentVariable("AUTOGRAD_MATMUL");
        if (string.IsNullOrWhiteSpace(name)) return MatMulPath.Auto;
        return Enum.TryParse<MatMulPath>(name.Trim(), ignoreCase: true, out var path) && Enum.IsDefined(path)
            ? path
            : throw new ArgumentException(
                $"AUTOGRAD_MATMUL={name}: not a MatMul path. Use one of {string.Join(", ", Enum.GetNames<MatMulPath>().Select(n => n.ToLowerInvariant()))}, or unset it.");
    }

    /// <summary>Whether a split-K product sums its slices in the same launch (default) or in a second kernel.</summary>
    public bool SplitKInOneLaunch { get; set; } = true;

    /// <summary>
    /// Whether MatMulSum may sum a small C in the product's own launch (default), or always in a second
    /// launch (to measure what the tail saves).
    /// </summary>
    public bool SumTailInLaunch { get; set; } = true;

    /// <summary>
    /// Whether MatMulPair may run two tiled products in one launch (default), or always one after the
    /// other (to measure what pairing saves).
    /// </summary>
    public bool PairProducts { get; set; } = true;

    /// <summary>One arrival counter per output tile for one-launch split-K; zero between launches.</summary>
    internal ArrayView<int> SplitKArrivals => _arrivals.View.SubView(0, MaxSplitKTiles);

    /// <summary>The groups of a launch with a SumTail that are done; zero between launches.</summary>
    internal ArrayView<int> TailArrival => _arrivals.View.SubView(MaxSplitKTiles, 1);

    /// <summary>Counts work run on the host in place of a kernel (the CPU accelerator's SGEMM).</summary>
    internal void CountLaunch()
    {
        if (Recorder != null)
            throw new PersistentRefusedException("the host SGEMM (the CPU accelerator's Auto) cannot run as a phase of the persistent kernel; pin an ILGPU kernel (Warp, Tiled)");
        Interlocked.Increment(ref _launches.Value);
    }

    /// <summary>
    /// Where launchers that can run as a phase of the persistent kernel hand it their arguments instead
    /// of launching (Persistent.cs); null on a host that launches.
    /// </summary>
    internal PhaseRecorder? Recorder { get; private init; }

    /// <summary>A view of this host whose launches are recorded as phases, not run (Persistent.cs).</summary>
    /// <param name="recorder">Receives the phases.</param>
    internal KernelHost WithRecorder(PhaseRecorder recorder) => new(this, Stream, shareLaunches: false) { Recorder = recorder };

    /// <summary>
    /// Groups of GroupSize threads that can run at once of a loaded kernel: on CUDA the driver's
    /// occupancy count times the multiprocessors; on the CPU accelerator one a simulated multiprocessor
    /// (it runs a group per multiprocessor); elsewhere MaxGroups.
    /// </summary>
    /// <param name="launcher">A launcher Load or Peek returned.</param>
    internal int ResidentGroups(Delegate launcher)
    {
        if (IsCpu) return Accelerator.NumMultiprocessors;
        if (KernelUtil.TryGetKernel(launcher, out var kernel) && kernel is ILGPU.Runtime.Cuda.CudaKernel cuda)
        {
            Accelerator.Bind();
            return CudaFunction.GroupsPerMultiprocessor(cuda.FunctionPtr, GroupSize, 0) is >= 0 and var n ? n * Accelerator.NumMultiprocessors : MaxGroups;
        }
        return MaxGroups;
    }

    /// <summary>Zeroes the split-K and tail counters (after a persistent run gave up on a barrier and left them counting).</summary>
    internal void ResetCounters()
    {
        _arrivals.MemSetToZero(Stream);
        Stream.Synchronize();
    }

    /// <summary>Grid-stride launch geometry for n work items.</summary>
    /// <param name="n">Number of work items.</param>
    public KernelConfig GridStride(long n)
    {
        long groups = (n + GroupSize - 1) / GroupSize;
        int g = (int)Math.Clamp(groups, 1, MaxGroups);
        return new KernelConfig(g, GroupSize);
    }

    /// <summary>Waits until every queued launch has finished.</summary>
    public void Synchronize() => Stream.Synchronize();
}
