// What each loaded kernel holds on the device: registers and local memory (spills) per thread,
// static shared memory per group, and how many groups of 256 fit a multiprocessor. Why: a kernel's
// speed on a GPU is bounded by what ptxas made of its PTX, which no CPU can see; the SGEMM's
// register blocking is worth nothing if ptxas spills its accumulators, and a kernel whose registers
// leave room for one group per multiprocessor cannot hide its memory latency. The bench prints this
// table on a GPU so a measured figure comes with what limits it.
// How: ILGPU gives the loaded kernel (KernelUtil.GetKernel) and, on CUDA, its CUfunction; the driver's
// cuFuncGetAttribute reads the rest. ILGPU's own estimate gives the occupancy.
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AutogradNet.Kernels;

/// <summary>What one loaded kernel holds on its device (-1 where the accelerator does not say).</summary>
/// <param name="Name">The launcher's name for the kernel, e.g. "MatMulWide".</param>
/// <param name="Specialization">The shape and op structs it was specialised on.</param>
/// <param name="Registers">Registers per thread (CUDA only).</param>
/// <param name="LocalBytes">Local memory per thread: registers spilled, or arrays not kept in registers (CUDA only).</param>
/// <param name="SharedBytes">Static shared memory per group (CUDA only).</param>
/// <param name="GroupsOf256PerMultiprocessor">Groups of 256 threads that fit one multiprocessor at once, given the above.</param>
public readonly record struct KernelResource(string Name, string Specialization, int Registers, int LocalBytes, int SharedBytes,
    int GroupsOf256PerMultiprocessor)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Name,-18} {Registers,5} regs {LocalBytes,6} B local {SharedBytes,7} B shared {GroupsOf256PerMultiprocessor,3} groups/SM  {Specialization}";
}

public sealed partial class KernelHost
{
    /// <summary>
    /// Every kernel this host has loaded, with the resources it holds on the device (registers, local
    /// memory and shared memory on CUDA; -1 elsewhere), sorted by name.
    /// </summary>
    public IReadOnlyList<KernelResource> KernelResources()
    {
        var list = new List<KernelResource>();
        // The driver reads a function's attributes in its context: make the accelerator's current here.
        if (Accelerator is CudaAccelerator) Accelerator.Bind();
        foreach (var ((name, shape, op), launcher) in _cache)
        {
            string types = string.Join(", ", new[] { shape, op }.Where(t => t != null).Select(t => TypeName(t!)));
            int regs = -1, local = -1, shared = -1, groups = -1;
            if (KernelUtil.TryGetKernel(launcher, out var kernel))
            {
                int dynamic = 0;
                if (kernel is CudaKernel cuda)
                {
                    regs = CudaFunction.Attribute(cuda.FunctionPtr, CudaFunction.NumRegs);
                    local = CudaFunction.Attribute(cuda.FunctionPtr, CudaFunction.LocalSizeBytes);
                    dynamic = DynamicShared.GetValueOrDefault(cuda.FunctionPtr);
                    shared = CudaFunction.Attribute(cuda.FunctionPtr, CudaFunction.SharedSizeBytes) is >= 0 and var s ? s + dynamic : -1;
                }
                // On CUDA the driver's own occupancy count: ILGPU's estimate gave twice the groups that
                // the registers allow (4 for Wide's 125 registers a thread, where 64K registers hold 2).
                if (kernel is CudaKernel occupied && CudaFunction.GroupsPerMultiprocessor(occupied.FunctionPtr, 256, dynamic) is >= 0 and var n)
                    groups = n;
                else if (Accelerator.MaxNumThreadsPerGroup >= 256)
                    groups = (int)Math.Round(Accelerator.EstimateOccupancyPerMultiprocessor(kernel, 256) * Accelerator.MaxNumThreadsPerMultiprocessor / 256);
            }
            list.Add(new KernelResource(name, types, regs, local, shared, groups));
        }
        return list.OrderBy(r => r.Name, StringComparer.Ordinal).ThenBy(r => r.Specialization, StringComparer.Ordinal).ToList();
    }

