// A KernelHost switch read from its environment variable when a host is made: 0 off, 1 on, unset
// its default, anything else refused with the variable, the value and the two choices in the message.
using AutogradNet.Kernels;
using FluentAssertions;
using ILGPU.Runtime;

namespace AutogradNet.Tests.Support;

internal static class SwitchVariable
{
    /// <summary>Asserts how a new host on `accelerator` reads `variable` into the switch `read` returns.</summary>
    public static void ShouldBeRead(Accelerator accelerator, string variable, Func<KernelHost, bool> read, bool unset, string junk, string unsetBecause)
    {
        using var env = new EnvironmentScope(variable);
        env.Set("0");
        read(new KernelHost(accelerator)).Should().BeFalse($"{variable}=0");
        env.Set("1");
        read(new KernelHost(accelerator)).Should().Be(true, $"{variable}=1");
        env.Set(null);
        read(new KernelHost(accelerator)).Should().Be(unset, unsetBecause);
        env.Set(junk);
        var act = () => new KernelHost(accelerator);
        act.Should().Throw<ArgumentException>().WithMessage($"*{variable}={junk}*0*1*");
    }
}
