// The oracle: plain host loops in double precision, one per kernel. ILGPU's CPU accelerator runs the
// same kernel code as the GPU, so it is never the oracle; these loops are.
using AutogradNet.Kernels;

namespace AutogradNet.Tests.Support;

internal static class Reference
{
    public static double[] MatMul(float[] a, bool ta, float[] b, bool tb, int m, int n, int k)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = ta ? a[p * m + i] : a[i * k + p];
                    double bv = tb ? b[j * k + p] : b[p * n + j];
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        return c;
    }

    public static double[] MatMul(double[] a, double[] b, int m, int n, int k)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                double av = a[i * k + p];
                if (av == 0) continue;
                for (int j = 0; j < n; j++) c[i * n + j] += av * b[p * n + j];
            }
        return c;
    }

    public static double[] Transpose(double[] x, int m, int n)
    {
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) y[j * m + i] = x[i * n + j];
        return y;
    }

    public static int[] BroadcastShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            o[i] = Math.Max(da, db);
        }
        return o;
    }

    /// <summary>Index into a (broadcast) operand of shape s for output coordinates of shape o.</summary>
    public static int BroadcastIndex(int outIndex, int[] o, int[] s)
    {
        int idx = 0, stride = 1, rem = outIndex;
        var coords = new int[o.Length];
        for (int d = o.Length - 1; d >= 0; d--) { coords[d] = rem % o[d]; rem /= o[d]; }
        for (int d = s.Length - 1; d >= 0; d--)
        {
            int od = d + (o.Length - s.Length);
            int c = s[d] == 1 ? 0 : coords[od];
            idx += c * stride;
            stride *= s[d];
        }
        return idx;
    }

    public static double[] Zip(double[] a, int[] sa, double[] b, int[] sb, Func<double, double, double> f, out int[] shape)
    {
        shape = BroadcastShape(sa, sb);
        int n = 1;
        foreach (var d in shape) n *= d;
        var c = new double[n];
        for (int i = 0; i < n; i++) c[i] = f(a[BroadcastIndex(i, shape, sa)], b[BroadcastIndex(i, shape, sb)]);
        return c;
    }

    public static double[] SumAxes(double[] x, int[] shape, int[] axes, out int[] keepShape)
    {
        keepShape = (int[])shape.Clone();
        foreach (var a in axes) keepShape[a] = 1;
        int n = 1;
        foreach (var d in keepShape) n *= d;
        var y = new double[n];
        for (int i = 0; i < x.Length; i++)
        {
            int rem = i, o = 0, stride = 1;
            var coords = new int[shape.Length];
            for (int d = shape.Length - 1; d >= 0; d--) { coords[d] = rem % shape[d]; rem /= shape[d]; }
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                o += (keepShape[d] == 1 ? 0 : coords[d]) * stride;
                stride *= keepShape[d];
            }
            y[o] += x[i];
        }
        return y;
    }

    public static double Normal(ulong seed, ulong counter)
    {
        RandomKernels.Philox((uint)counter, (uint)(counter >> 32), (uint)seed, (uint)(seed >> 32), out uint x0, out uint x1);
        double u1 = (x0 + 1.0) / 4294967297.0, u2 = x1 / 4294967296.0;
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    public static double[] ToDouble(float[] x) => x.Select(v => (double)v).ToArray();
}
