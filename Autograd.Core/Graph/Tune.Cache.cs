// The tuning cache, for runs that must pick the same kernels as an earlier run: AUTOGRAD_TUNE_CACHE
// names a file where each tuned shape's choice (a product's kernel, a sum's chunk count) is appended
// (a JSON line naming the device and the library's version and kernel build), and from which a later process takes its device's choices before timing
// anything. With it, a second run on the same machine runs the same kernels (the same bits) and
// skips the tuning. A line for another device or library build is left alone; a line that does not
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

    // A line: the device and library, then a product's choice or a sum's chunk count.
    private sealed record CacheLine(string Device, string Library, ProductLine? Product = null, SumLine? Sum = null);

    private sealed record ProductLine(int M, int N, int K, MatMulPath Path, int GroupX, int GroupY, int SplitK, bool OneLaunch, int Team);

    private sealed record SumLine(int Outer, int R, int Inner, int Chunks);

    private static string? CachePath => Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } p ? p : null;

    // The device as far as a choice depends on it: its name and the limits the candidates come from.
    internal static string DeviceKey(KernelHost h) =>
        $"{h.Accelerator.Name}; {h.Accelerator.NumMultiprocessors} multiprocessors; warps of {h.Accelerator.WarpSize}; groups of {h.Accelerator.MaxNumThreadsPerGroup}";

    // The library as far as a choice depends on it: its version and the build of its kernels. The
    // version stays 0.1.0 while the kernels change under it (a choice timed on an older build is not
    // evidence about a newer one), so the kernel assembly's module id, a hash of its content under
    // deterministic builds, names the build.
    internal static string LibraryKey { get; } =
        $"{typeof(MatMulKernels).Assembly.GetName().Version?.ToString() ?? "?"} build {typeof(MatMulKernels).Assembly.ManifestModule.ModuleVersionId:N}";

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
                if (line == null || line.Device != device || line.Library != library) continue;
                if (line.Product is { } p && host.Tuned(p.M, p.N, p.K) == null)
                    host.SetTuned(p.M, p.N, p.K, new MatMulChoice(p.Path, (p.GroupX, p.GroupY), p.SplitK, p.OneLaunch, p.Team));
                if (line.Sum is { } s && host.TunedSumChunks(s.Outer, s.R, s.Inner) == null)
                    host.SetTunedSumChunks(s.Outer, s.R, s.Inner, s.Chunks);
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException)
            {
                // Not a line of ours, or a choice this device refuses: tuning times that shape anew.
            }
        }
    }

    // Appends a newly recorded product choice to the cache file, if there is one.
    private static void WriteCache(KernelHost host, int m, int n, int k, MatMulChoice c) =>
        Append(new CacheLine(DeviceKey(host), LibraryKey,
            Product: new ProductLine(m, n, k, c.Path, c.TiledGroup.X, c.TiledGroup.Y, c.SplitK, c.SplitKInOneLaunch, c.WarpTeam)));

    // Appends a newly recorded sum's chunk count to the cache file, if there is one.
    private static void WriteCache(KernelHost host, int outer, int r, int inner, int chunks) =>
        Append(new CacheLine(DeviceKey(host), LibraryKey, Sum: new SumLine(outer, r, inner, chunks)));

    private static void Append(CacheLine line)
    {
        if (CachePath is not { } path) return;
        lock (CacheFile) File.AppendAllText(path, JsonSerializer.Serialize(line) + "\n");
    }
}
