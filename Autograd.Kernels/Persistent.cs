// The persistent step kernel: a compiled step's launches run as the phases of one kernel, with a
// software grid barrier between consecutive phases.
//
// Why: the seed's compiled step is 4 launches of 4-13 us on an H200 (runs 6-8), where the work of
// each is a fraction of a microsecond of memory traffic and arithmetic. Each launch pays its ramp
// (groups placed on multiprocessors, first loads from memory) and its drain, and a CUDA graph node
// costs ~1 us more. One kernel whose groups stay resident pays the ramp once and a grid barrier
// (1.3-1.6 us measured on an H100, ilgpu-facts.md) between phases. Unmeasured on a GPU when written.
//
// How: the step's program is replayed once on a recording host (KernelHost.WithRecorder). The
// launchers that can run as a phase hand the recorder a phase struct holding their arguments instead
// of launching: the warp and tiled SGEMMs here (one product or a pair, with their epilogues, split-K
// and loss tail), and in Persistent.Phases.cs the Small SGEMM, split-K's second pass, elementwise
// maps, zips and fills, the optimizer updates, the sums and transposes. The 128x128-tile SGEMMs
// (Large, Wide, Wide16) number their tiles by the launch's grid and refuse
// (PersistentRefusedException), as do host loops; the step then keeps its launches.
// The phases compose into one type the way fused elementwise ops do (ilgpu-facts.md): consecutive
// phases that touch nothing another of them writes (PhaseAccess: the seed's are all dependent, a
// 3-layer net's weight and bias updates are not) run between the same two barriers,
// Then<P0, P1, Go>; such runs follow one another with a barrier between, Then<R0, Then<R1, ...,
// Wait>, Wait>. StepKernel<TProgram>
// runs it all: ILGPU inlines the whole program into one kernel. Every phase strides over its work
// by Grid.IdxX / Grid.DimX, so any grid computes the same bits as the phase's own launch (the order
// of every sum is fixed by the thread, team and slice, never by the group that runs it).
//
// The grid: no more groups than can be resident at once (the driver's occupancy count on CUDA; one
// group a multiprocessor on the CPU accelerator, which runs a group per simulated multiprocessor):
// a barrier waiting on a group that is not yet running never returns. As a guard, a group that has
// spun SpinLimit times on a barrier marks the step as timed out and goes on (wrong results, no
// hung device), every other wait then ends within 64 polls, and the host reads the mark
// (PersistentProgram.TimedOut).
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet.Kernels;

/// <summary>One phase of the persistent step kernel: run by every thread of every group of its grid.</summary>
public interface IPhase
{
    /// <summary>Does the phase's work, striding over it by the grid's groups.</summary>
    /// <param name="barrier">The grid barrier, for phases made of phases.</param>
    void Run(GridBarrier barrier);

    /// <summary>Groups that find work in this phase (host side: the grid needs no more).</summary>
    /// <param name="groupSize">Threads a group.</param>
    /// <param name="warpSize">Threads a warp.</param>
    int Groups(int groupSize, int warpSize);

    /// <summary>
    /// Static shared memory the phase allocates in a group (bytes; host side). ILGPU gives each
    /// allocation in the inlined program its own array, so a program needs the sum over its phases,
    /// which must fit a group's (48 KB on a GPU without opting in to more).
    /// </summary>
    int SharedBytes { get; }

    /// <summary>
    /// Says what the phase reads and writes (host side), so that phases that touch nothing another
    /// writes can share the time between two barriers (PhaseAccess).
    /// </summary>
    /// <param name="access">Collects the phase's buffers.</param>
    void Touches(PhaseAccess access);
}

/// <summary>
/// The device memory a phase reads and writes, and whether it counts groups in the host's split-K
/// and tail counters (which two phases must not do between the same two barriers). Host side.
/// </summary>
public sealed class PhaseAccess
{
    private readonly List<(long Start, long End)> _reads = new(), _writes = new();
    private bool _counters;

    /// <summary>The phase reads this buffer.</summary>
    /// <typeparam name="T">Element type.</typeparam>
    /// <param name="view">The buffer (an invalid or empty view adds nothing).</param>
    public void Read<T>(ArrayView<T> view) where T : unmanaged => Add(_reads, view);

    /// <summary>The phase writes this buffer (or reads and writes it).</summary>
    /// <typeparam name="T">Element type.</typeparam>
    /// <param name="view">The buffer (an invalid or empty view adds nothing).</param>
    public void Write<T>(ArrayView<T> view) where T : unmanaged => Add(_writes, view);

