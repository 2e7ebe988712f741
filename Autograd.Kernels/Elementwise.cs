// Elementwise kernels: Map (unary), Zip (binary) and their broadcasting forms, generic over the op
// structs of ElementwiseOps.cs. All are grid-stride loops (see KernelHost).
//
// Broadcasting follows PyTorch: shapes are right-aligned, a dimension of 1 (or a missing one) is
// repeated. The launcher turns that into a rank-4 output shape and per-operand element strides that
// are 0 along repeated dimensions, so one kernel serves every rank from 0 to 4.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

/// <summary>An output shape padded to rank 4 and the element strides of up to two operands into it.</summary>
public readonly struct Broadcast4
{
    /// <summary>Output extents of dims 1..3 (dim 0 is implied by the element count).</summary>
    public readonly int D1, D2, D3;

    /// <summary>Strides of operand a for dims 0..3 (0 where a is repeated).</summary>
    public readonly int A0, A1, A2, A3;

    /// <summary>Strides of operand b for dims 0..3 (0 where b is repeated).</summary>
    public readonly int B0, B1, B2, B3;

    private Broadcast4(int[] outShape, int[] aStrides, int[] bStrides)
    {
        D1 = outShape[1]; D2 = outShape[2]; D3 = outShape[3];
        A0 = aStrides[0]; A1 = aStrides[1]; A2 = aStrides[2]; A3 = aStrides[3];
        B0 = bStrides[0]; B1 = bStrides[1]; B2 = bStrides[2]; B3 = bStrides[3];
    }

    /// <summary>Builds the strides for operands of shape a and b broadcast to outShape (all rank &lt;= 4).</summary>
    /// <param name="outShape">The broadcast output shape.</param>
    /// <param name="a">Shape of operand a.</param>
    /// <param name="b">Shape of operand b (pass a again for a unary broadcast).</param>
    public static Broadcast4 Create(ReadOnlySpan<int> outShape, ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        if (outShape.Length > 4) throw new ArgumentException($"Broadcast supports rank <= 4, got rank {outShape.Length}.");
        var o = Pad(outShape);
        return new Broadcast4(o, Strides(a, o), Strides(b, o));
    }

    private static int[] Pad(ReadOnlySpan<int> s)
    {
        var r = new[] { 1, 1, 1, 1 };
        for (int i = 0; i < s.Length; i++) r[4 - s.Length + i] = s[i];
        return r;
    }

    private static int[] Strides(ReadOnlySpan<int> shape, int[] o)
    {
        var p = Pad(shape);
        var st = new int[4];
        int stride = 1;
        for (int d = 3; d >= 0; d--)
        {
            if (p[d] != o[d] && p[d] != 1)
                throw new ArgumentException($"Shape [{string.Join(", ", shape.ToArray())}] does not broadcast to [{string.Join(", ", o)}].");
            st[d] = p[d] == 1 ? 0 : stride;
            stride *= p[d];
        }
        return st;
    }

    /// <summary>Element offset of output element i in operand a.</summary>
    /// <param name="i">Linear index into the output.</param>
    public int OffsetA(int i) => Index4.Offset(i, D1, D2, D3, A0, A1, A2, A3);

    /// <summary>Element offset of output element i in operand b.</summary>
    /// <param name="i">Linear index into the output.</param>
    public int OffsetB(int i) => Index4.Offset(i, D1, D2, D3, B0, B1, B2, B3);
}

/// <summary>Index arithmetic of the rank-4 views (broadcasts, sums over axes), in kernels and host loops alike.</summary>
internal static class Index4
{
    /// <summary>The element offset of linear index i of a box (_, d1, d2, d3) laid out with strides s0..s3.</summary>
    public static int Offset(int i, int d1, int d2, int d3, int s0, int s1, int s2, int s3)
    {
        int i3 = i % d3; int t = i / d3;
        int i2 = t % d2; t /= d2;
        int i1 = t % d1; int i0 = t / d1;
        return i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3;
    }
}

/// <summary>Elementwise kernels and their launchers.</summary>
public static partial class Elementwise
{
    // ---------------------------------------------------------------- kernels

