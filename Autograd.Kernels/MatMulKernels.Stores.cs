// The SGEMM stores every path shares: an element, a row of four, a thread's 4x4 block (with the
// inside-C form at constant offsets), a row of a 128-tile thread's 8x8 block. Each applies scale,
// accumulate and the epilogue op in that order (Scaled, then epi.Apply), so every path and form
// gives the same bits for the same sums; and each reads all its loads before its first store
// (below, "every load before any store").
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    // The one place a product element is written: scale, accumulate, then the epilogue op.
    private static void Store<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi,
        int cBase, int i, int j, float v)
        where TEpi : struct, IBinaryOp
    {
        int idx = cBase + i * g.N + j;
        c[idx] = epi.Apply(Scaled(g, v, g.Beta == 0f ? 0f : c[idx]), e[i * g.Em + j * g.En]);
    }

    // ---------------------------------------------------------------- stores: every load before any store
    // C and the epilogue operand may be one buffer (at the same element: an update of W reads W), so
    // the compiler keeps each load after the store before it, and an epilogue that loads, computes
    // and stores element by element waits out a round trip to memory per element: 16 in a row for a
    // thread's 4x4 block, ~3 us of the seed's dH on an H200 (runs 9-10: 6.5 us in the step against
    // 3.6 for the same product without its operand; the SASS read LD, LD, ST sixteen times). So a
    // thread first reads the operand (and C, where beta is not 0) of every element it is about to
    // store, all in flight together, then computes and stores each as Store does: the same bits.
    // Positions outside C read a clamped element inside it (in bounds, no branch); their stores are
    // skipped. Aliasing only at the same element, reading all first reads what each element read.

    // The operand (E) and old C values of four elements of row i: columns j + q step.
    private readonly struct RowLoads
    {
        public readonly float E0, E1, E2, E3, C0, C1, C2, C3;

        public RowLoads(ArrayView<float> c, ArrayView<float> e, GemmArgs g, int cBase, int i, int j, int step)
        {
            int ii = Min(i, g.M - 1), last = g.N - 1;
            int j0 = Min(j, last), j1 = Min(j + step, last), j2 = Min(j + 2 * step, last), j3 = Min(j + 3 * step, last);
            int eRow = ii * g.Em;
            E0 = e[eRow + j0 * g.En];
            E1 = e[eRow + j1 * g.En];
            E2 = e[eRow + j2 * g.En];
            E3 = e[eRow + j3 * g.En];
            int row = cBase + ii * g.N;
            bool old = g.Beta != 0f;
            C0 = old ? c[row + j0] : 0f;
            C1 = old ? c[row + j1] : 0f;
            C2 = old ? c[row + j2] : 0f;
            C3 = old ? c[row + j3] : 0f;
        }

        // The same loads for four elements inside C, at constant offsets from the row's views: cRow
        // starts at the first element, eRow at its operand, eStep floats between operand elements.
        public RowLoads(ArrayView<float> cRow, ArrayView<float> eRow, GemmArgs g, int step, int eStep)
        {
            E0 = eRow[0];
            E1 = eRow[eStep];
            E2 = eRow[2 * eStep];
            E3 = eRow[3 * eStep];
            bool old = g.Beta != 0f;
            C0 = old ? cRow[0] : 0f;
            C1 = old ? cRow[step] : 0f;
            C2 = old ? cRow[2 * step] : 0f;
            C3 = old ? cRow[3 * step] : 0f;
        }
    }

    // Every store's arithmetic (Store, StoreRow): scale, then accumulate the old C, read before.
    private static float Scaled(GemmArgs g, float v, float old) => g.Beta == 0f ? g.Alpha * v : g.Alpha * v + g.Beta * old;

    // Four elements of row i from their loads, those inside C.
    private static void StoreRow<TEpi>(ArrayView<float> c, GemmArgs g, TEpi epi, int cBase, int i, int j, int step, RowLoads l,
        float v0, float v1, float v2, float v3)
        where TEpi : struct, IBinaryOp
    {
        if (i >= g.M) return;
        int row = cBase + i * g.N;
        if (j < g.N) c[row + j] = epi.Apply(Scaled(g, v0, l.C0), l.E0);
        if (j + step < g.N) c[row + j + step] = epi.Apply(Scaled(g, v1, l.C1), l.E1);
        if (j + 2 * step < g.N) c[row + j + 2 * step] = epi.Apply(Scaled(g, v2, l.C2), l.E2);
        if (j + 3 * step < g.N) c[row + j + 3 * step] = epi.Apply(Scaled(g, v3, l.C3), l.E3);
    }

    // Four elements of row i: columns j, j + step, j + 2 step, j + 3 step, those inside C (a row of
    // a tiled thread's block; step 1 for the Small and Warp blocks).
    private static void StoreStrided<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi,
        int cBase, int i, int j, int step, float v0, float v1, float v2, float v3)
        where TEpi : struct, IBinaryOp =>
        StoreRow(c, g, epi, cBase, i, j, step, new RowLoads(c, e, g, cBase, i, j, step), v0, v1, v2, v3);

    // A thread's 4x4 block: rows i + q rowStep, columns j + q colStep; all 16 elements' loads first.
    // A block wholly inside C whose operand runs along its rows (En = 1: a matrix, a bias row) or
    // stays put along them (En = 0: a column, a scalar, no operand) is stored by StoreBlockInside.
    private static void StoreBlock<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi,
        int cBase, int i, int rowStep, int j, int colStep,
        float s00, float s01, float s02, float s03, float s10, float s11, float s12, float s13,
        float s20, float s21, float s22, float s23, float s30, float s31, float s32, float s33)
        where TEpi : struct, IBinaryOp
    {
        if (i + 3 * rowStep < g.M && j + 3 * colStep < g.N && (g.En == 0 || g.En == 1))
        {
            if (g.En == 1)
                StoreBlockInside<TEpi, OperandAlongRow>(c, e, g, epi, cBase, i, rowStep, j, colStep, s00, s01, s02, s03, s10, s11, s12, s13,
                    s20, s21, s22, s23, s30, s31, s32, s33);
            else
                StoreBlockInside<TEpi, OperandFixedInRow>(c, e, g, epi, cBase, i, rowStep, j, colStep, s00, s01, s02, s03, s10, s11, s12, s13,
                    s20, s21, s22, s23, s30, s31, s32, s33);
            return;
        }
        var l0 = new RowLoads(c, e, g, cBase, i, j, colStep);
        var l1 = new RowLoads(c, e, g, cBase, i + rowStep, j, colStep);
        var l2 = new RowLoads(c, e, g, cBase, i + 2 * rowStep, j, colStep);
        var l3 = new RowLoads(c, e, g, cBase, i + 3 * rowStep, j, colStep);
        StoreRow(c, g, epi, cBase, i, j, colStep, l0, s00, s01, s02, s03);
        StoreRow(c, g, epi, cBase, i + rowStep, j, colStep, l1, s10, s11, s12, s13);
        StoreRow(c, g, epi, cBase, i + 2 * rowStep, j, colStep, l2, s20, s21, s22, s23);
        StoreRow(c, g, epi, cBase, i + 3 * rowStep, j, colStep, l3, s30, s31, s32, s33);
    }

    // How the epilogue operand moves along a row of C, as a type, so its offsets are constants.
    private interface IOperandRow
    {
        bool Along { get; }
    }

    // E(i, j + 1) follows E(i, j) (En = 1).
    private readonly struct OperandAlongRow : IOperandRow
    {
        public bool Along => true;
    }

    // E(i, j) is the same for every j (En = 0).
    private readonly struct OperandFixedInRow : IOperandRow
    {
        public bool Along => false;
    }

    // StoreBlock for a block wholly inside C: no clamps and no tests a element, and each row's loads
    // and stores at constant offsets from one view of C and one of the operand (colStep is a constant
    // in every kernel that stores blocks). Element by element through clamped run-time indices, each
    // of the 16 took ~30 SASS instructions (two 64-bit address products, reloaded bases, a tested
    // store in its own branch); the same arithmetic, so the same bits.
    private static void StoreBlockInside<TEpi, TRow>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi,
        int cBase, int i, int rowStep, int j, int colStep,
        float s00, float s01, float s02, float s03, float s10, float s11, float s12, float s13,
        float s20, float s21, float s22, float s23, float s30, float s31, float s32, float s33)
        where TEpi : struct, IBinaryOp
        where TRow : struct, IOperandRow
    {
        bool along = default(TRow).Along;
        int eStep = along ? colStep : 0, span = 3 * colStep + 1, eSpan = 3 * eStep + 1;
        int eCol = along ? j : 0;
        var c0 = c.SubView(cBase + i * g.N + j, span);
        var c1 = c.SubView(cBase + (i + rowStep) * g.N + j, span);
        var c2 = c.SubView(cBase + (i + 2 * rowStep) * g.N + j, span);
        var c3 = c.SubView(cBase + (i + 3 * rowStep) * g.N + j, span);
        var l0 = new RowLoads(c0, e.SubView(i * g.Em + eCol, eSpan), g, colStep, eStep);
        var l1 = new RowLoads(c1, e.SubView((i + rowStep) * g.Em + eCol, eSpan), g, colStep, eStep);
        var l2 = new RowLoads(c2, e.SubView((i + 2 * rowStep) * g.Em + eCol, eSpan), g, colStep, eStep);
        var l3 = new RowLoads(c3, e.SubView((i + 3 * rowStep) * g.Em + eCol, eSpan), g, colStep, eStep);
        StoreRowInside(c0, g, epi, colStep, l0, s00, s01, s02, s03);
        StoreRowInside(c1, g, epi, colStep, l1, s10, s11, s12, s13);
        StoreRowInside(c2, g, epi, colStep, l2, s20, s21, s22, s23);
        StoreRowInside(c3, g, epi, colStep, l3, s30, s31, s32, s33);
    }

    // Four elements of a row inside C, from their loads: StoreRow without the tests.
    private static void StoreRowInside<TEpi>(ArrayView<float> cRow, GemmArgs g, TEpi epi, int step, RowLoads l,
        float v0, float v1, float v2, float v3)
        where TEpi : struct, IBinaryOp
    {
        cRow[0] = epi.Apply(Scaled(g, v0, l.C0), l.E0);
        cRow[step] = epi.Apply(Scaled(g, v1, l.C1), l.E1);
        cRow[2 * step] = epi.Apply(Scaled(g, v2, l.C2), l.E2);
        cRow[3 * step] = epi.Apply(Scaled(g, v3, l.C3), l.E3);
    }

    // One row of a 128x128-tile thread's 8x8 block (Large, Wide, Wide16): column q of the 8 is
    // j + (q % 4) * step + (q / 4) * 64, so Large (step 16) writes j, j+16, ..., j+112 and Wide
    // (step 1) writes j..j+3 and j+64..j+67. The row's 8 loads first.
    private static void StoreRow8<TEpi>(ArrayView<float> c, ArrayView<float> e, GemmArgs g, TEpi epi, int cBase, int i, int j, int step,
        float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
        where TEpi : struct, IBinaryOp
    {
        var near = new RowLoads(c, e, g, cBase, i, j, step);
        var far = new RowLoads(c, e, g, cBase, i, j + 64, step);
        StoreRow(c, g, epi, cBase, i, j, step, near, v0, v1, v2, v3);
        StoreRow(c, g, epi, cBase, i, j + 64, step, far, v4, v5, v6, v7);
    }
}