    /// <summary>The phase counts groups in the host's split-K or tail counters.</summary>
    public void UsesCounters() => _counters = true;

    private static void Add<T>(List<(long, long)> into, ArrayView<T> view) where T : unmanaged
    {
        if (!view.IsValid || view.Length == 0) return;
        long start = view.LoadEffectiveAddressAsPtr().ToInt64();
        into.Add((start, start + view.LengthInBytes));
    }

    /// <summary>Whether a phase with this access must wait for one with the other's (a write meets a read or a write, or both count).</summary>
    internal bool ConflictsWith(PhaseAccess other) =>
        Overlap(_writes, other._reads) || Overlap(_writes, other._writes) || Overlap(_reads, other._writes) || (_counters && other._counters);

    /// <summary>Adds the other's buffers and counters to this one's (the phases between two barriers).</summary>
    internal void Add(PhaseAccess other)
    {
        _reads.AddRange(other._reads);
        _writes.AddRange(other._writes);
        _counters |= other._counters;
    }

    private static bool Overlap(List<(long Start, long End)> a, List<(long Start, long End)> b) =>
        a.Any(x => b.Any(y => x.Start < y.End && y.Start < x.End));
}

/// <summary>
/// A software barrier over every group of a grid whose groups are all resident: counts the groups in,
/// the last one advances a generation the others wait on. Gives up after a spin limit (see the file's header).
/// </summary>
public readonly struct GridBarrier
{
    // (3): ints 0-1 one 64-bit word, the arrivals at the current barrier (low 32 bits) and its
    // generation (high 32 bits); int 2 timed out (0 or 1). Zero at the first launch.
    private readonly ArrayView<int> _state;
    private readonly int _spinLimit;

    internal GridBarrier(ArrayView<int> state, int spinLimit)
    {
        _state = state;
        _spinLimit = spinLimit;
    }

    /// <summary>Returns once every group of the grid has called it (or the spin limit has passed).</summary>
    public void Wait()
    {
        // Every thread's stores come before the group's barrier; thread 0's fences then order them
        // before its arrival, and the other groups' stores before what this group reads next.
        Group.Barrier();
        if (Group.LinearIndex == 0)
        {
            // Arrivals and generation share a word, so a group arrives with one atomic add that also
            // tells it the generation to wait past, and the last one zeroes the arrivals and turns the
            // generation over with a second: two atomics in L2 on the barrier's path, where a count and
            // a generation apart took five (a flag read, a generation read, the arrival, the reset, the
            // turn), each a round trip the last group made after its share of the phase.
            var word = _state.Cast<long>();
            int groups = Grid.Dimension.Size;
            MemoryFence.DeviceLevel();
            long arrived = Atomic.Add(ref word[0], 1L);
            if ((int)(arrived & 0xFFFFFFFFL) == groups - 1)
            {
                Atomic.Add(ref word[0], (1L << 32) - groups);
            }
            else
            {
                long generation = arrived >> 32;
                for (int spins = 0; Atomic.Add(ref word[0], 0L) >> 32 == generation; spins++)
                {
                    // A barrier that gave up, here or in another group, ends every later wait too: the
                    // run is wrong already (the host checks the flag), and must only end soon.
                    if ((spins & 63) == 63 && Atomic.Or(ref _state[2], 0) != 0) break;
                    if (spins < _spinLimit) continue;
                    Atomic.Exchange(ref _state[2], 1);
                    break;
                }
            }
            MemoryFence.DeviceLevel();
        }
        Group.Barrier();
    }
}

/// <summary>What comes between two composed phases: a grid barrier (Wait) or nothing (Go).</summary>
public interface IJoin
{
    /// <summary>Called by every thread of every group between the two phases.</summary>
    /// <param name="barrier">The grid barrier.</param>
    void Join(GridBarrier barrier);
}

/// <summary>A grid barrier between two phases: the second reads what the first writes.</summary>
public readonly struct Wait : IJoin
{
    /// <inheritdoc/>
    public void Join(GridBarrier barrier) => barrier.Wait();
}

/// <summary>
/// Nothing between two phases: neither reads what the other writes, nor do both count groups in the
/// host's counters (PhaseAccess), so each group does its share of one, then of the other.
/// </summary>
public readonly struct Go : IJoin
{
    /// <inheritdoc/>
    public void Join(GridBarrier barrier)
    {
    }
}

