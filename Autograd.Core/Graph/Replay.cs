// Pass 7, replay: run the emitted launches. On CUDA, the launches of one step (or of n steps, for
// Run(steps: n)) are captured once into a CUDA graph and each replay is a single graph launch;
// elsewhere, or with AUTOGRAD_CUDA_GRAPHS=0, replay walks the launch list.
using AutogradNet.Kernels;
using ILGPU;
using ILGPU.Runtime.Cuda;

namespace AutogradNet;

internal sealed class Replay : IDisposable
{
    private readonly Device _device;
    private readonly List<Instr> _program;
    private readonly Dictionary<int, CudaGraph> _graphs = new();
    private readonly bool _useGraphs;
    private readonly Func<long> _version;
    private long _capturedVersion;
    private bool _warm;

    /// <param name="device">The device.</param>
    /// <param name="program">The step's launches.</param>
    /// <param name="version">Changes when a value baked into the launches changes (the learning rate):
    /// a CUDA graph captured before is stale and is captured again.</param>
    public Replay(Device device, List<Instr> program, Func<long> version)
    {
        _device = device;
        _program = program;
        _version = version;
        _useGraphs = device.Accelerator is CudaAccelerator
            && Environment.GetEnvironmentVariable("AUTOGRAD_CUDA_GRAPHS") != "0";
    }

    public bool UsesCudaGraphs => _useGraphs;

    /// <summary>Launches per step, counted on a warm-up replay.</summary>
    public long LaunchesPerStep { get; private set; }

    /// <summary>Enqueues `steps` steps; after step s, copy(s) runs (e.g. the loss into a history), if given.</summary>
    public void Run(int steps, Action<KernelHost, int>? afterStep)
    {
        lock (_device.Sync) RunLocked(steps, afterStep);
    }

    private void RunLocked(int steps, Action<KernelHost, int>? afterStep)
    {
        var host = _device.Host;
        if (!_warm)
        {
            // The first replay loads every kernel and lazily made state (optimizer moments), so a
            // capture afterwards records launches only.
            long before = host.Launches;
            foreach (var i in _program) i.Launch(host);
            LaunchesPerStep = host.Launches - before;
            afterStep?.Invoke(host, 0);
            _warm = true;
            if (--steps == 0) return;
            if (afterStep != null)
            {
                var rest = afterStep;
                afterStep = (h, s) => rest(h, s + 1);
            }
        }
        if (!_useGraphs)
        {
            for (int s = 0; s < steps; s++)
            {
                foreach (var i in _program) i.Launch(host);
                afterStep?.Invoke(host, s);
            }
            return;
        }
        var acc = (CudaAccelerator)_device.Accelerator;
        long version = _version();
        if (version != _capturedVersion)
        {
            host.Synchronize();
            foreach (var g in _graphs.Values) g.Dispose();
            _graphs.Clear();
            _capturedVersion = version;
        }
        int key = afterStep == null ? -steps : steps;
        if (!_graphs.TryGetValue(key, out var graph))
        {
            host.Synchronize();
            graph = CudaGraph.Capture(acc, stream =>
            {
                var captured = host.WithStream(stream);
                for (int s = 0; s < steps; s++)
                {
                    foreach (var i in _program) i.Launch(captured);
                    afterStep?.Invoke(captured, s);
                }
            });
            _graphs[key] = graph;
        }
        graph.Launch(acc);
    }

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
        Run(1, null); // warm: kernels loaded, state made
        var host = _device.Host;
        var result = new List<(string, double)>();
        foreach (var instr in _program)
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
    }
}
