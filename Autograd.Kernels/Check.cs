// Size checks shared by the launchers: a launcher is the only entry to its kernels, so a wrong
// length is caught here, with the kernel's name, before anything runs.
using ILGPU;

namespace AutogradNet.Kernels;

internal static class Check
{
    public static long Elements(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    public static void Length(string kernel, string name, ArrayView<float> v, ReadOnlySpan<int> shape)
    {
        long n = Elements(shape);
        if (v.Length != n)
            throw new ArgumentException(
                $"{kernel}: buffer {name} has {v.Length} elements but its shape [{string.Join(", ", shape.ToArray())}] needs {n}.");
    }

    public static void Length(string kernel, string name, ArrayView<float> v, long n)
    {
        if (v.Length != n)
            throw new ArgumentException($"{kernel}: buffer {name} has {v.Length} elements, expected {n}.");
    }

    public static void AtLeast(string kernel, string name, ArrayView<float> v, long n)
    {
        if (v.Length < n)
            throw new ArgumentException($"{kernel}: buffer {name} has {v.Length} elements, needs at least {n}.");
    }

    public static void SameLength(string kernel, ArrayView<float> x, ArrayView<float> y)
    {
        if (x.Length != y.Length)
            throw new ArgumentException($"{kernel}: input has {x.Length} elements, output {y.Length}.");
    }
}
