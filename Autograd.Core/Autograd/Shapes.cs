// Shape rules of the primitives: the output shape from the inputs' shapes, or a
// ShapeMismatchException naming the op, both shapes and the fix.
namespace AutogradNet;

internal static class Shapes
{
    public static int[] Infer(OpSpec op, Tensor[] x)
    {
        switch (op.Kind)
        {
            case Prim.Add:
            case Prim.Mul:
            case Prim.Div:
            case Prim.ClampGrad:
            case Prim.TanhGrad:
            case Prim.SigmoidGrad:
            case Prim.PowGrad:
                return Broadcast(op.Kind.ToString(), x[0].ShapeArray, x[1].ShapeArray);
            case Prim.MatMul:
                return MatMul(x[0].ShapeArray, x[1].ShapeArray, op.Flag1, op.Flag2);
            case Prim.Sum:
                return Sum(x[0].ShapeArray, op.Ints!, op.Flag1);
            case Prim.Expand:
                Broadcast("Expand", x[0].ShapeArray, op.Ints!, target: true);
                return (int[])op.Ints!.Clone();
            case Prim.Reshape:
                if (Tensor.Elements(op.Ints!) != x[0].NumElements)
                    throw new ShapeMismatchException(
                        $"Reshape: cannot view shape {Tensor.ShapeText(x[0].ShapeArray)} ({x[0].NumElements} elements) as {Tensor.ShapeText(op.Ints!)} ({Tensor.Elements(op.Ints!)} elements). The element counts must match.");
                return (int[])op.Ints!.Clone();
            case Prim.Transpose:
                if (x[0].Rank != 2)
                    throw new ShapeMismatchException(
                        $"Transpose: needs a 2-D tensor, got shape {Tensor.ShapeText(x[0].ShapeArray)}. Reshape it to 2-D first.");
                return [x[0].ShapeArray[1], x[0].ShapeArray[0]];
            default:
                return (int[])x[0].ShapeArray.Clone();
        }
    }

    /// <summary>PyTorch broadcasting: right-aligned, extents equal or 1.</summary>
    public static int[] Broadcast(string op, int[] a, int[] b, bool target = false)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            bool ok = target ? (da == db || da == 1) && a.Length <= b.Length : da == db || da == 1 || db == 1;
            if (!ok)
                throw new ShapeMismatchException(target
                    ? $"{op}: shape {Tensor.ShapeText(a)} cannot be broadcast to {Tensor.ShapeText(b)} (dimension {i}: {da} vs {db}). Only extents of 1 can be expanded."
                    : $"{op}: shapes {Tensor.ShapeText(a)} and {Tensor.ShapeText(b)} are not broadcastable (dimension {i}: {da} vs {db}). Extents must match or be 1, aligned from the right; reshape one operand.");
            o[i] = da == 1 ? db : da;
        }
        return o;
    }

    private static int[] MatMul(int[] a, int[] b, bool ta, bool tb)
    {
        if (a.Length != 2 || b.Length != 2)
            throw new ShapeMismatchException(
                $"MatMul: needs two 2-D tensors, got shapes {Tensor.ShapeText(a)} and {Tensor.ShapeText(b)}. Reshape the operands to (M, K) and (K, N).");
        int m = ta ? a[1] : a[0], ka = ta ? a[0] : a[1];
        int kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
        if (ka != kb)
            throw new ShapeMismatchException(
                $"MatMul: shapes {Tensor.ShapeText(a)} and {Tensor.ShapeText(b)} cannot be multiplied: the first's columns ({ka}) must equal the second's rows ({kb}). Transpose or reshape an operand.");
        return [m, n];
    }

    public static int[] Sum(int[] shape, int[] axes, bool keepDim)
    {
        var red = new bool[shape.Length];
        foreach (var ax in axes) red[ax] = true;
        var o = new List<int>();
        for (int i = 0; i < shape.Length; i++)
        {
            if (!red[i]) o.Add(shape[i]);
            else if (keepDim) o.Add(1);
        }
        return o.ToArray();
    }
}
