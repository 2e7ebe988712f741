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
// of launching: the warp and tiled SGEMMs (Persistent.MatMul.cs: one product or a pair, with their epilogues, split-K
// and loss tail), and in Persistent.Phases.cs the Small SGEMM, split-K's second pass, elementwise
// maps, zips and fills, the optimizer updates, the sums and transposes. The 128x128-tile SGEMMs
// (Large, Wide, Wide16) number their tiles by the launch's grid and refuse
// (PersistentRefusedException), as do host loops; the step then keeps its launches.
// The phases compose into one type the way fused elementwise ops do (ilgpu-facts.md): consecutive
// phases that touch nothing another of them writes (PhaseAccess: the seed's are all dependent, a
// 3-layer net's weight and bias updates are not) run between the same two barriers,
// Then<P0, P1, Go>; such runs follow one another with a barrier between, Then<R0, Then<R1, ...,
// Wait>, Wait>. StepKernel<TProgram> runs it all in one kernel, each phase a function it calls
// (PhaseCall says why). Every phase strides over its work by Grid.IdxX / Grid.DimX, so any grid
// computes the same bits as the phase's own launch (the order of every sum is fixed by the thread,
// team and slice, never by the group that runs it).
//
// The grid: no more groups than can be resident at once (the driver's occupancy count on CUDA; one
// group a multiprocessor on the CPU accelerator, which runs a group per simulated multiprocessor):
// a barrier waiting on a group that is not yet running never returns. As a guard on a GPU, a group
// that has spun GpuSpinLimit times on a barrier marks the step as timed out and goes on (wrong
// results, no hung device), every other wait then ends within 64 polls, and the host reads the mark
// (PersistentProgram.TimedOut). The CPU accelerator's barriers never give up (NoSpinLimit).
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

/// <summary>The fences of a grid barrier (KernelHost.BarrierFence; AcquireRelease on CUDA only).</summary>
public enum BarrierFence
{
    /// <summary>ILGPU's device-level fence: sequentially consistent at GPU scope (MEMBAR.SC.GPU in SASS).</summary>
    SequentiallyConsistent,

    /// <summary>An acquire-release fence at GPU scope (inline PTX fence.acq_rel.gpu; MEMBAR.ALL.GPU in SASS).</summary>
    AcquireRelease,
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
    // 1: the fences are acquire-release (CUDA, BarrierFence.AcquireRelease).
    private readonly int _lightFences;

    internal GridBarrier(ArrayView<int> state, int spinLimit, bool lightFences = false)
    {
        _state = state;
        _spinLimit = spinLimit;
        _lightFences = lightFences ? 1 : 0;
    }

    /// <summary>
    /// The barrier over `state` for a grid on host's accelerator, fenced as KernelHost.BarrierFence
    /// says on CUDA; elsewhere (the CPU accelerator) with ILGPU's fences. Without a spin limit it takes
    /// the device's: PersistentProgram.GpuSpinLimit on a GPU, none (NoSpinLimit) on the CPU accelerator.
    /// </summary>
    internal static GridBarrier For(KernelHost host, ArrayView<int> state, int? spinLimit = null) =>
        new(state, spinLimit ?? (host.IsCpu ? NoSpinLimit : PersistentProgram.GpuSpinLimit),
            host.Accelerator.AcceleratorType == AcceleratorType.Cuda && host.BarrierFence == BarrierFence.AcquireRelease);

    /// <summary>The barrier's fences (host side).</summary>
    public BarrierFence Fences => _lightFences != 0 ? BarrierFence.AcquireRelease : BarrierFence.SequentiallyConsistent;

    /// <summary>Spins a wait makes before it gives up (<see cref="NoSpinLimit"/>: never).</summary>
    public int SpinLimit => _spinLimit;

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
            Fence();
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
                    if (!GivesUp(spins, _spinLimit)) continue;
                    Atomic.Exchange(ref _state[2], 1);
                    break;
                }
            }
            Fence();
        }
        Group.Barrier();
    }

    /// <summary>A spin limit that is never reached: the CPU accelerator's barriers wait as long as a phase takes.</summary>
    public const int NoSpinLimit = int.MaxValue;

    // Whether a wait that has spun `spins` times gives up. NoSpinLimit never does: counted as a plain
    // limit, it gave up after 2^31 spins, some 30 s on the CPU accelerator, which a starved group of a
    // loaded 2-core machine can wait (a persistent step then gave other bits than its launches).
    internal static bool GivesUp(int spins, int spinLimit) => spinLimit != NoSpinLimit && spins >= spinLimit;

    // Orders this group's stores before its arrival, and the other groups' stores before what it
    // reads after the turn. Acquire-release at GPU scope is all a barrier needs; ILGPU's device-level
    // fence is a sequentially consistent one (MEMBAR.SC.GPU in SASS), which also waits for every
    // other memory operation in flight to be ordered globally.
    private void Fence() => DeviceFence(_lightFences != 0);

    // A fence at GPU scope: acquire-release on CUDA when asked for (inline PTX; ILGPU has none),
    // otherwise ILGPU's sequentially consistent one. The count-in probe fences with it too.
    internal static void DeviceFence(bool acquireRelease)
    {
        if (CudaAsm.IsSupported && acquireRelease) CudaAsm.Emit("fence.acq_rel.gpu;");
        else MemoryFence.DeviceLevel();
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
        PhaseCall.Run(_first, barrier);
        default(TJoin).Join(barrier);
        PhaseCall.Run(_rest, barrier);
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

/// <summary>
/// Runs a phase as a function of its own, not inlined into the program's kernel. ILGPU lowers the
/// structures of a kernel (LowerStructures) by following each field from where it is read back
/// through every block before it, so a program inlined whole took a time that grew with the square
/// of its phases: the seed's 4 tiled phases took 18-22 s and 3.9 GB of garbage to compile to PTX on 2
/// cores, against 2-3 s for each alone. As calls, each phase is lowered on its own (6-10 s, 1.5 GB). ptxas
/// keeps the calls (CALL.REL.NOINC) without a stack frame, within the same launch bounds.
/// </summary>
internal static class PhaseCall
{
    /// <summary>Runs `phase` (a call in the PTX).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    public static void Run<TPhase>(TPhase phase, GridBarrier barrier) where TPhase : struct, IPhase => phase.Run(barrier);
}
