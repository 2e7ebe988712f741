// A class fixture that lets the CPU simulators go when the class is done. Each simulator keeps an OS
// thread for every simulated thread (256 for the GPU's groups) for the life of its device, and every
// garbage collection stops them all: kept to the end of the run, ~1,700 of them made each collection
// of the classes that ran later ~4 times as long (docs/PERF.md, "The garbage collector's share of the
// suite"). The classes run one at a time (xunit.runner.json), so none is using a simulator then.
namespace AutogradNet.Tests.Support;

public sealed class SimulatorsReleased : IDisposable
{
    public void Dispose() => Device.ReleaseCpuSimulators();
}