/// <summary>Two phases, one after the other, joined by TJoin (a barrier or nothing).</summary>
/// <typeparam name="TFirst">The first phase.</typeparam>
/// <typeparam name="TRest">What follows it.</typeparam>
/// <typeparam name="TJoin">What comes between them.</typeparam>
public readonly struct Then<TFirst, TRest, TJoin> : IPhase
    where TFirst : struct, IPhase
    where TRest : struct, IPhase
    where TJoin : struct, IJoin
{
    private readonly TFirst _first;
    private readonly TRest _rest;

    /// <summary>Composes two phases (the persistent program is built by reflection from recorded phases).</summary>
    /// <param name="first">The first phase.</param>
    /// <param name="rest">What follows it.</param>
    public Then(TFirst first, TRest rest)
    {
        _first = first;
        _rest = rest;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        _first.Run(barrier);
        default(TJoin).Join(barrier);
        _rest.Run(barrier);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => Math.Max(_first.Groups(groupSize, warpSize), _rest.Groups(groupSize, warpSize));

    /// <inheritdoc/>
    public int SharedBytes => _first.SharedBytes + _rest.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _first.Touches(access);
        _rest.Touches(access);
    }
}

/// <summary>
/// A step repeated in one launch (Run(steps: n) as one kernel): the body, a grid barrier, and the
/// step's loss copied into its place in the history, n times. The copy comes before the next step's
/// body can write the loss again: that takes the next barrier, which the copying group has not reached.
/// </summary>
/// <typeparam name="TBody">One step's phases.</typeparam>
public readonly struct Repeat<TBody> : IPhase
    where TBody : struct, IPhase
{
    private readonly TBody _body;
    private readonly int _steps;
    private readonly ArrayView<float> _loss;    // (1) where the body leaves its loss
    private readonly ArrayView<float> _history; // (steps) each step's loss

    /// <summary>The body `steps` times, each loss into history (built by reflection from a recorded step).</summary>
    /// <param name="body">One step's phases.</param>
    /// <param name="steps">Steps, at least 1.</param>
    /// <param name="loss">Where the body leaves its loss (1 element).</param>
    /// <param name="history">Each step's loss (steps elements).</param>
    public Repeat(TBody body, int steps, ArrayView<float> loss, ArrayView<float> history)
    {
        _body = body;
        _steps = steps;
        _loss = loss;
        _history = history;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        for (int s = 0; s < _steps; s++)
        {
            _body.Run(barrier);
            barrier.Wait();
            if (Grid.IdxX == 0 && Group.LinearIndex == 0) _history[s] = _loss[0];
        }
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => _body.Groups(groupSize, warpSize);

    /// <inheritdoc/>
    public int SharedBytes => _body.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _body.Touches(access);
        access.Read(_loss);
        access.Write(_history);
    }
}

/// <summary>How many times a persistent program repeats its step in one launch, and where each loss goes.</summary>
/// <param name="Steps">Steps a launch runs.</param>
/// <param name="Loss">Where the step leaves its loss (1 element).</param>
/// <param name="History">Each step's loss (Steps elements).</param>
public readonly record struct PersistentRepeat(int Steps, ArrayView<float> Loss, ArrayView<float> History);

/// <summary>The warp SGEMM as a phase: one product (the second job empty) or two, then the first's tail.</summary>
/// <typeparam name="TEpi1">The first product's epilogue.</typeparam>
/// <typeparam name="TEpi2">The second product's epilogue.</typeparam>
/// <typeparam name="TTail">The first product's tail (NoTail for a pair).</typeparam>
public readonly struct WarpPhase<TEpi1, TEpi2, TTail> : IPhase
    where TEpi1 : struct, IBinaryOp
    where TEpi2 : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly WarpJob<TEpi1> _first;
    private readonly WarpJob<TEpi2> _second;
    private readonly int _team;
    private readonly TTail _tail;

    internal WarpPhase(WarpJob<TEpi1> first, WarpJob<TEpi2> second, int team, TTail tail)
    {
        _first = first;
        _second = second;
        _team = team;
        _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        MatMulKernels.WarpBlocks(_first, _second, _team);
        _tail.Finish(_first.C, _first.G.M * _first.G.N);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize)
    {
        long teams = Math.Max(1, groupSize / warpSize / _team);
        return (int)Math.Min(int.MaxValue, ((long)_first.Blocks + _second.Blocks + teams - 1) / teams);
    }

    /// <inheritdoc/>
    public int SharedBytes => MatMulKernels.WarpSharedBytes + _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        foreach (var (a, b, c, e) in new[] { (_first.A, _first.B, _first.C, _first.E), (_second.A, _second.B, _second.C, _second.E) })
        {
            access.Read(a);
            access.Read(b);
            access.Read(e);
            access.Write(c);
        }
        _tail.Touches(access, _first.C);
    }
}