    // The dynamic shared memory each CUDA kernel that asks for more than the default launches with
    // (AllowDynamicShared), by CUfunction: the resources table counts it with the static.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<IntPtr, int> DynamicShared = new();

    /// <summary>
    /// Raises a CUDA kernel's limit of dynamic shared memory a group to `bytes` (over the 48 KB a
    /// launch gets without asking); does nothing on other accelerators. Called once, when the kernel is loaded.
    /// </summary>
    /// <param name="launcher">The launcher ILGPU's LoadKernel returned.</param>
    /// <param name="bytes">Dynamic shared memory the kernel's launches request.</param>
    /// <param name="op">The op, for the message if the device refuses.</param>
    /// <exception cref="NotSupportedException">The driver refused the limit.</exception>
    internal static void AllowDynamicShared(Delegate launcher, int bytes, string op)
    {
        if (!KernelUtil.TryGetKernel(launcher, out var kernel) || kernel is not CudaKernel cuda) return;
        kernel.Accelerator.Bind();
        int code = CudaFunction.SetAttribute(cuda.FunctionPtr, CudaFunction.MaxDynamicSharedSizeBytes, bytes);
        if (code != 0)
            throw new NotSupportedException($"{op}: {kernel.Accelerator.Name} refused {bytes} bytes of shared memory a group (cuFuncSetAttribute error {code}); "
                + $"turn KernelHost.AsyncCopies off ({AsyncCopiesVariable}=0).");
        DynamicShared[cuda.FunctionPtr] = bytes;
    }

    // FirstOp, Tile16x16, (AddOp, NoTail): generic arguments by their short names.
    private static string TypeName(Type t) =>
        t.IsGenericType
            ? $"{(t.Name.StartsWith("ValueTuple", StringComparison.Ordinal) ? "" : t.Name[..t.Name.IndexOf('`')])}({string.Join(", ", t.GetGenericArguments().Select(TypeName))})"
            : t.Name;

    private static class CudaFunction
    {
        public const int SharedSizeBytes = 1, LocalSizeBytes = 3, NumRegs = 4, MaxDynamicSharedSizeBytes = 8;

        static CudaFunction()
        {
            NativeLibrary.SetDllImportResolver(typeof(CudaFunction).Assembly, (name, asm, path) =>
                name == "cuda" && (NativeLibrary.TryLoad("libcuda.so.1", out var h) || NativeLibrary.TryLoad("nvcuda.dll", out h)) ? h : IntPtr.Zero);
        }

        public static int Attribute(IntPtr function, int attribute) =>
            cuFuncGetAttribute(out int value, attribute, function) == 0 ? value : -1;

        /// <summary>Groups of <paramref name="threads"/> threads (with <paramref name="dynamicShared"/> bytes of dynamic shared memory) one multiprocessor holds; -1 if the driver does not say.</summary>
        public static int GroupsPerMultiprocessor(IntPtr function, int threads, int dynamicShared) =>
            cuOccupancyMaxActiveBlocksPerMultiprocessor(out int value, function, threads, (nuint)dynamicShared) == 0 ? value : -1;

        /// <summary>Sets a function attribute; the driver's error code (0: done).</summary>
        public static int SetAttribute(IntPtr function, int attribute, int value) => cuFuncSetAttribute(function, attribute, value);

        [DllImport("cuda")]
        private static extern int cuFuncSetAttribute(IntPtr function, int attribute, int value);

        [DllImport("cuda")]
        private static extern int cuFuncGetAttribute(out int value, int attribute, IntPtr function);

        [DllImport("cuda")]
        private static extern int cuOccupancyMaxActiveBlocksPerMultiprocessor(out int numBlocks, IntPtr function, int blockSize, nuint dynamicSharedBytes);
    }
}
