// SIMD vectors of floats for the host SGEMM, as a type parameter: the JIT compiles the SGEMM once per
// width. Vector<float> is 256 bits on x64 even where AVX-512 runs (the runtime's default), and the
// CPU this project develops on (AMD EPYC, Zen 5) has full-width 512-bit FMA units: Vector512 doubles
// the seed's products there (measured: 64x1000x96 on 2 cores, 51 -> 29 us). Elsewhere (no AVX-512,
// Arm) the SGEMM takes Vector<float>.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AutogradNet.Kernels;

/// <summary>The operations the host SGEMM needs on a SIMD vector of floats TV.</summary>
internal unsafe interface IHostSimd<TV> where TV : unmanaged
{
    /// <summary>Floats in one vector.</summary>
    static abstract int Count { get; }

    /// <summary>Count floats from p (no alignment needed).</summary>
    static abstract TV Load(float* p);

    /// <summary>Stores v's Count floats at p.</summary>
    static abstract void Store(TV v, float* p);

    /// <summary>x in every lane.</summary>
    static abstract TV Splat(float x);

    /// <summary>a * b + c per lane, rounded once.</summary>
    static abstract TV Fma(TV a, TV b, TV c);

    /// <summary>v * s per lane.</summary>
    static abstract TV Scale(TV v, float s);

    /// <summary>a + b per lane.</summary>
    static abstract TV Add(TV a, TV b);
}

/// <summary>Vector&lt;float&gt;: the runtime's width (256 bits on x64 with AVX2, 128 on Arm).</summary>
internal readonly unsafe struct SimdAny : IHostSimd<Vector<float>>
{
    public static int Count => Vector<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Load(float* p) => *(Vector<float>*)p;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector<float> v, float* p) => *(Vector<float>*)p = v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Splat(float x) => new(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Fma(Vector<float> a, Vector<float> b, Vector<float> c) => Vector.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Scale(Vector<float> v, float s) => v * s;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Add(Vector<float> a, Vector<float> b) => a + b;
}

/// <summary>Vector512&lt;float&gt;: 16 floats, where AVX-512 runs them in hardware.</summary>
internal readonly unsafe struct Simd512 : IHostSimd<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Splat(float x) => Vector512.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Scale(Vector512<float> v, float s) => v * s;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
}
