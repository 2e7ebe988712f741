// The bench's workloads as numbered units, so that one device call survives a unit that breaks the
// CUDA context or never returns. A kernel that faults on the card (an illegal address, a misaligned
// copy) leaves CUDA's context unusable: before this, every row after it failed, and gpu-check.sh's
// second bench repeated the rows before it and faulted again at the same place. Now the bench stops
// at such a unit with a line naming the next one, gpu-check.sh starts it again from there (--from),
// and the JSON file gathers the rows of every part. A unit that runs past its limit (--unit-limit)
// is reported the same way, from a watchdog thread, since the thread that waits on the device
// cannot be interrupted.
using System.Diagnostics;
using System.Text.Json;
using AutogradNet.Kernels;

namespace AutogradNet.Bench;

/// <summary>
/// Numbers the bench's units in the order the program reaches them, skips those before --from, writes
/// each one's number and name to the progress file as it starts, and stops the process when a unit
/// leaves the device unusable or overruns its limit, printing where to start again.
/// </summary>
public sealed class Units : IDisposable
{
    /// <summary>The exit code when a unit left the device unusable: start again from the unit after it.</summary>
    public const int DeviceLostExit = 3;

    /// <summary>The exit code when a unit ran past its limit: start again from the unit after it.</summary>
    public const int OverranExit = 4;

    /// <summary>The line's start that names the unit to start again from (gpu-check.sh reads it).</summary>
    public const string ResumeMarker = "RESUME FROM UNIT";

    private readonly int _from;
    private readonly string? _progressPath;
    private readonly double _limitSeconds;
    private readonly Func<bool> _deviceWorks;
    private readonly Action _save;
    private readonly int _breakAt, _hangAt;
    private readonly bool _listOnly, _headlineOnly;
    private readonly TextWriter _out;
    private readonly Action<int> _exit;
    private readonly object _gate = new();
    private readonly Timer? _watchdog;
    private int _next;
    private int _current = -1;
    private string _currentName = "";
    private long _startedAt;
    private bool _stopping;

    /// <summary>Units numbered from 0; those before <paramref name="from"/> are skipped.</summary>
    /// <param name="from">The first unit to run (--from).</param>
    /// <param name="progressPath">Where each unit's number and name go as it starts (--progress), or null.</param>
    /// <param name="limitSeconds">A unit's limit (--unit-limit); 0 for none.</param>
    /// <param name="deviceWorks">Whether the device still runs a kernel and reads its result (asked after a unit fails).</param>
    /// <param name="save">Writes what has been measured so far (the JSON), before the process stops.</param>
    /// <param name="breakAt">Test hook (--test-break-at): unit to fail as if it had broken the device; -1 for none.</param>
    /// <param name="hangAt">Test hook (--test-hang-at): unit to block until the watchdog stops the process; -1 for none.</param>
    /// <param name="listOnly">Print each unit's number and name instead of running it (--list).</param>
    /// <param name="output">Where the unit list and the stopping lines go (the console's output when null).</param>
    /// <param name="exit">Ends the process with a code (Environment.Exit when null; the tests' own otherwise).</param>
    /// <param name="headlineOnly">Run only the units marked headline (--headline): the figures the issues' targets name.</param>
    public Units(int from, string? progressPath, double limitSeconds, Func<bool> deviceWorks, Action save, int breakAt = -1, int hangAt = -1,
        bool listOnly = false, TextWriter? output = null, Action<int>? exit = null, bool headlineOnly = false)
    {
        if (from < 0) throw new ArgumentOutOfRangeException(nameof(from), from, "Autograd.Bench --from: a unit number is 0 or more.");
        if (limitSeconds < 0) throw new ArgumentOutOfRangeException(nameof(limitSeconds), limitSeconds, "Autograd.Bench --unit-limit: seconds, 0 for no limit.");
        _from = from;
        _progressPath = progressPath;
        _limitSeconds = limitSeconds;
        _deviceWorks = deviceWorks;
        _save = save;
        _breakAt = breakAt;
        _hangAt = hangAt;
        _listOnly = listOnly;
        _headlineOnly = headlineOnly;
        _out = output ?? Console.Out;
        _exit = exit ?? Environment.Exit;
        if (limitSeconds > 0) _watchdog = new Timer(_ => Watch(), null, 1000, 1000);
    }

    /// <summary>Units run so far, skipped ones included: the number the next unit gets.</summary>
    public int Count => _next;

