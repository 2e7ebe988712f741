// CUDA graphs around ILGPU's launches: ILGPU has no API for them, but the driver's stream capture
// works around its kernel launches (measured on an H100, ilgpu-facts.md). We capture the step's
// launches on a private stream, instantiate the graph once, and launch it on ILGPU's default stream
// so it is ordered with every other operation of the device.
using System.Runtime.InteropServices;
using ILGPU.Runtime.Cuda;

namespace AutogradNet;

internal sealed class CudaGraph : IDisposable
{
    private IntPtr _graph, _exec;

    private CudaGraph(IntPtr graph, IntPtr exec)
    {
        _graph = graph;
        _exec = exec;
    }

    /// <summary>Captures what record launches on a new stream of the accelerator.</summary>
    public static CudaGraph Capture(CudaAccelerator acc, Action<CudaStream> record)
    {
        acc.Bind();
        using var stream = (CudaStream)acc.CreateStream();
        Check(Native.cuStreamBeginCapture_v2(stream.StreamPtr, CaptureModeRelaxed), "cuStreamBeginCapture");
        IntPtr graph = IntPtr.Zero;
        try
        {
            record(stream);
        }
        finally
        {
            var end = Native.cuStreamEndCapture(stream.StreamPtr, out graph);
            if (end != 0 && graph != IntPtr.Zero) Native.cuGraphDestroy(graph);
            Check(end, "cuStreamEndCapture");
        }
        Check(Native.cuGraphInstantiateWithFlags(out var exec, graph, 0), "cuGraphInstantiateWithFlags");
        return new CudaGraph(graph, exec);
    }

    /// <summary>Enqueues the whole graph on the accelerator's default stream.</summary>
    public void Launch(CudaAccelerator acc)
    {
        ObjectDisposedException.ThrowIf(_exec == IntPtr.Zero, this);
        acc.Bind();
        Check(Native.cuGraphLaunch(_exec, ((CudaStream)acc.DefaultStream).StreamPtr), "cuGraphLaunch");
    }

    public void Dispose()
    {
        if (_exec != IntPtr.Zero) Native.cuGraphExecDestroy(_exec);
        if (_graph != IntPtr.Zero) Native.cuGraphDestroy(_graph);
        _exec = _graph = IntPtr.Zero;
    }

    private const int CaptureModeRelaxed = 2;

    private static void Check(int result, string call)
    {
        if (result != 0)
            throw new InvalidOperationException($"CUDA graph: {call} failed with CUresult {result}. Set AUTOGRAD_CUDA_GRAPHS=0 to replay launch by launch.");
    }

    private static class Native
    {
        private const string Lib = "cuda";

        static Native()
        {
            NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, (name, asm, path) =>
                name == Lib && (NativeLibrary.TryLoad("libcuda.so.1", out var h) || NativeLibrary.TryLoad("nvcuda.dll", out h)) ? h : IntPtr.Zero);
        }

        [DllImport(Lib)] public static extern int cuStreamBeginCapture_v2(IntPtr stream, int mode);
        [DllImport(Lib)] public static extern int cuStreamEndCapture(IntPtr stream, out IntPtr graph);
        [DllImport(Lib)] public static extern int cuGraphInstantiateWithFlags(out IntPtr exec, IntPtr graph, ulong flags);
        [DllImport(Lib)] public static extern int cuGraphLaunch(IntPtr exec, IntPtr stream);
        [DllImport(Lib)] public static extern int cuGraphExecDestroy(IntPtr exec);
        [DllImport(Lib)] public static extern int cuGraphDestroy(IntPtr graph);
    }
}
