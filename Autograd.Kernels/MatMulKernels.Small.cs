// The register-blocked SGEMM without shared memory: each thread owns a 4x4 block of C in registers
// (Block4x4) and grid-strides over the blocks, walking all of K four k a trip (each trip's 32 loads
// issued before its multiply-adds: one wait on memory per 4 k, where a loop of single k waited on
// each). It needs no shared memory and no group size, so it runs on any accelerator. The warp-split kernel (MatMulKernels.Warp.cs) uses the
// same block, with K split across a team of warps.
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    // As the warp kernel's: a thread walks K four k a trip, the trip's 32 loads issued before its
    // multiply-adds (Block4x4.Walk); up to 128 registers let ptxas keep them in flight (SassTests).
    internal static readonly KernelSpecialization SmallBounds = LaunchBoundsAttribute.Of(typeof(MatMulKernels), nameof(SmallKernel));

    /// <summary>Register-blocked SGEMM without shared memory: one 4x4 block of C per loop step.</summary>
    [LaunchBounds(256, 2)]
    internal static void SmallKernel<TEpi, TTail>(
        ArrayView<float> a,   // (M, K) or (K, M) per g's strides
        ArrayView<float> b,   // (K, N) or (N, K) per g's strides
        ArrayView<float> c,   // (M, N) row-major
        ArrayView<float> e,   // epilogue operand, E(i, j) = e[i * Em + j * En]
        GemmArgs g,
        TEpi epi,
        TTail tail)           // run once C is stored
        where TEpi : struct, IBinaryOp
        where TTail : struct, IProductTail
    {
        int tilesN = (g.N + 3) / 4;
        int total = ((g.M + 3) / 4) * tilesN;
        int stride = Grid.DimX * Group.DimX;
        for (int t = Grid.GlobalIndex.X; t < total; t += stride)
        {
            var block = new Block4x4(g, t, tilesN);
            block.Walk(a, b, g, 0, 1);
            block.Store(c, e, g, epi);
        }
        tail.Finish(c, g.M * g.N);
    }

    // A 4x4 block of C held in registers (the PTX check shows ILGPU keeps the fields there, no local
    // memory): the Small and Warp kernels' accumulator. Rows and columns past C's edge are clamped
    // for loads, so loads stay in bounds, and masked in Store.
    private struct Block4x4
    {
        private readonly int _i0, _j0, _pa0, _pa1, _pa2, _pa3, _pb0, _pb1, _pb2, _pb3;
        private float _s00, _s01, _s02, _s03, _s10, _s11, _s12, _s13;
        private float _s20, _s21, _s22, _s23, _s30, _s31, _s32, _s33;

        // Block t of C's blocks in row-major order, tilesN blocks to a row.
        public Block4x4(GemmArgs g, int t, int tilesN)
        {
            _i0 = (t / tilesN) * 4;
            _j0 = (t % tilesN) * 4;
            _pa0 = _i0 * g.Am;
            _pa1 = Min(_i0 + 1, g.M - 1) * g.Am;
            _pa2 = Min(_i0 + 2, g.M - 1) * g.Am;
            _pa3 = Min(_i0 + 3, g.M - 1) * g.Am;
            _pb0 = _j0 * g.Bn;
            _pb1 = Min(_j0 + 1, g.N - 1) * g.Bn;
            _pb2 = Min(_j0 + 2, g.N - 1) * g.Bn;
            _pb3 = Min(_j0 + 3, g.N - 1) * g.Bn;
            _s00 = _s01 = _s02 = _s03 = _s10 = _s11 = _s12 = _s13 = 0f;
            _s20 = _s21 = _s22 = _s23 = _s30 = _s31 = _s32 = _s33 = 0f;
        }

        // Adds the outer product of op(A)'s column k and op(B)'s row k over the block.
        public void Step(ArrayView<float> a, ArrayView<float> b, GemmArgs g, int k)
        {
            int ka = k * g.Ak, kb = k * g.Bk;
            float a0 = a[_pa0 + ka], a1 = a[_pa1 + ka], a2 = a[_pa2 + ka], a3 = a[_pa3 + ka];
            float b0 = b[kb + _pb0], b1 = b[kb + _pb1], b2 = b[kb + _pb2], b3 = b[kb + _pb3];
            Add(a0, a1, a2, a3, b0, b1, b2, b3);
        }

        // Step(k) then Step(k2), with all 16 loads issued before the first multiply-add: the same
        // sums in the same order as two Steps, but one memory round trip instead of two.
        public void Step2(ArrayView<float> a, ArrayView<float> b, GemmArgs g, int k, int k2)
        {
            int ka = k * g.Ak, kb = k * g.Bk, ka2 = k2 * g.Ak, kb2 = k2 * g.Bk;
            float a0 = a[_pa0 + ka], a1 = a[_pa1 + ka], a2 = a[_pa2 + ka], a3 = a[_pa3 + ka];
            float b0 = b[kb + _pb0], b1 = b[kb + _pb1], b2 = b[kb + _pb2], b3 = b[kb + _pb3];
            float e0 = a[_pa0 + ka2], e1 = a[_pa1 + ka2], e2 = a[_pa2 + ka2], e3 = a[_pa3 + ka2];
            float f0 = b[kb2 + _pb0], f1 = b[kb2 + _pb1], f2 = b[kb2 + _pb2], f3 = b[kb2 + _pb3];
            Add(a0, a1, a2, a3, b0, b1, b2, b3);
            Add(e0, e1, e2, e3, f0, f1, f2, f3);
        }

        // Adds k = first, first + span, ... of K: four a trip, with their 32 loads issued first (the
        // adds in k's order, as Step would make them).
        public void Walk(ArrayView<float> a, ArrayView<float> b, GemmArgs g, int first, int span)
        {
            int k = first;
            for (; k + 3 * span < g.K; k += 4 * span) Step4(a, b, g, k, span);
            if (k + span < g.K) { Step2(a, b, g, k, k + span); k += 2 * span; }
            if (k < g.K) Step(a, b, g, k);
        }

        // Step(k), Step(k + span), Step(k + 2 span), Step(k + 3 span) with all 32 loads issued first.
        private void Step4(ArrayView<float> a, ArrayView<float> b, GemmArgs g, int k, int span)
        {
            int ka = k * g.Ak, kb = k * g.Bk, da = span * g.Ak, db = span * g.Bk;
            float a0 = a[_pa0 + ka], a1 = a[_pa1 + ka], a2 = a[_pa2 + ka], a3 = a[_pa3 + ka];
            float b0 = b[kb + _pb0], b1 = b[kb + _pb1], b2 = b[kb + _pb2], b3 = b[kb + _pb3];
            ka += da; kb += db;
            float c0 = a[_pa0 + ka], c1 = a[_pa1 + ka], c2 = a[_pa2 + ka], c3 = a[_pa3 + ka];
            float d0 = b[kb + _pb0], d1 = b[kb + _pb1], d2 = b[kb + _pb2], d3 = b[kb + _pb3];
            ka += da; kb += db;
            float e0 = a[_pa0 + ka], e1 = a[_pa1 + ka], e2 = a[_pa2 + ka], e3 = a[_pa3 + ka];
            float f0 = b[kb + _pb0], f1 = b[kb + _pb1], f2 = b[kb + _pb2], f3 = b[kb + _pb3];
            ka += da; kb += db;
            float h0 = a[_pa0 + ka], h1 = a[_pa1 + ka], h2 = a[_pa2 + ka], h3 = a[_pa3 + ka];
            float q0 = b[kb + _pb0], q1 = b[kb + _pb1], q2 = b[kb + _pb2], q3 = b[kb + _pb3];
            Add(a0, a1, a2, a3, b0, b1, b2, b3);
            Add(c0, c1, c2, c3, d0, d1, d2, d3);
            Add(e0, e1, e2, e3, f0, f1, f2, f3);
            Add(h0, h1, h2, h3, q0, q1, q2, q3);
        }

        // The block += the outer product of a column (a0..a3) and a row (b0..b3).
        private void Add(float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3)
        {
            _s00 += a0 * b0; _s01 += a0 * b1; _s02 += a0 * b2; _s03 += a0 * b3;
            _s10 += a1 * b0; _s11 += a1 * b1; _s12 += a1 * b2; _s13 += a1 * b3;
            _s20 += a2 * b0; _s21 += a2 * b1; _s22 += a2 * b2; _s23 += a2 * b3;
            _s30 += a3 * b0; _s31 += a3 * b1; _s32 += a3 * b2; _s33 += a3 * b3;
        }

        // Sums the block over the warp's lanes and leaves the sums spread over them (WarpShare says
        // which a lane holds). A reduce-scatter: each halving level d = W/2, W/4, W/8, W/16 sends the
        // half of its values a lane gives up to the lane d away and adds the half it keeps (lanes with
        // bit d clear keep the lower indices); beyond 16 lanes, xor levels finish each sum. Every
        // element is added by the tree that a shuffle-down sum per element made at lane 0 (lanes paired
        // by bit W/2 first, down to bit 1; where a lane keeps the upper half its add's operands are
        // commuted, which IEEE addition allows bit for bit), in 16 shuffles on warps of 32 instead of
        // 80, the 80 as 16 loops of 5 dependent shuffles each (their latencies in a row).
        public void ScatterOverWarp(int lane)
        {
            int w = Warp.WarpSize;
            if (w >= 2)
            {
                int d = w >> 1;
                bool up = (lane & d) != 0;
                _s00 = Half(_s00, _s20, up, d); _s01 = Half(_s01, _s21, up, d); _s02 = Half(_s02, _s22, up, d); _s03 = Half(_s03, _s23, up, d);
                _s10 = Half(_s10, _s30, up, d); _s11 = Half(_s11, _s31, up, d); _s12 = Half(_s12, _s32, up, d); _s13 = Half(_s13, _s33, up, d);
            }
            if (w >= 4)
            {
                int d = w >> 2;
                bool up = (lane & d) != 0;
                _s00 = Half(_s00, _s10, up, d); _s01 = Half(_s01, _s11, up, d); _s02 = Half(_s02, _s12, up, d); _s03 = Half(_s03, _s13, up, d);
            }
            if (w >= 8)
            {
                int d = w >> 3;
                bool up = (lane & d) != 0;
                _s00 = Half(_s00, _s02, up, d); _s01 = Half(_s01, _s03, up, d);
            }
            if (w >= 16)
            {
                int d = w >> 4;
                _s00 = Half(_s00, _s01, (lane & d) != 0, d);
            }
            // Unrolled for a GPU's 32 (ptxas kept a loop of one trip); 64-lane warps take the loop too.
            if (w >= 32) _s00 += Warp.ShuffleXor(_s00, w >> 5);
            for (int d = w >> 6; d > 0; d >>= 1) _s00 += Warp.ShuffleXor(_s00, d);
        }

        // One halving level: a lane keeps lo (bit clear) or hi (bit set) and adds the partner's same index.
        private static float Half(float lo, float hi, bool up, int d)
        {
            float keep = up ? hi : lo, give = up ? lo : hi;
            return keep + Warp.ShuffleXor(give, d);
        }

        // Each run of `lanes` neighbouring lanes (a power of two dividing the warp) adds its sums into
        // its first lane, halving: lane l adds lane l + d for d = lanes/2, ..., 1.
        public void SumOverLanes(int lanes)
        {
            for (int d = lanes / 2; d > 0; d /= 2)
            {
                _s00 += Warp.ShuffleDown(_s00, d); _s01 += Warp.ShuffleDown(_s01, d); _s02 += Warp.ShuffleDown(_s02, d); _s03 += Warp.ShuffleDown(_s03, d);
                _s10 += Warp.ShuffleDown(_s10, d); _s11 += Warp.ShuffleDown(_s11, d); _s12 += Warp.ShuffleDown(_s12, d); _s13 += Warp.ShuffleDown(_s13, d);
                _s20 += Warp.ShuffleDown(_s20, d); _s21 += Warp.ShuffleDown(_s21, d); _s22 += Warp.ShuffleDown(_s22, d); _s23 += Warp.ShuffleDown(_s23, d);
                _s30 += Warp.ShuffleDown(_s30, d); _s31 += Warp.ShuffleDown(_s31, d); _s32 += Warp.ShuffleDown(_s32, d); _s33 += Warp.ShuffleDown(_s33, d);
            }
        }

        // Stores the share's elements that lie inside C (a team of one warp). The share's sums, the
        // block's elements share.First, share.First + 1, ... in row-major order, are the fields in order
        // from _s00 (ScatterOverWarp keeps a lane's in its first fields). On a GPU's warps of 32 a share
        // is one sum, and the tests of Count fold away.
        public readonly void StoreShare<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, WarpShare share)
            where TEpi : struct, IBinaryOp
        {
            int f = share.First, n = share.Count;
            StoreAt(c, e, g, epi, f, _s00);
            if (n > 1) StoreAt(c, e, g, epi, f + 1, _s01);
            if (n > 2) { StoreAt(c, e, g, epi, f + 2, _s02); StoreAt(c, e, g, epi, f + 3, _s03); }
            if (n > 4) { StoreAt(c, e, g, epi, f + 4, _s10); StoreAt(c, e, g, epi, f + 5, _s11); StoreAt(c, e, g, epi, f + 6, _s12); StoreAt(c, e, g, epi, f + 7, _s13); }
            if (n > 8)
            {
                StoreAt(c, e, g, epi, f + 8, _s20); StoreAt(c, e, g, epi, f + 9, _s21); StoreAt(c, e, g, epi, f + 10, _s22); StoreAt(c, e, g, epi, f + 11, _s23);
                StoreAt(c, e, g, epi, f + 12, _s30); StoreAt(c, e, g, epi, f + 13, _s31); StoreAt(c, e, g, epi, f + 14, _s32); StoreAt(c, e, g, epi, f + 15, _s33);
            }
        }

        // Writes the share's sums to s[at + share.First ...] (a team's warp hands its block over, 16 floats a warp).
        public readonly void ShareToShared(ArrayView<float> s, int at, WarpShare share)
        {
            int p = at + share.First, n = share.Count;
            s[p] = _s00;
            if (n > 1) s[p + 1] = _s01;
            if (n > 2) { s[p + 2] = _s02; s[p + 3] = _s03; }
            if (n > 4) { s[p + 4] = _s10; s[p + 5] = _s11; s[p + 6] = _s12; s[p + 7] = _s13; }
            if (n > 8)
            {
                s[p + 8] = _s20; s[p + 9] = _s21; s[p + 10] = _s22; s[p + 11] = _s23;
                s[p + 12] = _s30; s[p + 13] = _s31; s[p + 14] = _s32; s[p + 15] = _s33;
            }
        }

        // Stores element v of the block summed over a team of warps whose blocks lie 16 apart in s from
        // `at`, adding warp 0, then 1, ...: the order is fixed, so the bits are.
        public readonly void StoreOfTeam<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi,
            ArrayView<float> s, int at, int team, int v)
            where TEpi : struct, IBinaryOp
        {
            float sum = s[at + v];
            for (int w = 1; w < team; w++) sum += s[at + v + 16 * w];
            StoreAt(c, e, g, epi, v, sum);
        }

        // Element v of the block (row v / 4, column v % 4), if inside C.
        private readonly void StoreAt<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, int v, float value)
            where TEpi : struct, IBinaryOp
        {
            int i = _i0 + (v >> 2), j = _j0 + (v & 3);
            if (i < g.M && j < g.N) MatMulKernels.Store(c, e, g, epi, 0, i, j, value);
        }

        // Stores the block's elements that lie inside C, through scale, accumulate and the epilogue.
        public readonly void Store<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi)
            where TEpi : struct, IBinaryOp
        {
            StoreBlock(c, e, g, epi, 0, _i0, 1, _j0, 1, _s00, _s01, _s02, _s03, _s10, _s11, _s12, _s13,
                _s20, _s21, _s22, _s23, _s30, _s31, _s32, _s33);
        }
    }
}
