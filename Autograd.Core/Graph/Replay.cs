// Pass 7, replay: run the emitted launches. On CUDA, the launches of one step (or of n steps, for
// Run(steps: n)) are captured once into a CUDA graph and each replay is a single graph launch;
// elsewhere, or with AUTOGRAD_CUDA_GRAPHS=0, replay walks the launch list. Run(steps: n) keeps each
// step's loss: the launch that computes it writes it straight into the history (no copy launch per
// step, which inside a graph costs a node, ~1 us on an H100), and the last one is copied to Output.
// With KernelHost.PersistentSteps, the warm-up replay is followed by a recording of the launches
// (Persistent.cs in Autograd.Kernels): where every one can be a phase, Run() is one launch of a
// persistent kernel, and Run(steps: n) one launch that runs the step n times with a grid barrier
// after each and copies each loss into the history (one program per count and history).
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet;

internal sealed class Replay : IDisposable
{
    private readonly Device _device;
    private readonly List<Instr> _program;
    private readonly Dictionary<(int Steps, int First, long History), CudaGraph> _graphs = new();
    private readonly int _lossInstr;
    private readonly bool _useGraphs;
    private readonly Func<long> _version;
    private long _capturedVersion;
    private bool _warm;
    // The persistent kernel: asked for at compile time; the program of one step, and a repeat per
    // count and history of Run(steps) (null where refused, with why), sharing one barrier state.
    private readonly bool _persistentAsked;
    private PersistentProgram? _persistent;
    private readonly Dictionary<(int Steps, IntPtr History), PersistentProgram?> _persistentRepeats = new();
    private string? _repeatRefusal;
    // The barrier's 3 ints, in a buffer of the device's allocator taken at compile time (counted, and
    // given back when the step is disposed).
    private Storage? _barrierStorage;
    private long _persistentVersion;
    private bool _persistentChecked;
    private string _persistentRefusal = "";

    /// <param name="device">The device.</param>
    /// <param name="program">The step's launches.</param>
    /// <param name="version">Changes when a value baked into the launches changes (the learning rate):
    /// a CUDA graph captured before is stale and is captured again.</param>
    public Replay(Device device, List<Instr> program, Func<long> version)
    {
        _device = device;
        _program = program;
        _version = version;
        // At most one launch writes the loss where Run(steps) asks (Emit.Run).
        _lossInstr = program.FindIndex(i => i.Into != null);
        _useGraphs = device.Accelerator is CudaAccelerator
            && Environment.GetEnvironmentVariable("AUTOGRAD_CUDA_GRAPHS") != "0";
        _persistentAsked = device.Host.PersistentSteps;
        if (_persistentAsked) _barrierStorage = device.Allocator.Take(3);
    }

    // The barrier's state (groups arrived, generation, gave up) as ints.
    private ArrayView<int> BarrierState => _barrierStorage!.View.Cast<int>().SubView(0, 3);

    public bool UsesCudaGraphs => _useGraphs;

    /// <summary>Whether steps run as one persistent kernel (known after the first Run).</summary>
    public bool IsPersistent => _persistent != null;

    /// <summary>The persistent kernel's program type (tests compile it to PTX); null where there is none.</summary>
    public Type? PersistentProgramType => _persistent?.ProgramType;

    /// <summary>The persistent kernel's phases and grid, why the step could not have one, or null where none was asked for.</summary>
    public string? PersistentText => !_persistentAsked ? null
        : _persistent != null ? _persistent.ToString() + (_repeatRefusal != null ? $"; Run(steps) with a history replays its launches: {_repeatRefusal}" : "")
        : _warm ? $"Persistent: refused, {_persistentRefusal}; the step replays its launches"
        : "Persistent: asked for (known after the first Run)";

    /// <summary>Launches per step, counted on a warm-up replay.</summary>
    public long LaunchesPerStep { get; private set; }

    /// <summary>
    /// Enqueues `steps` steps. With a history (`steps` floats), step s's loss goes to history[s]: the
    /// launch that writes the loss writes it there (Instr.Into), or the loss is copied after the step
    /// where no single launch does; output then gets the last step's loss.
    /// </summary>
    public void Run(int steps, ArrayView<float> history = default, ArrayView<float> output = default)
    {
        lock (_device.Sync) RunLocked(steps, history, output);
    }

    private void RunLocked(int steps, ArrayView<float> history, ArrayView<float> output)
    {
        var host = _device.Host;
        int first = 0;
        if (!_warm)
        {
            // The first replay loads every kernel and lazily made state (optimizer moments), so a
            // capture afterwards records launches only.
            long before = host.Launches;
            LaunchStep(host);
            LaunchesPerStep = host.Launches - before;
            if (history.IsValid) Copy(host, output, history.SubView(0, 1));
            _warm = true;
            first = 1;
            if (_persistentAsked) BuildPersistent(host);
            if (steps == 1) return;
        }
        long version = _version();
        if (_persistent != null && version != _persistentVersion) BuildPersistent(host);
        if (!_useGraphs)
        {
            Steps(host, first, steps, history, output);
            CheckPersistent();
            return;
        }
        var acc = (CudaAccelerator)_device.Accelerator;
        if (version != _capturedVersion)
        {
            host.Synchronize();
            foreach (var g in _graphs.Values) g.Dispose();
            _graphs.Clear();
            _capturedVersion = version;
        }
        // A history's buffer is the step's for that count (CompiledStep keeps one per count), so its
        // length names it.
        var key = (steps, first, history.IsValid ? history.Length : 0L);
        if (!_graphs.TryGetValue(key, out var graph))
        {
            host.Synchronize();
            graph = CudaGraph.Capture(acc, stream => Steps(host.WithStream(stream), first, steps, history, output));
            _graphs[key] = graph;
        }
        graph.Launch(acc);
        CheckPersistent();
    }