    /// <summary>y[i] = op(x[i]); y may alias x.</summary>
    internal static void MapKernel<TOp>(
        ArrayView<float> x,   // (n) contiguous
        ArrayView<float> y,   // (n) contiguous
        int n,
        TOp op)
        where TOp : struct, IUnaryOp
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
            y[i] = op.Apply(x[i]);
    }

    /// <summary>y[i] = op(x[offsetA(i)]): x broadcast to y's shape.</summary>
    internal static void MapBroadcastKernel<TOp>(
        ArrayView<float> x,   // any shape that broadcasts to y
        ArrayView<float> y,   // (n) the broadcast shape, contiguous
        int n,
        Broadcast4 s,
        TOp op)
        where TOp : struct, IUnaryOp
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
            y[i] = op.Apply(x[s.OffsetA(i)]);
    }

    /// <summary>c[i] = op(a[i], b[i]); c may alias a or b.</summary>
    internal static void ZipKernel<TOp>(
        ArrayView<float> a,   // (n)
        ArrayView<float> b,   // (n)
        ArrayView<float> c,   // (n)
        int n,
        TOp op)
        where TOp : struct, IBinaryOp
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
            c[i] = op.Apply(a[i], b[i]);
    }

    /// <summary>c[i] = op(a[offsetA(i)], b[offsetB(i)]) with PyTorch broadcasting.</summary>
    internal static void ZipBroadcastKernel<TOp>(
        ArrayView<float> a,   // broadcasts to c
        ArrayView<float> b,   // broadcasts to c
        ArrayView<float> c,   // (n) the broadcast shape
        int n,
        Broadcast4 s,
        TOp op)
        where TOp : struct, IBinaryOp
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
            c[i] = op.Apply(a[s.OffsetA(i)], b[s.OffsetB(i)]);
    }

    /// <summary>y[i] = value.</summary>
    internal static void FillKernel(
        ArrayView<float> y,   // (n)
        int n,
        float value)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
            y[i] = value;
    }

    // ---------------------------------------------------------------- launchers

    /// <summary>y = op(x) elementwise; x and y have the same length (y may be x).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input, n elements.</param>
    /// <param name="y">Output, n elements.</param>
    /// <param name="op">The op.</param>
    public static void Map<TOp>(KernelHost host, ArrayView<float> x, ArrayView<float> y, TOp op)
        where TOp : struct, IUnaryOp
    {
        Check.SameLength("Map", x, y);
        int n = (int)y.Length;
        if (n == 0) return;
        if (host.HostLoops) { HostMap(host, x, y, op); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new MapPhase<TOp>(x, y, n, op), "Map"); return; }
        var k = host.Load("Map", typeof(TOp), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, TOp>(MapKernel<TOp>));
        k(host.Stream, host.GridStride(n), x, y, n, op);
    }

    /// <summary>y = op(broadcast(x)) where x's shape broadcasts to y's shape.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="x">Input of shape xShape.</param>
    /// <param name="xShape">Shape of x.</param>
    /// <param name="y">Output of shape yShape.</param>
    /// <param name="yShape">Shape of y.</param>
    /// <param name="op">The op.</param>
    public static void MapBroadcast<TOp>(KernelHost host, ArrayView<float> x, ReadOnlySpan<int> xShape,
        ArrayView<float> y, ReadOnlySpan<int> yShape, TOp op)
        where TOp : struct, IUnaryOp
    {
        Check.Length("MapBroadcast", "x", x, xShape);
        Check.Length("MapBroadcast", "y", y, yShape);
        int n = (int)y.Length;
        if (n == 0) return;
        var s = Broadcast4.Create(yShape, xShape, xShape);
        if (host.HostLoops) { HostMapBroadcast(host, x, y, s, op); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new MapBroadcastPhase<TOp>(x, y, n, s, op), "Map"); return; }
        var k = host.Load("MapBroadcast", typeof(TOp), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, Broadcast4, TOp>(MapBroadcastKernel<TOp>));
        k(host.Stream, host.GridStride(n), x, y, n, s, op);
    }

    /// <summary>c = op(a, b) elementwise with broadcasting; c has the broadcast shape.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="a">First operand.</param>
    /// <param name="aShape">Shape of a.</param>
    /// <param name="b">Second operand.</param>
    /// <param name="bShape">Shape of b.</param>
    /// <param name="c">Output (may alias a or b when it has the same shape).</param>
    /// <param name="cShape">The broadcast shape of a and b.</param>
    /// <param name="op">The op.</param>
    public static void Zip<TOp>(KernelHost host,
        ArrayView<float> a, ReadOnlySpan<int> aShape,
        ArrayView<float> b, ReadOnlySpan<int> bShape,
        ArrayView<float> c, ReadOnlySpan<int> cShape, TOp op)
        where TOp : struct, IBinaryOp
    {
        Check.Length("Zip", "a", a, aShape);
        Check.Length("Zip", "b", b, bShape);
        Check.Length("Zip", "c", c, cShape);
        int n = (int)c.Length;
        if (n == 0) return;
        if (a.Length == n && b.Length == n)
        {
            // Same element count and both broadcast to c: same shape up to leading ones.
            Broadcast4.Create(cShape, aShape, bShape); // validates
            if (host.HostLoops) { HostZip(host, a, b, c, op); return; }
            if (host.Recorder is { } zipRecorder) { zipRecorder.Add(new ZipPhase<TOp>(a, b, c, n, op), "Zip"); return; }
            var k = host.Load("Zip", typeof(TOp), acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, TOp>(ZipKernel<TOp>));
            k(host.Stream, host.GridStride(n), a, b, c, n, op);
            return;
        }
        var s = Broadcast4.Create(cShape, aShape, bShape);
        if (host.HostLoops) { HostZipBroadcast(host, a, b, c, s, op); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new ZipBroadcastPhase<TOp>(a, b, c, n, s, op), "Zip"); return; }
        var kb = host.Load("ZipBroadcast", typeof(TOp), acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, Broadcast4, TOp>(ZipBroadcastKernel<TOp>));
        kb(host.Stream, host.GridStride(n), a, b, c, n, s, op);
    }

    /// <summary>y[i] = value for every element.</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="y">The buffer to fill.</param>
    /// <param name="value">The value.</param>
    public static void Fill(KernelHost host, ArrayView<float> y, float value)
    {
        int n = (int)y.Length;
        if (n == 0) return;
        if (host.HostLoops) { HostFill(host, y, value); return; }
        if (host.Recorder is { } recorder) { recorder.Add(new FillPhase(y, n, value), "Fill"); return; }
        var k = host.Load("Fill", null, acc =>
            acc.LoadKernel<ArrayView<float>, int, float>(FillKernel));
        k(host.Stream, host.GridStride(n), y, n, value);
    }
}
