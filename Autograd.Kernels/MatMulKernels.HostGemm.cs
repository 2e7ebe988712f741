// The host SGEMM's job (HostGemm): a part's pieces of C, each 4 rows by a column block, as blocks
// of FMA chains held in registers; the slabs of B and strips of A a part copies as it goes; the
// store of a block through alpha, beta and the epilogue. MatMulKernels.Host.cs says why it is cut
// this way, splits the work and packs a transposed B. Every method is compiled optimised from its
// first call (a test checks it): at tier 0 each vector operation is a call.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>
    /// One host product. A through g's strides; B(k, j) at b[k * ld + j]; C and E as in the kernels.
    /// rowsShort: B's rows are N long and N is not a whole number of vectors, so the last column
    /// block's reads of B's last rows would run past B.
    /// </summary>
    private readonly unsafe struct HostGemm<TEpi, TS, TV>(float* a, float* b, int ld, bool rowsShort, HostColumns cols,
        float* c, float* e, GemmArgs g, TEpi epi) : IHostJob
        where TEpi : struct, IBinaryOp
        where TS : struct, IHostSimd<TV>
        where TV : unmanaged
    {
        /// <summary>Pieces [from, to) (HostFork's part): piece p is rows 4 (p / Blocks) on, column block p mod Blocks.</summary>
        // Each method here is fully optimised from the first call: tiered JIT would run the first
        // products unoptimised, with every vector operation a call.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int from, int to)
        {
            // (A slab past 2^29 floats, K over 8M, stays in place: the pool's arrays are int-indexed.)
            if (HostSlabs && to - from >= 2 * cols.Blocks && (long)g.K * 4 * cols.W < 1 << 29)
            {
                RunOnSlabs(from, to);
                return;
            }
            int w = cols.W;
            // The edge block's last rows of B, zero-padded (filled on first use: there is one edge block).
            float* lastRows = stackalloc float[4 * w * w];
            bool filled = false;
            // Where a block parks its accumulators before Finish: accumulators live across a call are
            // spilled inside the loop.
            TV* acc = stackalloc TV[16];
            for (int p = from; p < to; p++)
            {
                int i0 = p / cols.Blocks * 4, q = p % cols.Blocks, size = cols.Size(q), j = cols.Start(q) * w;
                var last = LastRowsOf(q, lastRows, ref filled);
                Block<NoSlab>(size, i0, j, b + j, ld, g.K - last.Count, last, acc, null);
            }
        }

        // Row k's vectors of column block q end at k * ld + j + size * w: past B's end for the last
        // `tail` rows, which the edge block takes from a zero-padded copy (made once: there is one).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private LastRows LastRowsOf(int q, float* lastRows, ref bool filled)
        {
            int size = cols.Size(q), j = cols.Start(q) * cols.W, width = size * cols.W;
            int overrun = j + width - g.N, tail = 0;
            if (rowsShort && overrun > 0) tail = Math.Min(g.K, (overrun + g.N - 1) / g.N);
            if (tail == 0) return default;
            if (!filled)
            {
                for (int r = 0; r < tail; r++)
                    for (int l = 0; l < width; l++)
                        lastRows[r * width + l] = j + l < g.N ? b[(long)(g.K - tail + r) * ld + j + l] : 0f;
                filled = true;
            }
            return new LastRows(lastRows, tail);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Block<TSlab>(int size, int i0, int j, float* bk, int step, int kEnd, LastRows last, TV* acc, float* slab, float* strip = null)
            where TSlab : struct, ISlabCopy
        {
            switch (size)
            {
                case 4: Block4<TSlab>(i0, j, bk, step, kEnd, last, acc, slab, strip); break;
                case 3: Block3<TSlab>(i0, j, bk, step, kEnd, last, acc, slab, strip); break;
                case 2: Block2<TSlab>(i0, j, bk, step, kEnd, last, acc, slab, strip); break;
                default: Block1<TSlab>(i0, j, bk, step, kEnd, last, acc, slab, strip); break;
            }
        }

        // A part that runs a column block on 2 or more row blocks runs the first one reading B in
        // place, storing the B vectors it loads into a slab (K rows of the block's vectors, aligned
        // and contiguous), and the others on the slab. Read in place, B's rows start off a vector
        // boundary where N is not a multiple of the width (at N = 100 in 16-float vectors, 3 rows in 4,
        // each vector load crossing two cache lines), and where N is a power of two a block's K rows
        // fall into few cache sets (at N = 1024, rows 4 KB apart: 32 of L2's 2,048 sets on an Intel
        // Xeon), so it was read from L3 for every row block. The part's pieces go column block by
        // column block; the chains and their k order are the in-place path's, so C is the same bit
        // for bit.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunOnSlabs(int from, int to)
        {
            int w = cols.W;
            float* lastRows = stackalloc float[4 * w * w];
            bool filled = false;
            TV* acc = stackalloc TV[16];
            // A transposed A gives a row block's 4 rows as 16 bytes of a cache line a k, M floats
            // apart (at M = 1024, 4 KB: all in one L1 set), and every column block reads them again.
            // Where there are 3 or more, the part first copies its row blocks' rows of A into strips
            // (4 floats a k, one after the other).
            int rFirst = from / cols.Blocks, rows = (to - 1) / cols.Blocks - rFirst + 1;
            bool strips = HostStrips && g.Ak != 1 && cols.Blocks >= 3 && (long)rows * StripPitch < 1 << 29;
            var pool = System.Buffers.ArrayPool<float>.Shared;
            // The widest column block's slab: K rows of up to 4 vectors.
            int widest = Math.Max(cols.Threes > 0 ? 3 : 0, cols.Tail);
            float[] rented = pool.Rent(g.K * widest * w + w - 1);
            float[]? rentedStrips = strips ? pool.Rent(rows * StripPitch + w - 1) : null;
            try
            {
                fixed (float* pinned = rented)
                fixed (float* pinnedStrips = rentedStrips)
                {
                    float* slab = AlignUp(pinned, w), stripBase = strips ? AlignUp(pinnedStrips, w) : null;
                    if (strips) StripsOfA(rFirst, rows, stripBase);
                    for (int q = 0; q < cols.Blocks; q++)
                    {
                        // The part's first piece in column block q, then every Blocks-th.
                        int first = from + ((q - from % cols.Blocks) % cols.Blocks + cols.Blocks) % cols.Blocks;
                        if (first >= to) continue;
                        int size = cols.Size(q), j = cols.Start(q) * w, width = size * w;
                        var last = LastRowsOf(q, lastRows, ref filled);
                        Block<CopyToSlab>(size, first / cols.Blocks * 4, j, b + j, ld, g.K - last.Count, last, acc, slab,
                            StripOf(first, stripBase, rFirst));
                        // The slab's last rows: the edge block's padded copy.
                        Buffer.MemoryCopy(last.Rows, slab + (long)(g.K - last.Count) * width,
                            (long)last.Count * width * sizeof(float), (long)last.Count * width * sizeof(float));
                        for (int p = first + cols.Blocks; p < to; p += cols.Blocks)
                            Block<NoSlab>(size, p / cols.Blocks * 4, j, slab, width, g.K, default, acc, null, StripOf(p, stripBase, rFirst));
                    }
                }
            }
            finally
            {
                pool.Return(rented);
                if (rentedStrips != null) pool.Return(rentedStrips);
            }
        }

        // Floats from one strip to the next: 4 a k and a cache line more, so that the strips' lines
        // at one k fall into different cache sets (at K = 64, strips 1 KB apart shared 4 of L1's 64).
        private int StripPitch
        {
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            get => 4 * g.K + 16;
        }

        // Piece p's strip of A where the part has strips (from row block rFirst on), else null.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float* StripOf(int p, float* strips, int rFirst) =>
            strips == null ? null : strips + (long)(p / cols.Blocks - rFirst) * StripPitch;

        // The part's row blocks rFirst to rFirst + rows - 1 into strips StripPitch apart. Where A's 4
        // rows are adjacent at each k (a transposed A), k goes outermost, so that each k reads the
        // part's rows as one run. Row block by row block, each k read 16 bytes of a line M floats
        // apart (at M = 1000, 4 KB: one L1 set), and each of a line's 4 row blocks read it from L2
        // again: 10% of the seed's dW1 (1000x64x100 TN). Optimised from its first call, like every
        // method here: at tier 0 each Vector128 load and store was a call, and the example's first
        // 500 CPU steps took ~130 us a step more.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void StripsOfA(int rFirst, int rows, float* strips)
        {
            int pitch = StripPitch, whole = g.Am == 1 ? Math.Clamp(g.M / 4 - rFirst, 0, rows) : 0;
            if (whole > 0)
            {
                float* src = a + rFirst * 4;
                for (int k = 0; k < g.K; k++, src += g.Ak)
                {
                    float* s = src, d = strips + 4 * k;
                    for (int r = 0; r < whole; r++, s += 4, d += pitch) Vector128.Store(Vector128.Load(s), d);
                }
            }
            // A partial last row block (rows past M repeat the last), or A in another layout.
            for (int r = whole; r < rows; r++) StripOfA((rFirst + r) * 4, strips + (long)r * pitch);
        }

        // Row block i0's 4 rows of A, k by k, into dst (4 K floats); rows past M repeat the last.
        // StripsOfA takes a transposed A's whole row blocks; this, the rest.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void StripOfA(int i0, float* dst)
        {
            float* a0 = RowA(i0), a1 = RowA(i0 + 1), a2 = RowA(i0 + 2), a3 = RowA(i0 + 3);
            for (int k = 0, ka = 0; k < g.K; k++, ka += g.Ak, dst += 4)
                (dst[0], dst[1], dst[2], dst[3]) = (a0[ka], a1[ka], a2[ka], a3[ka]);
        }

        // Rows past M repeat the last row (loads stay in bounds); Finish drops their results.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float* RowA(int i) => a + Math.Min(i, g.M - 1) * g.Am;

        // Row block i0's 4 rows of A and the step between their k: in place, or in a strip (A's 4
        // rows k by k, StripsOfA).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void RowsOfA(int i0, float* strip, out float* a0, out float* a1, out float* a2, out float* a3, out int ak)
        {
            if (strip == null)
            {
                a0 = RowA(i0); a1 = RowA(i0 + 1); a2 = RowA(i0 + 2); a3 = RowA(i0 + 3);
                ak = g.Ak;
                return;
            }
            a0 = strip; a1 = strip + 1; a2 = strip + 2; a3 = strip + 3;
            ak = 4;
        }

        // 4 rows x 3 vectors of C: 12 independent FMA chains; B(k, j..) at bk + k * ld.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block3<TSlab>(int i0, int j, float* bk, int step, int kEnd, LastRows last, TV* acc, float* slab, float* strip)
            where TSlab : struct, ISlabCopy
        {
            RowsOfA(i0, strip, out float* a0, out float* a1, out float* a2, out float* a3, out int ak);
            TV c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
            TV c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
            int w = TS.Count;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += step)
            {
                var b0 = TS.Load(bk);
                var b1 = TS.Load(bk + w);
                var b2 = TS.Load(bk + 2 * w);
                if (TSlab.On)
                {
                    TS.Store(b0, slab); TS.Store(b1, slab + w); TS.Store(b2, slab + 2 * w);
                    slab += 3 * w;
                }
                var x = TS.Splat(a0[ka]);
                c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01); c02 = TS.Fma(x, b2, c02);
                x = TS.Splat(a1[ka]);
                c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11); c12 = TS.Fma(x, b2, c12);
                x = TS.Splat(a2[ka]);
                c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21); c22 = TS.Fma(x, b2, c22);
                x = TS.Splat(a3[ka]);
                c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31); c32 = TS.Fma(x, b2, c32);
            }
            acc[0] = c00; acc[1] = c01; acc[2] = c02; acc[3] = c10; acc[4] = c11; acc[5] = c12;
            acc[6] = c20; acc[7] = c21; acc[8] = c22; acc[9] = c30; acc[10] = c31; acc[11] = c32;
            Finish(i0, j, acc, 3, last);
        }

        // 4 rows x 4 vectors of C: 16 FMA chains, 21 vector registers (so only where there are 32).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block4<TSlab>(int i0, int j, float* bk, int step, int kEnd, LastRows last, TV* acc, float* slab, float* strip)
            where TSlab : struct, ISlabCopy
        {
            RowsOfA(i0, strip, out float* a0, out float* a1, out float* a2, out float* a3, out int ak);
            TV c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
            TV c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
            int w = TS.Count;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += step)
            {
                var b0 = TS.Load(bk);
                var b1 = TS.Load(bk + w);
                var b2 = TS.Load(bk + 2 * w);
                var b3 = TS.Load(bk + 3 * w);
                if (TSlab.On)
                {
                    TS.Store(b0, slab); TS.Store(b1, slab + w); TS.Store(b2, slab + 2 * w); TS.Store(b3, slab + 3 * w);
                    slab += 4 * w;
                }
                var x = TS.Splat(a0[ka]);
                c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01); c02 = TS.Fma(x, b2, c02); c03 = TS.Fma(x, b3, c03);
                x = TS.Splat(a1[ka]);
                c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11); c12 = TS.Fma(x, b2, c12); c13 = TS.Fma(x, b3, c13);
                x = TS.Splat(a2[ka]);
                c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21); c22 = TS.Fma(x, b2, c22); c23 = TS.Fma(x, b3, c23);
                x = TS.Splat(a3[ka]);
                c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31); c32 = TS.Fma(x, b2, c32); c33 = TS.Fma(x, b3, c33);
            }
            acc[0] = c00; acc[1] = c01; acc[2] = c02; acc[3] = c03; acc[4] = c10; acc[5] = c11; acc[6] = c12; acc[7] = c13;
            acc[8] = c20; acc[9] = c21; acc[10] = c22; acc[11] = c23; acc[12] = c30; acc[13] = c31; acc[14] = c32; acc[15] = c33;
            Finish(i0, j, acc, 4, last);
        }

        // 4 rows x 2 vectors of C: 8 independent FMA chains.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block2<TSlab>(int i0, int j, float* bk, int step, int kEnd, LastRows last, TV* acc, float* slab, float* strip)
            where TSlab : struct, ISlabCopy
        {
            RowsOfA(i0, strip, out float* a0, out float* a1, out float* a2, out float* a3, out int ak);
            TV c00 = default, c01 = default, c10 = default, c11 = default;
            TV c20 = default, c21 = default, c30 = default, c31 = default;
            int w = TS.Count;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += step)
            {
                var b0 = TS.Load(bk);
                var b1 = TS.Load(bk + w);
                if (TSlab.On)
                {
                    TS.Store(b0, slab); TS.Store(b1, slab + w);
                    slab += 2 * w;
                }
                var x = TS.Splat(a0[ka]);
                c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01);
                x = TS.Splat(a1[ka]);
                c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11);
                x = TS.Splat(a2[ka]);
                c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21);
                x = TS.Splat(a3[ka]);
                c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31);
            }
            acc[0] = c00; acc[1] = c01; acc[2] = c10; acc[3] = c11;
            acc[4] = c20; acc[5] = c21; acc[6] = c30; acc[7] = c31;
            Finish(i0, j, acc, 2, last);
        }

        // 4 rows x 1 vector: only when C is one vector wide.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block1<TSlab>(int i0, int j, float* bk, int step, int kEnd, LastRows last, TV* acc, float* slab, float* strip)
            where TSlab : struct, ISlabCopy
        {
            RowsOfA(i0, strip, out float* a0, out float* a1, out float* a2, out float* a3, out int ak);
            TV c0 = default, c1 = default, c2 = default, c3 = default;
            int w = TS.Count;
            for (int k = 0, ka = 0; k < kEnd; k++, ka += ak, bk += step)
            {
                var b0 = TS.Load(bk);
                if (TSlab.On)
                {
                    TS.Store(b0, slab);
                    slab += w;
                }
                c0 = TS.Fma(TS.Splat(a0[ka]), b0, c0);
                c1 = TS.Fma(TS.Splat(a1[ka]), b0, c1);
                c2 = TS.Fma(TS.Splat(a2[ka]), b0, c2);
                c3 = TS.Fma(TS.Splat(a3[ka]), b0, c3);
            }
            acc[0] = c0; acc[1] = c1; acc[2] = c2; acc[3] = c3;
            Finish(i0, j, acc, 1, last);
        }

        // Stores a block's 4 x vectors accumulators (row-major in acc). The edge block first does the
        // FMAs of B's last rows from their padded copy: each chain still ends in k order.
        // Never inlined: in a block's body it would take the registers its FMA chains need.
        [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
        private void Finish(int i0, int j, TV* acc, int vectors, LastRows last)
        {
            int w = TS.Count;
            for (int t = 0; t < last.Count; t++)
            {
                int ka = (g.K - last.Count + t) * g.Ak;
                float* row = last.Rows + t * vectors * w;
                for (int r = 0; r < 4; r++)
                {
                    var x = TS.Splat(RowA(i0 + r)[ka]);
                    for (int v = 0; v < vectors; v++)
                        acc[r * vectors + v] = TS.Fma(x, TS.Load(row + v * w), acc[r * vectors + v]);
                }
            }
            if (typeof(TEpi) == typeof(FirstOp) && i0 + 4 <= g.M && j + vectors * w <= g.N)
            {
                // The common piece: whole vectors inside C, no epilogue op. Put without its checks,
                // which cost a fifth of a product whose K is 64.
                float* ci = c + i0 * g.N + j;
                for (int r = 0; r < 4; r++, ci += g.N)
                    for (int v = 0; v < vectors; v++)
                        TS.Store(Scaled(acc[r * vectors + v], ci + v * w), ci + v * w);
                return;
            }
            if (typeof(TEpi) == typeof(FirstOp) && i0 + 4 <= g.M)
            {
                // The edge piece, the same way up to its last vector, whose lanes past C's last
                // column are dropped: through Put it cost ~5 of a 1000x64x100 product's 43 us. Kept
                // apart from the loop above, which a variable vector count slowed (eighth session).
                int whole = (g.N - j) / w, rest = g.N - j - whole * w;
                float* ci = c + i0 * g.N + j;
                for (int r = 0; r < 4; r++, ci += g.N)
                {
                    for (int v = 0; v < whole; v++)
                        TS.Store(Scaled(acc[r * vectors + v], ci + v * w), ci + v * w);
                    float* lanes = (float*)(acc + r * vectors + whole), cl = ci + whole * w;
                    for (int l = 0; l < rest; l++)
                        cl[l] = ScaledLane(lanes[l], cl + l);
                }
                return;
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < vectors; v++)
                    Put(i0 + r, j + v * w, acc[r * vectors + v]);
        }

        // Whole vectors are scaled and accumulated as vectors (same operations per lane as Store, so
        // the same bits); the epilogue op, unless it is FirstOp, runs per element.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Put(int i, int j, TV v)
        {
            if (i >= g.M) return;
            int w = TS.Count;
            float* lanes = (float*)&v;
            if (g.N - j < w)
            {
                for (int l = 0; l < g.N - j; l++) Store(i, j + l, lanes[l]);
                return;
            }
            float* ci = c + i * g.N + j;
            var p = Scaled(v, ci);
            if (typeof(TEpi) == typeof(FirstOp))
            {
                TS.Store(p, ci);
                return;
            }
            lanes = (float*)&p;
            float* ei = e + i * g.Em + j * g.En;
            if (VectorOp.HasBinary(epi) && g.En <= 1)
            {
                // The op's vector form (its bits), on each Vector<float> of the block's vector.
                for (int l = 0; l < w; l += Vector<float>.Count)
                {
                    var operand = g.En == 1 ? *(Vector<float>*)(ei + l) : new Vector<float>(*ei);
                    *(Vector<float>*)(ci + l) = VectorOp.Apply(epi, *(Vector<float>*)(lanes + l), operand);
                }
                return;
            }
            for (int l = 0; l < w; l++) ci[l] = epi.Apply(lanes[l], ei[l * g.En]);
        }

        // Alpha v + Beta C for the whole vector of C at ci (C not read when Beta is 0): Store's
        // operations per lane, so its bits.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private TV Scaled(TV v, float* ci)
        {
            var p = TS.Scale(v, g.Alpha);
            return g.Beta != 0f ? TS.Add(p, TS.Scale(TS.Load(ci), g.Beta)) : p;
        }

        // Alpha v + Beta C for the element of C at ci (C not read when Beta is 0): the kernels' Store
        // before its epilogue op.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float ScaledLane(float v, float* ci) => g.Beta == 0f ? g.Alpha * v : g.Alpha * v + g.Beta * *ci;

        // The kernels' Store: scale, accumulate, then the epilogue op.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Store(int i, int j, float v)
        {
            int idx = i * g.N + j;
            c[idx] = epi.Apply(ScaledLane(v, c + idx), e[i * g.Em + j * g.En]);
        }
    }
}
