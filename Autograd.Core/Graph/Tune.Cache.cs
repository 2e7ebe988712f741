// The tuning cache, for runs that must pick the same kernels as an earlier run: AUTOGRAD_TUNE_CACHE
// names a file where each tuned shape's choice is appended (a JSON line naming the device and the
// library version), and from which a later process takes its device's choices before timing
// anything. With it, a second run on the same machine runs the same kernels (the same bits) and
// skips the tuning. A line for another device or library version is left alone; a line that does not
// parse, or whose choice this device cannot run, is skipped. Off unless the variable is set.
using System.Collections.Concurrent;
using System.Text.Json;
using AutogradNet.Kernels;

namespace AutogradNet;

internal static partial class Tune
{
    /// <summary>Environment variable naming the tuning cache file.</summary>
    public const string CacheVariable = "AUTOGRAD_TUNE_CACHE";

    private static readonly ConcurrentDictionary<KernelHost, bool> CacheRead = new();
    private static readonly object CacheFile = new();

    private sealed record CacheLine(string Device, string Library, int M, int N, int K, MatMulPath Path, int GroupX, int GroupY,
        int SplitK, bool OneLaunch, int Team);

    private static string? CachePath => Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } p ? p : null;

    // The device as far as a choice depends on it: its name and the limits the candidates come from.
    internal static string DeviceKey(KernelHost h) =>
        $"{h.Accelerator.Name}; {h.Accelerator.NumMultiprocessors} multiprocessors; warps of {h.Accelerator.WarpSize}; groups of {h.Accelerator.MaxNumThreadsPerGroup}";

    private static string LibraryKey => typeof(MatMulKernels).Assembly.GetName().Version?.ToString() ?? "?";

    /// <summary>Takes this host's device's choices from the cache file, once per host (a no-op without a file).</summary>
    internal static void ReadCache(KernelHost host, string? path = null)
    {
        path ??= CachePath;
        if (path == null || !CacheRead.TryAdd(host, true) || !File.Exists(path)) return;
        string device = DeviceKey(host), library = LibraryKey;
        string[] lines;
        lock (CacheFile) lines = File.ReadAllLines(path);
        foreach (var text in lines)
        {
            try
            {
                var line = JsonSerializer.Deserialize<CacheLine>(text);
                if (line == null || line.Device != device || line.Library != library || host.Tuned(line.M, line.N, line.K) != null) continue;
                host.SetTuned(line.M, line.N, line.K, new MatMulChoice(line.Path, (line.GroupX, line.GroupY), line.SplitK, line.OneLaunch, line.Team));
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException)
            {
                // Not a line of ours, or a choice this device refuses: tuning times that shape anew.
            }
        }
    }

    // Appends a newly recorded choice to the cache file, if there is one.
    private static void WriteCache(KernelHost host, int m, int n, int k, MatMulChoice c)
    {
        if (CachePath is not { } path) return;
        var line = new CacheLine(DeviceKey(host), LibraryKey, m, n, k, c.Path, c.TiledGroup.X, c.TiledGroup.Y, c.SplitK, c.SplitKInOneLaunch, c.WarpTeam);
        lock (CacheFile) File.AppendAllText(path, JsonSerializer.Serialize(line) + "\n");
    }
}
