// Runs before any test: every new tensor buffer is poisoned with NaN, so an op that leaves an
// element unwritten fails its test instead of passing on stale data.
using System.Runtime.CompilerServices;

namespace AutogradNet.Tests.Support;

internal static class Setup
{
    [ModuleInitializer]
    internal static void PoisonEveryBuffer() => Memory.PoisonNewBuffers = true;
}
