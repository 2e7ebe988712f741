// The code-size probe: the same multiply-adds as straight-line code and as a loop, so the bench can
// say what a kernel's size costs a launch before it computes anything.
//
// Why: the seed step's kernels are large. ptxas 11.8 (sm_90) makes 25 KB of SASS of the warp SGEMM
// with a plain epilogue, 58 KB with the loss tail, 65-69 KB of the tiled kernel with the loss tail
// and of the paired updates (PERF.md, "The floors": unrolled slices, inlined epilogues and tails),
// ~200 KB for the step's four. A tiny product runs most of its code once, so each of its
// instructions may come from L2 while the SM's instruction caches hold the previous node's kernel.
// Touch (Probes.cs) is 24 instructions and cannot show that; this probe's rows can:
//   Straight: 8 chains v = v * a + b of TDepth's steps each, unrolled by the compiler into one run
//             of 8 x steps multiply-adds (16 bytes each in SASS): 128 steps ~17 KB, 512 ~65 KB.
//             The 512-step kernel comes in three copies, the same code at three addresses, so that
//             launches taking them in turn (~195 KB) find the SM's instruction caches holding the
//             other copies, as the step's nodes do, while one copy launched again finds its own.
//   Looped:   the same steps as a loop of 8 multiply-adds a trip: ~2 KB.
// Three copies in turn minus one copy again is what cold code costs a launch; one copy minus the
// loop is what the same code costs warm. ProbeTests checks every form against the host twin, and
// their SASS sizes.
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class Probes
{
    /// <summary>Steps a chain of the straight-line probe takes at each size: 128 (~16 KB of SASS) or 512 (~64 KB).</summary>
    public static readonly int[] StraightDepths = [128, 512];

    // Eight independent chains of v = v * a + b, so the multiply-adds issue back to back.
    internal struct Chains
    {
        private float _v0, _v1, _v2, _v3, _v4, _v5, _v6, _v7;
        private readonly float _a, _b;

        public Chains(float x, float a, float b)
        {
            (_a, _b) = (a, b);
            (_v0, _v1, _v2, _v3) = (x, x + 1f, x + 2f, x + 3f);
            (_v4, _v5, _v6, _v7) = (x - 1f, x - 2f, x - 3f, x - 4f);
        }

        public readonly float Sum => _v0 + _v1 + _v2 + _v3 + _v4 + _v5 + _v6 + _v7;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Step()
        {
            _v0 = _v0 * _a + _b; _v1 = _v1 * _a + _b; _v2 = _v2 * _a + _b; _v3 = _v3 * _a + _b;
            _v4 = _v4 * _a + _b; _v5 = _v5 * _a + _b; _v6 = _v6 * _a + _b; _v7 = _v7 * _a + _b;
        }

        // 2^n steps as nested calls that the compiler inlines: no loop is left to keep the code small.
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps2() { Step(); Step(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps4() { Steps2(); Steps2(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps8() { Steps4(); Steps4(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps16() { Steps8(); Steps8(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps32() { Steps16(); Steps16(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps64() { Steps32(); Steps32(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps128() { Steps64(); Steps64(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps256() { Steps128(); Steps128(); }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Steps512() { Steps256(); Steps256(); }
    }

    // ---- kernels ----

    // The straight kernel's depth, as a type: each is its own kernel, its steps unrolled.
    internal interface IDepth
    {
        void Run(ref Chains chains);
    }

    internal readonly struct Depth128 : IDepth
    {
        public void Run(ref Chains chains) => chains.Steps128();
    }

    internal readonly struct Depth512 : IDepth
    {
        public void Run(ref Chains chains) => chains.Steps512();
    }

    // Depth512 again: the same code as kernels of their own, for launches that take the copies in turn.
    internal readonly struct Depth512B : IDepth
    {
        public void Run(ref Chains chains) => chains.Steps512();
    }

    internal readonly struct Depth512C : IDepth
    {
        public void Run(ref Chains chains) => chains.Steps512();
    }

    // Thread i runs the 8 chains from x[i % n] for TDepth's steps, unrolled, and stores their sum.
    internal static void StraightKernel<TDepth>(
        ArrayView<float> x,      // (n) starting values
        ArrayView<float> output, // (threads)
        float a, float b)
        where TDepth : struct, IDepth
    {
        int i = Grid.GlobalIndex.X;
        if (i >= output.Length) return;
        var c = new Chains(x[i % (int)x.Length], a, b);
        default(TDepth).Run(ref c);
        output[i] = c.Sum;
    }

    // The same chains as a loop of `depth` trips: the work of the straight kernels in a few hundred bytes.
    internal static void LoopedKernel(
        ArrayView<float> x,      // (n) starting values
        ArrayView<float> output, // (threads)
        float a, float b, int depth)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= output.Length) return;
        var c = new Chains(x[i % (int)x.Length], a, b);
        for (int t = 0; t < depth; t++) c.Step();
        output[i] = c.Sum;
    }

    // ---- launchers ----

    /// <summary>
    /// One thread an element of output, in groups of the host's size: thread i runs 8 chains
    /// v = v * a + b for `depth` steps from x[i mod n] (x, x + 1, x + 2, x + 3, x - 1 ... x - 4) and
    /// stores their sum; as straight-line code (depth 128 or 512) or as a loop (any depth).
    /// </summary>
    /// <param name="host">The accelerator's kernels.</param>
    /// <param name="x">(n) starting values, n at least 1.</param>
    /// <param name="output">(threads), at least 1.</param>
    /// <param name="a">Each step's factor.</param>
    /// <param name="b">Each step's addend.</param>
    /// <param name="depth">Steps a chain: one of StraightDepths when straight, at least 1 looped.</param>
    /// <param name="straight">Unrolled code (~16 bytes of SASS a multiply-add) or a loop.</param>
    /// <param name="copy">Which of the 512-step straight kernel's three copies (0, 1 or 2); 0 otherwise.</param>
    public static void Code(KernelHost host, ArrayView<float> x, ArrayView<float> output, float a, float b, int depth, bool straight, int copy = 0)
    {
        if (x.Length == 0 || output.Length == 0)
            throw new ArgumentException($"Probes.Code: x ({x.Length}) and output ({output.Length}) need at least 1 element each.");
        if (straight ? !StraightDepths.Contains(depth) : depth < 1)
            throw new ArgumentOutOfRangeException(nameof(depth), depth,
                $"Probes.Code: straight-line code is built for {string.Join(" or ", StraightDepths)} steps; a loop takes any depth of at least 1.");
        if (copy != 0 && !(straight && depth == 512) || copy is < 0 or > 2)
            throw new ArgumentOutOfRangeException(nameof(copy), copy, "Probes.Code: the 512-step straight kernel has copies 0, 1 and 2; every other form only copy 0.");
        int gs = host.GroupSize;
        var config = new KernelConfig((int)((output.Length + gs - 1) / gs), gs);
        if (!straight)
        {
            host.Load("ProbeLooped", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, float, float, int>(LoopedKernel))
                (host.Stream, config, x, output, a, b, depth);
            return;
        }
        var k = (depth, copy) switch
        {
            (128, _) => host.Load("ProbeStraight128", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, float, float>(StraightKernel<Depth128>)),
            (_, 0) => host.Load("ProbeStraight512", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, float, float>(StraightKernel<Depth512>)),
            (_, 1) => host.Load("ProbeStraight512B", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, float, float>(StraightKernel<Depth512B>)),
            _ => host.Load("ProbeStraight512C", null, acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, float, float>(StraightKernel<Depth512C>)),
        };
        k(host.Stream, config, x, output, a, b);
    }

    // ---- host twin ----

    /// <summary>What Code stores, in double: each thread's 8 chains after `depth` steps, summed.</summary>
    /// <param name="x">The starting values.</param>
    /// <param name="threads">Elements of output.</param>
    /// <param name="a">Each step's factor.</param>
    /// <param name="b">Each step's addend.</param>
    /// <param name="depth">Steps a chain.</param>
    public static double[] HostCode(float[] x, int threads, float a, float b, int depth)
    {
        var output = new double[threads];
        for (int i = 0; i < threads; i++)
        {
            double sum = 0, start = x[i % x.Length];
            foreach (double offset in (double[])[0, 1, 2, 3, -1, -2, -3, -4])
            {
                double v = start + offset;
                for (int t = 0; t < depth; t++) v = v * a + b;
                sum += v;
            }
            output[i] = sum;
        }
        return output;
    }
}
