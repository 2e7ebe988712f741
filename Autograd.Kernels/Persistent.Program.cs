// The persistent step kernel's host side (Persistent.cs says what and why): the recorder a step's
// launchers hand their phases to, and PersistentProgram, which composes them into one kernel type,
// sizes its grid to what can be resident, loads it once and launches it.
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>Thrown on a recording host by a launch that cannot be a phase of the persistent kernel.</summary>
public sealed class PersistentRefusedException(string message) : Exception(message);

/// <summary>The phases a recording host was handed, in launch order.</summary>
public sealed class PhaseRecorder
{
    private readonly List<IPhase> _phases = new();
    private readonly List<string> _names = new();

    /// <summary>The phases recorded so far (boxed).</summary>
    public IReadOnlyList<IPhase> Phases => _phases;

    /// <summary>A short name per phase, e.g. "Warp" or "Tiled pair".</summary>
    public IReadOnlyList<string> Names => _names;

    internal void Add<TPhase>(TPhase phase, string name) where TPhase : struct, IPhase
    {
        _phases.Add(phase);
        _names.Add(name);
    }
}

/// <summary>
/// A compiled step's launches as one persistent kernel (see Persistent.cs): built from a recording of
/// the launches, then launched in their place. Owns its barrier's state on the device.
/// </summary>
public sealed class PersistentProgram : IDisposable
{
    /// <summary>
    /// Spins a barrier waits before it gives up on a GPU: each is an atomic read in L2 (~0.5-1 us), so
    /// some seconds, far beyond any phase of a step. The CPU accelerator never gives up (a phase there
    /// may take as long as it likes; its grid is never larger than its simulated multiprocessors).
    /// </summary>
    public const int GpuSpinLimit = 1 << 22;

    private static readonly KernelSpecialization StepBounds = LaunchBoundsAttribute.Of(typeof(PersistentProgram), nameof(StepKernel));

    private readonly MemoryBuffer1D<int, Stride1D.Dense>? _owned;
    private readonly ArrayView<int> _state;
    private readonly Action<KernelHost> _launch;
    private readonly KernelHost _host;
    private bool _disposed;

    private PersistentProgram(KernelHost host, MemoryBuffer1D<int, Stride1D.Dense>? owned, ArrayView<int> state, Action<KernelHost> launch,
        int grid, IReadOnlyList<string> phases, Type type, int steps)
    {
        ProgramType = type;
        StepsPerLaunch = steps;
        _host = host;
        _owned = owned;
        _state = state;
        _launch = launch;
        GridGroups = grid;
        PhaseNames = phases;
    }

    /// <summary>The composed phases: the kernel's type argument, Then&lt;P0, Then&lt;P1, ..., Wait&gt;, Wait&gt; (tests compile it to PTX).</summary>
    public Type ProgramType { get; }

    /// <summary>Steps one launch runs (Repeat), 1 for a single step.</summary>
    public int StepsPerLaunch { get; }

    /// <summary>Static shared memory a group of the kernel holds (bytes): the sum of its phases'.</summary>
    public int SharedBytes { get; private init; }

    /// <summary>Spins a barrier waits before it gives up (<see cref="GridBarrier.NoSpinLimit"/>: never).</summary>
    public int SpinLimit { get; private init; }

    /// <summary>Groups of the grid (all resident at once).</summary>
    public int GridGroups { get; }

    /// <summary>The phases between barriers, in order ("A &amp; B" for two that share the time between two barriers); a grid barrier separates each from the next.</summary>
    public IReadOnlyList<string> PhaseNames { get; }

    /// <summary>"Persistent: 4 phases (Warp, Warp + sum, Warp, Tiled pair), 3 grid barriers, 200 groups of 256, 21,516 bytes of shared memory a group", and the steps a launch where more than one.</summary>
    public override string ToString() =>
        $"Persistent: {PhaseNames.Count} phases ({string.Join(", ", PhaseNames)}), {PhaseNames.Count - 1} grid barriers, {GridGroups} groups of {_host.GroupSize}, " +
        $"{SharedBytes:N0} bytes of shared memory a group" + (StepsPerLaunch > 1 ? $"; {StepsPerLaunch} steps a launch, a barrier after each" : "") +
        (Fences == BarrierFence.AcquireRelease ? "; barriers fenced acquire-release" : "");

    /// <summary>The program's grid barriers' fences (KernelHost.BarrierFence when it was built, on CUDA; ILGPU's elsewhere).</summary>
    public BarrierFence Fences { get; private init; }

    /// <summary>
    /// Records the launches `record` makes on a recording view of the host and builds them into one
    /// kernel, loaded and sized here; or says why they cannot be (a launch that is not a phase, host
    /// loops, a kernel too large to be resident).
    /// </summary>
    /// <param name="host">The host whose kernels and settings the launches use.</param>
    /// <param name="record">Makes the step's launches on the host it is given.</param>
    /// <param name="refusal">Why there is no program, when null is returned.</param>
    /// <param name="spinLimit">Spins before a barrier gives up (default: GpuSpinLimit on a GPU, never on the CPU accelerator).</param>
    /// <param name="state">The barrier's state, 3 ints, zero (programs run one after another on one stream may share it); null: the program allocates its own.</param>
    /// <param name="repeat">Runs the step this many times in one launch, each loss into a history (null: once).</param>
    public static PersistentProgram? TryBuild(KernelHost host, Action<KernelHost> record, out string refusal, int? spinLimit = null,
        ArrayView<int> state = default, PersistentRepeat? repeat = null) => TryBuild(host, record, out refusal, spinLimit, state, repeat, groups: null);

