// The loss curve as a PNG (ScottPlot), on a log scale since the seed's loss falls by ten decades.
namespace AutogradNet.Examples;

internal static class LossPlot
{
    public static void Save(string path, IReadOnlyList<(int Step, float Loss)> losses)
    {
        var plot = new ScottPlot.Plot();
        var points = losses.Where(p => p.Loss > 0 && float.IsFinite(p.Loss)).ToArray();
        var line = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => Math.Log10(p.Loss)).ToArray());
        line.MarkerSize = 0;
        plot.Title("Two-layer net: training loss");
        plot.XLabel("step");
        plot.YLabel("log10(loss)");
        plot.SavePng(path, 800, 500);
    }
}
