// The split-K sweep: one seed-sized product on every tiled group shape and K split, with the slices
// summed in the same launch (1L) and in a second kernel (2L), beside Small and the warp-split kernel
// (its team of warps per block chosen by shape, and each team forced). Which is fastest depends on latencies
// no CPU can predict (an L2 round trip per slice summed, a barrier per 16-deep slice, launch gaps),
// so MatMulKernels.Choose and SplitK are to be set from this table.
//
// On CUDA each cell is 50 launches captured in one CUDA graph and replayed: the cost of the product
// inside a compiled step, not the driver's launch rate. Elsewhere the launches are direct.
using System.Diagnostics;
using System.Text;
using AutogradNet.Kernels;
using ILGPU.Runtime.Cuda;

namespace AutogradNet.Bench;

public static partial class Workloads
{
    /// <summary>
    /// Times C = op(A) op(B) on each tiled group and K split (one and two launches), on Small and on Warp;
    /// returns every cell as a result and the table as text (rows: splits; columns: group and form).
    /// </summary>
    public static (List<Result> Cells, string Table) SplitSweep(Device d, int m, int n, int k, bool ta, bool tb, string name)
    {
        Tensor.ManualSeed(1);
        using var a = Tensor.Randn(ta ? [k, m] : [m, k], d);
        using var b = Tensor.Randn(tb ? [n, k] : [k, n], d);
        using var c = Tensor.Zeros([m, n], d);
        float[] ha = a.ToArray(), hb = b.ToArray();
        var h = d.Kernels;
        var saved = h.MatMulSettings;
        var cells = new List<Result>();
        var table = new Dictionary<(int Split, string Column), double>();
        var splits = new SortedSet<int>();
        try
        {
            double Time(string label)
            {
                long need = MatMulKernels.SplitKScratch(h, m, n, k);
                using var scratch = Tensor.Zeros([(int)Math.Max(1, need)], d);
                void Launch(KernelHost on) => MatMulKernels.MatMul(on, View(a), ta, View(b), tb, View(c), m, n, k, scratch: View(scratch));
                Launch(h);
                string check = CheckSamples(ha, hb, c.ToArray(), m, n, k, ta, tb);
                double us = GraphedMicroseconds(d, Launch, 50);
                cells.Add(new Result($"{name} sweep {label}", us, 2.0 * m * n * k / us / 1e6, null, check));
                return us;
            }

            h.MatMulSplitK = null;
            var others = new Dictionary<string, double>();
            h.MatMulPath = MatMulPath.Small;
            others["Small"] = Time("Small");
            // The warp-split kernel with its team chosen by shape, then with each team the group allows.
            h.MatMulPath = MatMulPath.Warp;
            others[$"Warp (team {MatMulKernels.WarpTeam(h, m, n, k)})"] = Time("Warp");
            for (int team = 1; team <= h.GroupSize / h.Accelerator.WarpSize && team <= MatMulKernels.MaxTeamWarps; team *= 2)
            {
                h.WarpTeam = team;
                others[$"Warp team {team}"] = Time($"Warp team {team}");
            }
            h.WarpTeam = null;
            h.MatMulPath = MatMulPath.Tiled;
            // The three largest groups the accelerator allows (16x16, 8x8, 4x4 on a GPU).
            var groups = MatMulKernels.TiledGroups.SkipWhile(g => g != saved.TiledGroup).Take(3);
            foreach (var group in groups)
            {
                h.TiledGroup = group;
                var seen = new HashSet<int>();
                // Slices are at least 16 deep, so large requests all come out as the deepest split K allows.
                foreach (int forced in new[] { 1, 2, 4, 8, 16, 32, 64, 128 })
                {
                    h.MatMulSplitK = forced;
                    int split = MatMulKernels.SplitK(h, m, n, k);
                    if (!seen.Add(split)) continue;
                    splits.Add(split);
                    foreach (bool one in split == 1 ? new[] { true } : new[] { true, false })
                    {
                        h.SplitKInOneLaunch = one;
                        string form = split == 1 ? "" : one ? " 1L" : " 2L";
                        table[(split, $"{group.X}x{group.Y}{form}")] = Time($"{group.X}x{group.Y} split {split}{form}");
                    }
                }
            }
            return (cells, Format(name, others, splits, table));
        }
        finally
        {
            h.MatMulSettings = saved;
        }
    }

    // Microseconds per launch of `launch`, run `count` times inside one CUDA graph on CUDA (replayed,
    // median of batches); direct launches elsewhere.
    private static double GraphedMicroseconds(Device d, Action<KernelHost> launch, int count)
    {
        if (d.Accelerator is not CudaAccelerator acc)
            return Median(d, () => launch(d.Kernels), count);
        d.Synchronize();
        using var graph = CudaGraph.Capture(acc, stream =>
        {
            var captured = d.Kernels.WithStream(stream);
            for (int i = 0; i < count; i++) launch(captured);
        });
        return Median(d, () => graph.Launch(acc), 10) / count;
    }

    private static string Format(string name, Dictionary<string, double> others, SortedSet<int> splits,
        Dictionary<(int Split, string Column), double> table)
    {
        var columns = table.Keys.Select(key => key.Column).Distinct().ToList();
        double best = Math.Min(others.Values.Min(), table.Values.Min());
        string Mark(double us) => us == best ? "*" : " ";
        var sb = new StringBuilder();
        sb.AppendLine($"split-K sweep: {name}, us per launch, * the fastest; "
            + string.Join("; ", others.Select(o => $"{o.Key} {o.Value:F1}{Mark(o.Value)}")));
        sb.Append("  split ");
        foreach (var col in columns) sb.Append($"{col,10}");
        sb.AppendLine();
        foreach (int s in splits)
        {
            sb.Append($"  {s,5} ");
            foreach (var col in columns)
                sb.Append(table.TryGetValue((s, col), out var us) ? $"{us,9:F1}{Mark(us)}" : $"{"-",10}");
            sb.AppendLine();
        }
        return sb.ToString().TrimEnd();
    }
}