    // groups: a grid of this many groups, resident or not (tests of the barrier's guard).
    internal static PersistentProgram? TryBuild(KernelHost host, Action<KernelHost> record, out string refusal, int? spinLimit,
        ArrayView<int> state, PersistentRepeat? repeat, int? groups)
    {
        if (repeat is { } r && (r.Steps < 1 || r.Loss.Length < 1 || r.History.Length < r.Steps))
            throw new ArgumentException($"PersistentProgram: a repeat of {r.Steps} steps needs a loss of 1 element and a history of {r.Steps}; got {r.Loss.Length} and {r.History.Length}.");
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(record);
        if (host.HostLoops) { refusal = "the host runs host loops (the \"cpu\" device), which are not kernels"; return null; }
        if (state.IsValid && state.Length != 3) throw new ArgumentException($"PersistentProgram: the barrier's state has {state.Length} ints; it needs 3.");
        var recorder = new PhaseRecorder();
        try
        {
            record(host.WithRecorder(recorder));
        }
        catch (PersistentRefusedException e)
        {
            refusal = e.Message;
            return null;
        }
        if (recorder.Phases.Count == 0) { refusal = "the step launches nothing"; return null; }
        // Consecutive phases that touch nothing another of them writes share the time between two
        // barriers: Then<P0, Then<P1, ..., Go>, Go> within such a run, and the runs joined by Wait.
        var runs = new List<(List<IPhase> Phases, List<string> Names, PhaseAccess Access)>();
        for (int i = 0; i < recorder.Phases.Count; i++)
        {
            var access = new PhaseAccess();
            recorder.Phases[i].Touches(access);
            if (runs.Count > 0 && !runs[^1].Access.ConflictsWith(access))
            {
                runs[^1].Phases.Add(recorder.Phases[i]);
                runs[^1].Names.Add(recorder.Names[i]);
                runs[^1].Access.Add(access);
            }
            else runs.Add(([recorder.Phases[i]], [recorder.Names[i]], access));
        }
        var (program, type) = Compose(runs.Select(r => Compose(r.Phases.Select(p => ((object)p, p.GetType())).ToList(), typeof(Go))).ToList(), typeof(Wait));
        if (repeat is { } rep)
        {
            type = typeof(Repeat<>).MakeGenericType(type);
            program = Activator.CreateInstance(type, program, rep.Steps, rep.Loss, rep.History)!;
        }
        int wanted = ((IPhase)program).Groups(host.GroupSize, host.Accelerator.WarpSize);
        int shared = ((IPhase)program).SharedBytes;
        if (shared > host.Accelerator.MaxSharedMemoryPerGroup)
        {
            refusal = $"the persistent kernel's {recorder.Phases.Count} phases need {shared} bytes of shared memory a group " +
                $"(each tiled phase {MatMulKernels.TiledPhaseSharedBytes((16, 16))} on groups of 16x16, each warp phase {MatMulKernels.WarpSharedBytes}, " +
                $"each group sum {Reduce.GroupSumBytes}); {host.Accelerator.Name} gives a group {host.Accelerator.MaxSharedMemoryPerGroup}";
            return null;
        }
        var owned = state.IsValid ? null : host.Accelerator.Allocate1D<int>(3);
        try
        {
            if (owned != null)
            {
                owned.MemSetToZero(host.Stream);
                host.Stream.Synchronize();
                state = owned.View;
            }
            var barrier = GridBarrier.For(host, state, spinLimit);
            var bind = typeof(PersistentProgram).GetMethod(nameof(Bind), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(type);
            Action<KernelHost> launch;
            int grid;
            try
            {
                (launch, grid) = ((Action<KernelHost>, int))bind.Invoke(null, [host, program, barrier, wanted, groups])!;
            }
            catch (TargetInvocationException e) when (e.InnerException is { } load)
            {
                // The driver refused the kernel (its parameters over 4 KB, say, for a long step) or
                // ILGPU could not compile it; a failed compile can leave ILGPU's caches broken
                // (ilgpu-facts.md), which clearing them mends. The step keeps its launches.
                host.Accelerator.Context.ClearCache(ClearCacheMode.Everything);
                owned?.Dispose();
                refusal = $"the persistent kernel of {recorder.Phases.Count} phases did not load ({load.GetType().Name}: {load.Message})";
                return null;
            }
            if (grid < 1)
            {
                owned?.Dispose();
                refusal = "the persistent kernel does not fit a multiprocessor (its registers or shared memory)";
                return null;
            }
            refusal = "";
            var names = runs.Select(r => string.Join(" & ", r.Names)).ToArray();
            return new PersistentProgram(host, owned, state, launch, grid, names, type, repeat?.Steps ?? 1) { SharedBytes = shared, Fences = barrier.Fences, SpinLimit = barrier.SpinLimit };
        }
        catch
        {
            owned?.Dispose();
            throw;
        }
    }

    // Parts folded from the last back into Then<P0, Then<P1, ... Pn-1, TJoin>, TJoin>.
    private static (object Value, Type Type) Compose(List<(object Value, Type Type)> parts, Type join)
    {
        var (value, type) = parts[^1];
        for (int i = parts.Count - 2; i >= 0; i--)
        {
            type = typeof(Then<,,>).MakeGenericType(parts[i].Type, type, join);
            value = Activator.CreateInstance(type, parts[i].Value, value)!;
        }
        return (value, type);
    }

    // Loads the program's kernel (once per program type and host), counts the groups that can be
    // resident, and returns a launch of the grid that holds no more than both.
    private static (Action<KernelHost>, int) Bind<TProgram>(KernelHost host, object boxed, GridBarrier barrier, int wanted, int? groups)
        where TProgram : struct, IPhase
    {
        var program = (TProgram)boxed;
        var bounds = host.Bounds(StepBounds);
        string name = KernelHost.HasBounds(bounds) ? "Persistent/bounded" : "Persistent";
        Func<Accelerator, Action<AcceleratorStream, KernelConfig, TProgram, GridBarrier>> load = acc => acc.LoadKernel<TProgram, GridBarrier>(StepKernel, bounds);
        int resident = host.ResidentGroups(host.Peek(name, null, typeof(TProgram), load));
        int grid = groups ?? Math.Min(resident, Math.Max(1, wanted));
        var config = new KernelConfig(Math.Max(1, grid), host.GroupSize);
        return (h => h.Load(name, typeof(TProgram), load)(h.Stream, config, program, barrier), grid);
    }

    /// <summary>The whole program in one launch: its phases with a grid barrier between each two.</summary>
    [LaunchBounds(256, 2)]
    internal static void StepKernel<TProgram>(
        TProgram program,     // the phases, each holding its buffers and sizes
        GridBarrier barrier)  // over this grid, whose groups are all resident
        where TProgram : struct, IPhase
    {
        program.Run(barrier);
    }

    /// <summary>Queues one run of the program on the host's stream (its kernel is loaded already).</summary>
    /// <param name="host">The host, or a view of it on another stream (a CUDA graph's capture).</param>
    public void Launch(KernelHost host)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _launch(host);
    }