/// <summary>
/// The tiled SGEMM as a phase: one product (the second job has no groups) or two, each with its
/// split-K fixup, then the first's tail. Needs groups of exactly TShape's threads.
/// </summary>
/// <typeparam name="TShape">The tiled group's shape.</typeparam>
/// <typeparam name="TEpi1">The first product's epilogue.</typeparam>
/// <typeparam name="TEpi2">The second product's epilogue.</typeparam>
/// <typeparam name="TTail">The first product's tail (NoTail for a pair).</typeparam>
public readonly struct TiledPhase<TShape, TEpi1, TEpi2, TTail> : IPhase
    where TShape : struct, ITileShape
    where TEpi1 : struct, IBinaryOp
    where TEpi2 : struct, IBinaryOp
    where TTail : struct, IProductTail
{
    private readonly TiledJob<TEpi1> _first;
    private readonly TiledJob<TEpi2> _second;
    private readonly TTail _tail;

    internal TiledPhase(TiledJob<TEpi1> first, TiledJob<TEpi2> second, TTail tail)
    {
        _first = first;
        _second = second;
        _tail = tail;
    }

    /// <inheritdoc/>
    public void Run(GridBarrier barrier)
    {
        int sx = default(TShape).ThreadsX, sy = default(TShape).ThreadsY;
        var tA = SharedMemory.Allocate<float>(MatMulKernels.TiledSliceFloats(default(TShape).ThreadsY)); // [k][m] slice of A
        var tB = SharedMemory.Allocate<float>(MatMulKernels.TiledSliceFloats(default(TShape).ThreadsX)); // [k][n] slice of B
        int t = Group.LinearIndex, tx = t % sx, ty = t / sx;
        int total = _first.Groups + _second.Groups;
        // A whole group takes each trip and branch together, so it reaches every barrier inside.
        for (int idx = Grid.IdxX; idx < total; idx += Grid.DimX)
        {
            if (idx < _first.Groups) MatMulKernels.Job<TShape, TEpi1>(tA, tB, _first, idx, tx, ty, prefetch: false);
            else MatMulKernels.Job<TShape, TEpi2>(tA, tB, _second, idx - _first.Groups, tx, ty, prefetch: false);
        }
        _tail.Finish(_first.C, _first.G.M * _first.G.N);
    }

    /// <inheritdoc/>
    public int Groups(int groupSize, int warpSize) => _first.Groups + _second.Groups;

    /// <inheritdoc/>
    public int SharedBytes =>
        MatMulKernels.TiledPhaseSharedBytes((default(TShape).ThreadsX, default(TShape).ThreadsY)) + _tail.SharedBytes;

    /// <inheritdoc/>
    public void Touches(PhaseAccess access)
    {
        _first.Touches(access);
        _second.Touches(access);
        _tail.Touches(access, _first.C);
    }
}

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

    /// <summary>Groups of the grid (all resident at once).</summary>
    public int GridGroups { get; }

    /// <summary>The phases between barriers, in order ("A &amp; B" for two that share the time between two barriers); a grid barrier separates each from the next.</summary>
    public IReadOnlyList<string> PhaseNames { get; }

    /// <summary>"Persistent: 4 phases (Warp, Warp + sum, Warp, Tiled pair), 3 grid barriers, 200 groups of 256, 21,516 bytes of shared memory a group", and the steps a launch where more than one.</summary>
    public override string ToString() =>
        $"Persistent: {PhaseNames.Count} phases ({string.Join(", ", PhaseNames)}), {PhaseNames.Count - 1} grid barriers, {GridGroups} groups of {_host.GroupSize}, " +
        $"{SharedBytes:N0} bytes of shared memory a group" + (StepsPerLaunch > 1 ? $"; {StepsPerLaunch} steps a launch, a barrier after each" : "");

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
            int limit = spinLimit ?? (host.IsCpu ? int.MaxValue : GpuSpinLimit);
            var barrier = new GridBarrier(state, limit);
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
            return new PersistentProgram(host, owned, state, launch, grid, names, type, repeat?.Steps ?? 1) { SharedBytes = shared };
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
