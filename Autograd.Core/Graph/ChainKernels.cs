// Run-time generation of a chain tail (Autograd.Kernels/ProductChain.cs): a product and the small
// products after it in one launch; and of a row chain (MatMulKernels.Rows.cs), products that each
// need only the rows the one before stored, block of rows by block of rows in one launch. Both are
// made of the same stages. Each stage's op structs are known only once the graph is fused, so
// the stage types are composed with MakeGenericType, Stages<S1, Stages<S2, NoStage>>, and so is a
// maker per stage that builds its struct from the stage's bound operands at each launch (a learning
// rate read then, as every fused product reads its alpha). The makers are built once, by reflection;
// a launch calls them through an interface, without reflection.
using System.Reflection;
using AutogradNet.Kernels;
using ILGPU;

namespace AutogradNet;

/// <summary>A chain stage's operands as the compiled program bound them: the node's inputs, output and side output.</summary>
internal readonly record struct StageOperands(Operand[] X, Operand Y, Operand Side);

/// <summary>Launch of a chain: the head's inputs and output, each stage's operands, scratch.</summary>
internal delegate void ChainLaunch(KernelHost h, Operand[] x, Operand y, StageOperands[] stages, ArrayView<float> scratch);

/// <summary>
/// A product whose launch ends with the products after it (Fuse.Chain.cs): Head is the product's own
/// epilogue, Stages the nodes that run in its last group, in order, TailType the ChainTail&lt;TStages&gt; they make.
/// </summary>
internal sealed record MatMulChainOp(MatMulEpilogue Head, IReadOnlyList<Node> Stages, Type TailType, ChainLaunch Launch)
{
    public string Text => Head.Text + " then " + string.Join(" then ", Stages.Select(s => s.Op.ToString()));
}

/// <summary>Launch of a row chain: each stage's operands, its split, scratch (the loss's partial sums).</summary>
internal delegate void RowsLaunch(KernelHost h, RowSplit split, StageOperands[] stages, ArrayView<float> scratch);

/// <summary>
/// Products run block of rows by block of rows in one launch (Fuse.Rows.cs): Stages are the nodes, the
/// first included, Split how the compile found the rows cut (HeadColumns the first stage's columns it
/// was asked for, 0 when that stage sums), StagesType the Stages&lt;...&gt; they make.
/// </summary>
internal sealed record MatMulRowsOp(IReadOnlyList<Node> Stages, RowSplit Split, int HeadColumns, Type StagesType, RowsLaunch Launch)
{
    public string Text => string.Join(" then ", Stages.Select(s => s.Op.ToString()));
}

/// <summary>
/// Where a stage runs: in the last group of the chain's head product (Head), or over a block of rows
/// of a row chain (Rows, with its sums' partials in Parts).
/// </summary>
internal readonly record struct StageContext((int M, int N, int K) Head, RowSplit? Rows, ArrayView<float> Parts);

/// <summary>Builds stage i of a chain, and the stages after it, for one launch.</summary>
internal interface IStageMaker<out T> where T : struct, IGroupStage
{
    T Make(KernelHost h, StageContext at, StageOperands[] stages, int i);
}