    /// <summary>
    /// Waits for the device and says whether a barrier gave up since the program was built (its grid
    /// was not all resident: another context held multiprocessors). The results of such a run are
    /// wrong; the barrier's state and the host's split-K and tail counters are zeroed again, so later
    /// launches are right.
    /// </summary>
    public bool TimedOut()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _host.Synchronize();
        var flag = new int[3];
        _state.CopyToCPU(_host.Stream, flag);
        _host.Synchronize();
        if (flag[2] == 0) return false;
        _state.MemSetToZero(_host.Stream);
        _host.ResetCounters();
        return true;
    }

    /// <summary>Frees the barrier's state when the program allocated it (idempotent).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _owned?.Dispose();
    }
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that makes compiled steps replay as one persistent kernel (1) or as their launches (0, the default).</summary>
    public const string PersistentVariable = "AUTOGRAD_PERSISTENT";

    /// <summary>
    /// Whether a step compiled on this host replays as one persistent kernel (Persistent.cs) where all
    /// its launches can be phases, instead of its launches (default: off, unless AUTOGRAD_PERSISTENT=1;
    /// unmeasured on a GPU when written). Read when a step is compiled; the step's Describe says whether
    /// it runs persistent, or why not.
    /// </summary>
    public bool PersistentSteps { get; set; } = SwitchFromEnvironment(PersistentVariable, unset: false, "replay a step's launches, the default", "one persistent kernel a step", "");
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that chooses grid barriers' fences: sc (sequentially consistent, the default) or acqrel (acquire-release).</summary>
    public const string BarrierFenceVariable = "AUTOGRAD_BARRIER_FENCE";

    /// <summary>
    /// The fences of the persistent kernel's grid barriers (GridBarrier) on CUDA: ILGPU's device-level
    /// fence, sequentially consistent (the default, unless AUTOGRAD_BARRIER_FENCE=acqrel), or an
    /// acquire-release one in inline PTX, all a barrier needs. Unmeasured on a GPU when written: the
    /// bench's floor rows time a barrier with each. Read when a persistent program is built; other
    /// accelerators always use ILGPU's.
    /// </summary>
    public BarrierFence BarrierFence { get; set; } = Environment.GetEnvironmentVariable(BarrierFenceVariable)?.Trim() switch
    {
        null or "" or "sc" => BarrierFence.SequentiallyConsistent,
        "acqrel" => BarrierFence.AcquireRelease,
        var v => throw new ArgumentException($"{BarrierFenceVariable}={v}: use sc (ILGPU's sequentially consistent fences, the default) or acqrel (acquire-release fences), or unset it."),
    };
}
