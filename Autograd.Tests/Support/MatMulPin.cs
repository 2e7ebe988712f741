// Pins a kernel host's SGEMM settings for one test; Dispose puts back the settings it found.
using AutogradNet.Kernels;

namespace AutogradNet.Tests.Support;

internal sealed class MatMulPin : IDisposable
{
    private readonly KernelHost _host;
    private readonly MatMulSettings _saved;

    public MatMulPin(KernelHost host, MatMulPath path, int? splitK = null, bool oneLaunch = true, (int X, int Y)? group = null, int? warpTeam = null)
    {
        _host = host;
        _saved = host.MatMulSettings;
        host.MatMulPath = path;
        host.MatMulSplitK = splitK;
        host.SplitKInOneLaunch = oneLaunch;
        if (group is { } g) host.TiledGroup = g;
        host.WarpTeam = warpTeam;
    }

    private MatMulPin(KernelHost host)
    {
        _host = host;
        _saved = host.MatMulSettings;
    }

    /// <summary>The rule's kernels, not the tuned table's: for tests of a step's structure (launch counts,
    /// pairs), which on a GPU would otherwise follow whatever the timings chose.</summary>
    public static MatMulPin Rule(KernelHost host)
    {
        var pin = new MatMulPin(host);
        host.Autotune = false;
        return pin;
    }

    public void Dispose() => _host.MatMulSettings = _saved;
}
