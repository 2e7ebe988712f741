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

    public void Dispose() => _host.MatMulSettings = _saved;
}
