// The host SGEMM's column cutting against the double twin, in both vector widths it runs (Vector512
// where AVX-512 runs, Vector<float>). It cuts C's columns into blocks of 3, 4, 2 or 1 SIMD vectors and
// reads B in place, so a block that runs past column N reads into B's next row and takes B's last
// rows from a padded copy instead. These widths put every kind of block at the edge (N below, at and
// past a vector of 8 or 16; V mod 3 = 0, 1, 2), and the depths make the padded copy one row, several
// rows, or all of B. B sits in a buffer that goes on in NaN, so a stored lane that read past B shows.
// Six rows put a whole block of 4 rows at the edge (its fast store) and a block past M (Put's);
// fifteen put three blocks of 4 on the aligned slab a column block's first row block copies B into
// (in place, or from the transposed B's packed copy), and a transposed A's row blocks into strips
// (the last one past M), each run with the slabs and the strips and without. Each element is one
// FMA chain in k order whatever the width, the blocks, the slabs and the strips, so all give the
// same bits.
using System.Numerics;
using System.Runtime.Intrinsics;
using AutogradNet.Kernels;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class KernelTests
{
    public static TheoryData<int, bool, bool> HostWidths()
    {
        var d = new TheoryData<int, bool, bool>();
        foreach (bool wide in new[] { false, true })
            foreach (bool fours in new[] { false, true })
                foreach (int n in new[] { 1, 2, 7, 8, 9, 15, 16, 17, 19, 24, 25, 33, 40, 47, 48, 49, 64, 66, 81, 100, 117 })
                    d.Add(n, wide, fours);
        return d;
    }

    // Runs f with the host SGEMM on Vector512 (wide) or on Vector<float>, ending rows of C in blocks
    // of 4 vectors (fours) or of 2.
    private static void OnHostWidth(bool wide, bool fours, Action f) => OnHostWidth(wide, fours, slabs: true, strips: true, f);

    // The same, with B's column blocks run from slabs or always in place, and a transposed A's row
    // blocks copied into strips or always read in place.
    private static void OnHostWidth(bool wide, bool fours, bool slabs, bool strips, Action f)
    {
        Assert.SkipUnless(Host.IsCpu, "the Host SGEMM path runs only on the CPU accelerator");
        Assert.SkipWhen(wide && !Vector512.IsHardwareAccelerated, "this CPU does not run Vector512 (no AVX-512)");
        using var pin = new MatMulPin(Host, MatMulPath.Host);
        bool saved = MatMulKernels.HostWideVectors, savedFours = MatMulKernels.HostFourBlocks, savedSlabs = MatMulKernels.HostSlabs,
            savedStrips = MatMulKernels.HostStrips;
        MatMulKernels.HostWideVectors = wide;
        MatMulKernels.HostFourBlocks = fours;
        MatMulKernels.HostSlabs = slabs;
        MatMulKernels.HostStrips = strips;
        try
        {
            MatMulKernels.HostVectorWidth.Should().Be(wide ? 16 : Vector<float>.Count);
            f();
        }
        finally
        {
            MatMulKernels.HostWideVectors = saved;
            MatMulKernels.HostFourBlocks = savedFours;
            MatMulKernels.HostSlabs = savedSlabs;
            MatMulKernels.HostStrips = savedStrips;
        }
    }

    [Theory]
    [MemberData(nameof(HostWidths))]
    public void Host_SGEMM_edge_blocks_match_host_twin(int n, bool wide, bool fours)
    {
        foreach (var (slabs, strips) in new[] { (false, false), (true, false), (true, true) })
            OnHostWidth(wide, fours, slabs, strips, () =>
            {
                foreach (int m in new[] { 1, 6, 15 })
                    foreach (int k in new[] { 1, 2, 5, 17 })
                        foreach (bool ta in new[] { false, true })
                            foreach (bool tb in new[] { false, true })
                                foreach (float beta in new[] { -0.5f, 0f })
                                    ProductMatchesTwin(m, n, k, ta, tb, 1.5f, beta, seed: m * 7 + k + n * 5,
                                        $"fours={fours}, slabs={slabs}, strips={strips}");
            });
    }

    // Large enough that the transposed B is packed on both cores, and a transposed A's strips span
    // many row blocks; against the double twin, since every host form shares the packing.
    [Theory]
    [InlineData(65, 520, 513, false, true)]
    [InlineData(130, 300, 1025, true, true)]
    [InlineData(257, 520, 33, true, false)]
    public void Host_SGEMM_large_transposed_operands_match_host_twin(int m, int n, int k, bool ta, bool tb)
    {
        foreach (bool wide in Vector512.IsHardwareAccelerated ? new[] { false, true } : [false])
            OnHostWidth(wide, fours: true, () => ProductMatchesTwin(m, n, k, ta, tb, 0.5f, -1f, seed: 11, "fours"));
    }

    // C = alpha A B + beta C on the host SGEMM against the double twin, B followed by NaN in its
    // buffer (a lane read past B and stored shows).
    private static void ProductMatchesTwin(int m, int n, int k, bool ta, bool tb, float alpha, float beta, int seed, string form)
    {
        var a = TestData.Normal(m * k, seed);
        var b = TestData.Normal(k * n, seed + 1);
        var c0 = TestData.Normal(m * n, seed + 2);
        using var ab = Upload(Host, a);
        using var bb = Upload(Host, [.. b, .. Enumerable.Repeat(float.NaN, 64)]);
        using var cb = Upload(Host, c0);
        MatMulKernels.MatMul(Host, ab.View, ta, bb.View.SubView(0, k * n), tb, cb.View, m, n, k, alpha: alpha, beta: beta);
        var expected = Reference.MatMul(a, ta, b, tb, m, n, k).Select((v, i) => alpha * v + beta * c0[i]).ToArray();
        TestData.ShouldMatch(Download(Host, cb, m * n), expected, 1e-4, 4e-5 * Math.Sqrt(k),
            $"host {m}x{n}x{k} ta={ta} tb={tb} beta={beta}, {MatMulKernels.HostVectorWidth}-float vectors, {form}");
    }

    [Theory]
    [InlineData(64, 100, 1000, false, false)]
    [InlineData(1000, 100, 64, true, false)]
    [InlineData(64, 100, 10, false, true)]
    [InlineData(33, 130, 65, true, true)]
    [InlineData(33, 130, 65, true, false)]
    [InlineData(130, 65, 33, false, false)]
    [InlineData(131, 300, 65, true, false)]
    public void Host_SGEMM_widths_give_the_same_bits(int m, int n, int k, bool ta, bool tb)
    {
        var a = TestData.Normal(m * k, 3);
        var b = TestData.Normal(k * n, 4);
        var c0 = TestData.Normal(m * n, 5);
        float[] Run(bool wide, bool fours, bool slabs, bool strips = true)
        {
            float[] result = [];
            OnHostWidth(wide, fours, slabs, strips, () =>
            {
                using var ab = Upload(Host, a);
                using var bb = Upload(Host, b);
                using var cb = Upload(Host, c0);
                MatMulKernels.MatMul(Host, ab.View, ta, bb.View, tb, cb.View, m, n, k, alpha: -0.25f, beta: 0.75f);
                result = Download(Host, cb, m * n);
            });
            return result;
        }
        // Vector<float> in blocks of 2 in place, then Vector512 and Vector<float> in blocks of 4, and
        // each on slabs, with a transposed A in strips and in place.
        var narrow = Run(false, false, false, false);
        foreach (var (wide, label) in new[] { (Run(true, true, false), "Vector512, fours"), (Run(false, true, false), "Vector<float>, fours"),
                     (Run(true, true, true), "Vector512, fours, slabs, strips"), (Run(false, false, true), "Vector<float>, slabs, strips"),
                     (Run(true, true, true, false), "Vector512, fours, slabs") })
            for (int i = 0; i < narrow.Length; i++)
                BitConverter.SingleToInt32Bits(wide[i]).Should().Be(BitConverter.SingleToInt32Bits(narrow[i]),
                    $"element {i} of {m}x{n}x{k} ta={ta} tb={tb}: {wide[i]} on {label}, {narrow[i]} on Vector<float> in twos in place");
    }
}