    // Steps first..steps-1 of a Run(steps), each loss into the history where there is one.
    private void Steps(KernelHost h, int first, int steps, ArrayView<float> history, ArrayView<float> output)
    {
        bool keep = history.IsValid, into = keep && _lossInstr >= 0;
        if (_persistent != null)
        {
            // All the steps in one launch, or one launch a step without a history. Where the repeat
            // did not load (it is a kernel of its own), the steps with a history replay their launches.
            if (!keep)
            {
                for (int s = first; s < steps; s++) _persistent.Launch(h);
                return;
            }
            if (steps > first && PersistentRepeat(first, steps, history, output) is { } repeat)
            {
                repeat.Launch(h);
                return;
            }
        }
        for (int s = first; s < steps; s++)
        {
            for (int i = 0; i < _program.Count; i++)
            {
                if (into && i == _lossInstr) _program[i].Into!(h, history.SubView(s, 1));
                else _program[i].Launch(h);
            }
            if (keep && !into) Copy(h, output, history.SubView(s, 1));
        }
        if (into && steps > first) Copy(h, history.SubView(steps - 1, 1), output);
    }

    // The step's launches recorded into one persistent kernel (again when a baked value, the learning
    // rate, changed); where a launch cannot be a phase, the step keeps its launches.
    private void BuildPersistent(KernelHost host)
    {
        DisposePersistent();
        host.Synchronize();
        BarrierState.MemSetToZero(host.Stream);
        _persistentVersion = _version();
        _persistent = PersistentProgram.TryBuild(host, LaunchStep, out _persistentRefusal, state: BarrierState);
        if (_persistent != null) LaunchesPerStep = 1;
        _persistentChecked = false;
    }

    // Steps first..steps-1 as one persistent launch, each loss into history[s] (built once per count
    // and history); null where that kernel was refused (Describe then says why).
    private PersistentProgram? PersistentRepeat(int first, int steps, ArrayView<float> history, ArrayView<float> output)
    {
        var slots = history.SubView(first, steps - first);
        var key = (steps - first, slots.LoadEffectiveAddressAsPtr());
        if (_persistentRepeats.TryGetValue(key, out var p)) return p;
        p = PersistentProgram.TryBuild(_device.Host, LaunchStep, out var refusal,
            state: BarrierState, repeat: new PersistentRepeat(steps - first, output, slots));
        if (p == null) _repeatRefusal = refusal;
        _persistentRepeats[key] = p;
        return p;
    }

    // One step's launches (what a persistent program records).
    private void LaunchStep(KernelHost h)
    {
        foreach (var i in _program) i.Launch(h);
    }

    // After the first run of a persistent program: a barrier that gave up means the grid was not all
    // resident, and that run's results are wrong. The step goes back to its launches.
    private void CheckPersistent()
    {
        if (_persistent == null || _persistentChecked) return;
        _persistentChecked = true;
        if (!_persistent.TimedOut()) return;
        DisposePersistent();
        _persistentRefusal = "a grid barrier gave up on the first run (the grid was not all resident)";
        foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        throw new GraphReplayException(
            $"Run: the persistent kernel's grid barrier gave up waiting: not all its groups were resident on {_device.Name} " +
            "(another context may hold multiprocessors). That run's results are wrong; the step now replays its launches. " +
            $"Run the step again, or set KernelHost.PersistentSteps = false ({KernelHost.PersistentVariable}=0) before compiling.");
    }

    private void DisposePersistent()
    {
        _persistent?.Dispose();
        _persistent = null;
        foreach (var p in _persistentRepeats.Values) p?.Dispose();
        _persistentRepeats.Clear();
        _repeatRefusal = null;
    }

    private static void Copy(KernelHost h, ArrayView<float> from, ArrayView<float> to) => Elementwise.Map(h, from, to, new IdentityOp());

    /// <summary>
    /// Time of each launch of the program, run `reps` times back to back (inside one CUDA graph per
    /// launch where graphs are used, so launch overhead is the graph's, not the driver's).
    /// </summary>
    public List<(string Launch, double Microseconds)> Profile(int reps)
    {
        lock (_device.Sync) return ProfileLocked(reps);
    }

    private List<(string Launch, double Microseconds)> ProfileLocked(int reps)
    {
        Run(1); // warm: kernels loaded, state made
        var host = _device.Host;
        var result = new List<(string, double)>();
        var launches = _persistent is { } persistent ? [new Instr(persistent.ToString(), persistent.Launch)] : _program;
        foreach (var instr in launches)
        {
            if (_useGraphs)
            {
                var acc = (CudaAccelerator)_device.Accelerator;
                host.Synchronize();
                using var g = CudaGraph.Capture(acc, stream =>
                {
                    var captured = host.WithStream(stream);
                    for (int r = 0; r < reps; r++) instr.Launch(captured);
                });
                g.Launch(acc);
                host.Synchronize();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                g.Launch(acc);
                host.Synchronize();
                result.Add((instr.Text, sw.Elapsed.TotalMilliseconds * 1000 / reps));
            }
            else
            {
                instr.Launch(host);
                host.Synchronize();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                for (int r = 0; r < reps; r++) instr.Launch(host);
                host.Synchronize();
                result.Add((instr.Text, sw.Elapsed.TotalMilliseconds * 1000 / reps));
            }
        }
        return result;
    }

    public void Dispose()
    {
        foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        DisposePersistent();
        _barrierStorage?.Release();
        _barrierStorage = null;
    }
}
