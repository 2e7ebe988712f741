// Launch bounds: what a kernel tells ptxas about the groups it runs in, so that ptxas may spend
// registers on keeping loads in flight.
//
// Why: a kernel without bounds may be launched with 1024 threads a group, and ptxas then aims for
// 64 registers a thread (64K / 1024). The warp SGEMM issues a trip's 32 loads before its 64
// multiply-adds; each load needs its own 64-bit address, so the trip does not fit in 64. ptxas
// (11.8, sm_90, read offline by SassTests) then keeps 64 and splits the trip into 4 waits on memory
// of 8 loads each, which undoes the kernel's design. With `.maxntid 256` and `.minnctapersm 2` it
// may use up to 128. It takes 104 and issues all 32 loads before the first multiply-add.
// The cost is residency: 2 groups of 256 a multiprocessor instead of 4, which the warp team rule
// counts (MatMulKernels.WarpTeam).
//
// The CPU accelerator is given the same bounds and ignores them (it has no registers to allocate,
// and runs its groups whatever their size), so CI loads kernels the way a GPU does.
// AUTOGRAD_LAUNCH_BOUNDS=0 (or KernelHost.LaunchBounds = false) compiles the kernels without
// bounds, so the bench can measure what the bounds give.
using System.Reflection;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>
/// Launch bounds of a GPU kernel: it runs in groups of at most <paramref name="maxThreads"/> threads,
/// and at least <paramref name="minGroupsPerMultiprocessor"/> of them must fit one multiprocessor.
/// ptxas may then use up to 64K / (maxThreads x minGroups) registers a thread.
/// </summary>
/// <param name="maxThreads">The most threads a group of this kernel has (`.maxntid`).</param>
/// <param name="minGroupsPerMultiprocessor">Groups a multiprocessor must hold at once (`.minnctapersm`).</param>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class LaunchBoundsAttribute(int maxThreads, int minGroupsPerMultiprocessor) : Attribute
{
    /// <summary>The most threads a group of this kernel has.</summary>
    public int MaxThreads { get; } = maxThreads;

    /// <summary>Groups a multiprocessor must hold at once.</summary>
    public int MinGroupsPerMultiprocessor { get; } = minGroupsPerMultiprocessor;

    /// <summary>The bounds of a kernel method as ILGPU's specialization (Empty where it has none).</summary>
    /// <param name="kernel">A kernel method, generic or closed.</param>
    public static KernelSpecialization Of(MethodInfo kernel)
    {
        var definition = kernel.IsGenericMethod ? kernel.GetGenericMethodDefinition() : kernel;
        return definition.GetCustomAttribute<LaunchBoundsAttribute>() is { } b
            ? new KernelSpecialization(b.MaxThreads, b.MinGroupsPerMultiprocessor)
            : KernelSpecialization.Empty;
    }

    /// <summary>The bounds of the static kernel method <paramref name="name"/> of <paramref name="owner"/>.</summary>
    /// <param name="owner">The class that declares the kernel.</param>
    /// <param name="name">The kernel method's name.</param>
    public static KernelSpecialization Of(Type owner, string name) =>
        Of(owner.GetMethod(name, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            ?? throw new ArgumentException($"LaunchBounds: {owner.Name} has no kernel {name}."));
}

public sealed partial class KernelHost
{
    /// <summary>The environment variable that turns launch bounds off (0) or on (1, the default).</summary>
    public const string LaunchBoundsVariable = "AUTOGRAD_LAUNCH_BOUNDS";

    /// <summary>
    /// Whether kernels that declare launch bounds are compiled with them on a GPU (default: on, unless
    /// AUTOGRAD_LAUNCH_BOUNDS=0). Off, ptxas keeps such kernels at 64 registers and serialises their
    /// batched loads; the setting exists to measure that. The CPU accelerator ignores bounds.
    /// </summary>
    public bool LaunchBounds { get; set; } = SwitchFromEnvironment(LaunchBoundsVariable, unset: true, "compile without launch bounds", "with them, the default", "");

    /// <summary>A host like this one with LaunchBounds set as given (same tuned tables and stream; its own launch count).</summary>
    /// <param name="on">Whether kernels are compiled with their launch bounds.</param>
    public KernelHost WithLaunchBounds(bool on) => new(this, Stream) { LaunchBounds = on };

    /// <summary>
    /// The specialization to load a kernel with here: its launch bounds, when on and when the
    /// accelerator's groups can be that large (ILGPU refuses bounds above the accelerator's limit; a
    /// CPU simulator of small groups then loads the kernel without them).
    /// </summary>
    /// <param name="declared">The kernel's declared bounds (LaunchBoundsAttribute.Of, read once per kernel).</param>
    internal KernelSpecialization Bounds(KernelSpecialization declared) =>
        LaunchBounds && (declared.MaxNumThreadsPerGroup ?? 0) <= Accelerator.MaxNumThreadsPerGroup ? declared : KernelSpecialization.Empty;

    /// <summary>
    /// Whether a specialization carries bounds: the bounded and unbounded builds of a kernel are distinct
    /// kernels, cached under two names (constants at each launcher, so a launch allocates no string).
    /// </summary>
    internal static bool HasBounds(KernelSpecialization bounds) =>
        bounds.MaxNumThreadsPerGroup is not null || bounds.MinNumGroupsPerMultiprocessor is not null;

    /// <summary>
    /// Groups a multiprocessor holds for a kernel loaded with these bounds, as the team rule counts them:
    /// on a GPU the bounds' minimum (ptxas fills the registers they allow), else as many as its threads allow.
    /// </summary>
    internal int GroupsPerMultiprocessor(KernelSpecialization bounds) =>
        !IsCpu && bounds.MinNumGroupsPerMultiprocessor is int min ? min : Math.Max(1, MaxGroups / Math.Max(1, Accelerator.NumMultiprocessors));
}