    /// <summary>
    /// Runs one unit unless it comes before --from. A unit that throws is reported through
    /// <paramref name="failed"/>; if the device then fails to run a kernel, the process stops with
    /// <see cref="DeviceLostExit"/> and a line naming the next unit.
    /// </summary>
    /// <param name="name">What the unit runs (printed if it stops the bench).</param>
    /// <param name="body">The unit's work.</param>
    /// <param name="failed">Reports the unit's exception (the bench's failure list and its FAILED line).</param>
    /// <param name="headline">Whether the unit runs under --headline too.</param>
    public void Run(string name, Action body, Action<Exception> failed, bool headline = false)
    {
        int index = _next++;
        if (index < _from || (_headlineOnly && !headline)) return;
        if (_listOnly)
        {
            _out.WriteLine($"unit {index}: {name}");
            return;
        }
        lock (_gate)
        {
            _current = index;
            _currentName = name;
            _startedAt = Stopwatch.GetTimestamp();
        }
        if (_progressPath != null) File.WriteAllText(_progressPath, $"{index}\t{name}\n");
        bool broke = false;
        try
        {
            if (index == _hangAt) Thread.Sleep(Timeout.Infinite);
            if (index == _breakAt)
            {
                broke = true;
                throw new InvalidOperationException($"--test-break-at {index}: unit {index} ({name}) fails as if its kernel had broken the device.");
            }
            body();
        }
        catch (Exception e)
        {
            failed(e);
            if (broke || !_deviceWorks()) Stop(DeviceLostExit, $"unit {index} ({name}) left the device unable to run a kernel");
        }
        finally
        {
            lock (_gate) _current = -1;
        }
    }

    // The watchdog's tick: a unit past its limit stops the process (its thread may be inside a wait on
    // the device that nothing can interrupt).
    private void Watch()
    {
        int index;
        string name;
        lock (_gate)
        {
            if (_current < 0 || _stopping) return;
            if (Stopwatch.GetElapsedTime(_startedAt).TotalSeconds < _limitSeconds) return;
            index = _current;
            name = _currentName;
        }
        Stop(OverranExit, $"unit {index} ({name}) ran past its limit of {_limitSeconds:F0} s");
    }

    // Saves what was measured, says where to start again, and ends the process.
    private void Stop(int exitCode, string why)
    {
        int next;
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            next = (_current < 0 ? _next : _current + 1);
        }
        // Bounded: from the watchdog, the thread in the unit may hold what saving needs.
        var saving = Task.Run(_save);
        try
        {
            if (!saving.Wait(TimeSpan.FromSeconds(15))) _out.WriteLine("(saving the results took over 15 s: stopping without)");
        }
        catch (AggregateException e)
        {
            _out.WriteLine($"(saving the results failed: {e.InnerException?.Message})");
        }
        _out.WriteLine($"STOPPED: {why}.");
        _out.WriteLine($"{ResumeMarker} {next}");
        _out.Flush();
        _exit(exitCode);
    }

    /// <inheritdoc/>
    public void Dispose() => _watchdog?.Dispose();
}

/// <summary>What an earlier part of the bench wrote to the JSON file: its rows, and its kernels as written.</summary>
/// <param name="Results">The rows.</param>
/// <param name="Kernels">The kernel resources, each as the JSON object it was written as.</param>
public sealed record BenchFile(IReadOnlyList<Result> Results, IReadOnlyList<JsonElement> Kernels)
{
    /// <summary>No earlier part.</summary>
    public static BenchFile Empty { get; } = new([], []);

    /// <summary>Reads the rows and kernels of a JSON file the bench wrote.</summary>
    /// <param name="path">The file (--json).</param>
    public static BenchFile Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var results = root.TryGetProperty("results", out var r)
            ? r.Deserialize<List<Result>>() ?? [] : [];
        var kernels = root.TryGetProperty("kernels", out var k)
            ? k.EnumerateArray().Select(e => e.Clone()).ToList() : [];
        return new BenchFile(results, kernels);
    }

    /// <summary>The earlier part's kernels that the kernels loaded since do not name again, then those.</summary>
    /// <param name="loaded">The kernels this part loaded.</param>
    public IEnumerable<JsonElement> KernelsWith(IEnumerable<KernelResource> loaded)
    {
        var now = loaded.Select(k => JsonSerializer.SerializeToElement(k)).ToList();
        var named = now.Select(Key).ToHashSet();
        return Kernels.Where(e => !named.Contains(Key(e))).Concat(now);
    }

    private static string Key(JsonElement e) =>
        (e.TryGetProperty("Name", out var n) ? n.ToString() : "") + "|" + (e.TryGetProperty("Specialization", out var s) ? s.ToString() : "");
}
