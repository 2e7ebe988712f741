// [CpuOnly]: a test that never runs a kernel on the test device (CPU simulators, PTX and ptxas
// offline). It carries the trait Device=CpuOnly, by which gpu-check.sh leaves it out of a GPU call
// (CI runs it on every commit), and it fails if it read Device.Default, which on a GPU machine is
// the CUDA device: a test marked by mistake would otherwise drop out of the GPU call unnoticed.
using System.Reflection;
using Xunit.v3;

namespace AutogradNet.Tests.Support;

[AttributeUsage(AttributeTargets.Method | AttributeTargets.Class)]
internal sealed class CpuOnlyAttribute : BeforeAfterTestAttribute, ITraitAttribute
{
    /// <summary>The trait gpu-check.sh filters on (-trait- "Device=CpuOnly").</summary>
    public const string Name = "Device", Value = "CpuOnly";

    [ThreadStatic] private static long _readsBefore;

    public IReadOnlyCollection<KeyValuePair<string, string>> GetTraits() => [new(Name, Value)];

    public override void Before(MethodInfo methodUnderTest, IXunitTest test) => _readsBefore = Device.DefaultReads;

    public override void After(MethodInfo methodUnderTest, IXunitTest test)
    {
        if (Device.DefaultReads != _readsBefore)
            throw new InvalidOperationException(
                $"{methodUnderTest.DeclaringType?.Name}.{methodUnderTest.Name} is marked [CpuOnly] but read Device.Default, the CUDA " +
                "device on a GPU machine, where CpuOnly tests are left out: name its device, or remove [CpuOnly].");
    }
}