internal static class ChainKernels
{
    /// <summary>The chain op for a head product and its stages (each a fused product or a product with its sum).</summary>
    public static MatMulChainOp Chain(OpSpec headOp, MatMulEpilogue head, IReadOnlyList<Node> stages)
    {
        var (stagesType, maker) = Compose(stages);
        var bind = typeof(ChainKernels).GetMethod(nameof(Bind), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(head.OpType, stagesType);
        var launch = (ChainLaunch)bind.Invoke(null, [headOp, head, maker])!;
        return new MatMulChainOp(head, stages, typeof(ChainTail<>).MakeGenericType(stagesType), launch);
    }

    /// <summary>The row chain op for its stages (each a fused product or a product with its sum), split as the compile found.</summary>
    public static MatMulRowsOp Rows(IReadOnlyList<Node> stages, RowSplit split, int headColumns)
    {
        var (stagesType, maker) = Compose(stages);
        var bind = typeof(ChainKernels).GetMethod(nameof(BindRows), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(stagesType);
        return new MatMulRowsOp(stages, split, headColumns, stagesType, (RowsLaunch)bind.Invoke(null, [maker])!);
    }

    // The stages' composed type, Stages<S1, Stages<S2, NoStage>>, and the maker of its struct.
    private static (Type Stages, object Maker) Compose(IReadOnlyList<Node> stages)
    {
        // The maker of the last stage first: Stages<Sn, NoStage>, then Stages<Sn-1, ...>, ...
        Type stagesType = typeof(NoStage);
        object maker = new EndMaker();
        for (int i = stages.Count - 1; i >= 0; i--)
        {
            var (stageType, stageMaker) = Stage(stages[i].Op);
            var composed = typeof(Stages<,>).MakeGenericType(stageType, stagesType);
            maker = Activator.CreateInstance(typeof(StagesMaker<,>).MakeGenericType(stageType, stagesType), stageMaker, maker, i)!;
            stagesType = composed;
        }
        return (stagesType, maker);
    }

    // A stage's struct type and the maker of its struct.
    private static (Type Stage, object Maker) Stage(OpSpec op)
    {
        switch (op.Payload)
        {
            case MatMulSumOp s:
            {
                var types = new[] { s.Epilogue.OpType, s.Sum.Map.GetType(), (s.Sum.Side ?? new FirstOp()).GetType() };
                var maker = Activator.CreateInstance(typeof(SumMaker<,,>).MakeGenericType(types), op, s)!;
                return (typeof(GroupProduct<,,>).MakeGenericType(types), maker);
            }
            case MatMulEpilogue e:
            {
                var maker = Activator.CreateInstance(typeof(ProductMaker<>).MakeGenericType(e.OpType), op, e)!;
                return (typeof(GroupProduct<,,>).MakeGenericType(e.OpType, typeof(IdentityOp), typeof(FirstOp)), maker);
            }
            default:
                throw new InvalidOperationException($"Chain: {op} cannot be a chain stage; Fuse.Chain takes fused products and products with their sum only.");
        }
    }

    private static ChainLaunch Bind<TEpi, TStages>(OpSpec mm, MatMulEpilogue head, IStageMaker<TStages> maker)
        where TEpi : struct, IBinaryOp
        where TStages : struct, IGroupStage
    {
        var epi = (TEpi)head.Op;
        bool ta = mm.Flag1, tb = mm.Flag2;
        return (h, x, y, stages, scratch) =>
        {
            var (m, n, k) = Dims(mm, x);
            var e = head.HasOperand ? x[2].View : y.View;
            var tail = new ChainTail<TStages>(maker.Make(h, new StageContext((m, n, k), null, default), stages, 0));
            MatMulKernels.MatMulChain(h, x[0].View, ta, x[1].View, tb, y.View, m, n, k, head.Alpha(), head.Beta, scratch,
                epi, e, head.HasOperand ? head.RowStride : 0, head.HasOperand ? head.ColStride : 0, tail);
        };
    }

    private static RowsLaunch BindRows<TStages>(IStageMaker<TStages> maker)
        where TStages : struct, IGroupStage =>
        (h, split, stages, scratch) => MatMulKernels.MatMulRows(h, split, maker.Make(h, new StageContext(default, split, scratch), stages, 0));

    // (M, N, K) of a product, from its bound inputs.
    private static (int M, int N, int K) Dims(OpSpec mm, Operand[] x) => Executor.ProductDims(mm, x[0].Shape, x[1].Shape);

    private sealed class EndMaker : IStageMaker<NoStage>
    {
        public NoStage Make(KernelHost h, StageContext at, StageOperands[] stages, int i) => default;
    }

    private sealed class StagesMaker<TFirst, TRest>(IStageMaker<TFirst> first, IStageMaker<TRest> rest, int index)
        : IStageMaker<Stages<TFirst, TRest>>
        where TFirst : struct, IGroupStage
        where TRest : struct, IGroupStage
    {
        public Stages<TFirst, TRest> Make(KernelHost h, StageContext at, StageOperands[] stages, int i) =>
            new(first.Make(h, at, stages, index), rest.Make(h, at, stages, index + 1));
    }

    // A fused product: C is the node's output; the epilogue operand, when it has one, its third input.
    private sealed class ProductMaker<TEpi>(OpSpec mm, MatMulEpilogue e) : IStageMaker<GroupProduct<TEpi, IdentityOp, FirstOp>>
        where TEpi : struct, IBinaryOp
    {
        public GroupProduct<TEpi, IdentityOp, FirstOp> Make(KernelHost h, StageContext at, StageOperands[] stages, int i)
        {
            var (x, y) = (stages[i].X, stages[i].Y);
            var (m, n, k) = Dims(mm, x);
            var (operand, em, en) = e.HasOperand ? (x[2].View, e.RowStride, e.ColStride) : (y.View, 0, 0);
            return at.Rows is { } split
                ? MatMulKernels.RowProduct(h, split, x[0].View, mm.Flag1, x[1].View, mm.Flag2, y.View, m, n, k, e.Alpha(), e.Beta, (TEpi)e.Op, operand, em, en, head: i == 0)
                : MatMulKernels.GroupProduct(h, at.Head, x[0].View, mm.Flag1, x[1].View, mm.Flag2, y.View, m, n, k, e.Alpha(), e.Beta, (TEpi)e.Op, operand, em, en);
        }
    }

    // A product with its sum: the loss is the node's output, C its side output, the sum bound as
    // MatMulSum's launch binds it (FusedKernels.Tail).
    private sealed class SumMaker<TEpi, TMap, TSide>(OpSpec mm, MatMulSumOp s) : IStageMaker<GroupProduct<TEpi, TMap, TSide>>
        where TEpi : struct, IBinaryOp
        where TMap : struct, IUnaryOp
        where TSide : struct, IBinaryOp
    {
        public GroupProduct<TEpi, TMap, TSide> Make(KernelHost h, StageContext at, StageOperands[] stages, int i)
        {
            var (x, loss, c) = (stages[i].X, stages[i].Y, stages[i].Side);
            var (m, n, k) = Dims(mm, x);
            var e = s.Epilogue;
            var sum = FusedKernels.Tail<TMap, TSide>(s.Sum, loss, x);
            var (operand, em, en) = e.HasOperand ? (x[2].View, e.RowStride, e.ColStride) : (c.View, 0, 0);
            return at.Rows is { } split
                ? MatMulKernels.RowProductSum(h, split, x[0].View, mm.Flag1, x[1].View, mm.Flag2, c.View, m, n, k, e.Alpha(), e.Beta, (TEpi)e.Op, operand, em, en, sum, at.Parts, head: i == 0)
                : MatMulKernels.GroupProductSum(h, at.Head, x[0].View, mm.Flag1, x[1].View, mm.Flag2, c.View, m, n, k, e.Alpha(), e.Beta, (TEpi)e.Op, operand, em, en, sum);
        }
    }
}
