using AttnCore.Models.Training;
using ScottPlot;

namespace AttnCore.Presentation;

/// <summary>PNG charts (ScottPlot, headless): a run's loss curve, attention heatmaps, benchmark speedups.</summary>
public static class Plots
{
    /// <summary>Training and validation loss against the step, written atomically to <paramref name="path"/>.</summary>
    public static void LossCurve(IReadOnlyList<TrainerMetric> history, string path)
    {
        // A diverged step has no loss to draw (NaN or infinite): the curve shows the finite steps around it.
        var finite = history.Where(h => double.IsFinite(h.TrainLoss)).ToArray();
        if (finite.Length == 0) return;
        var plot = new Plot();
        var train = plot.Add.Scatter(finite.Select(h => (double)h.Step).ToArray(), finite.Select(h => h.TrainLoss).ToArray());
        train.LegendText = "train";
        train.MarkerSize = 0;
        var evals = history.Where(h => h.ValLoss is double v && double.IsFinite(v)).ToArray();
        if (evals.Length > 0)
        {
            var val = plot.Add.Scatter(evals.Select(h => (double)h.Step).ToArray(), evals.Select(h => h.ValLoss!.Value).ToArray());
            val.LegendText = "validation";
        }
        plot.XLabel("step"); plot.YLabel("loss"); plot.Title("Loss");
        plot.ShowLegend(Alignment.UpperRight);   // a falling loss leaves the upper right empty; the default corner hid the curves' ends
        Save(plot, path, 800, 450);
    }

    /// <summary>
    /// A heatmap of attention weights [Tq, Tk] with the query tokens down the side and the key tokens along the top.
    /// </summary>
    public static void AttentionMap(float[,] weights, IReadOnlyList<string> queryTokens, IReadOnlyList<string> keyTokens, string title, string path)
    {
        int rows = weights.GetLength(0), cols = weights.GetLength(1);
        if (queryTokens.Count != rows || keyTokens.Count != cols)
            throw new ArgumentException($"AttentionMap: {rows}x{cols} weights but {queryTokens.Count} query and {keyTokens.Count} key labels");
        var data = new double[rows, cols];
        for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) data[i, j] = weights[i, j];
        var plot = new Plot();
        var hm = plot.Add.Heatmap(data);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(hm);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, cols).Select(i => (double)i).ToArray(), keyTokens.ToArray());
        plot.Axes.Left.SetTicks(Enumerable.Range(0, rows).Select(i => (double)(rows - 1 - i)).ToArray(), queryTokens.ToArray());
        plot.XLabel("key (source)"); plot.YLabel("query (output)"); plot.Title(title);
        Save(plot, path, 120 + 36 * cols, 100 + 36 * rows);
    }

    /// <summary>
    /// Speed relative to a reference, one pair of bars per case: <paramref name="ours"/> at the case's speedup next to
    /// <paramref name="reference"/> at 1 (the chart of docs/benchmarks.png), written atomically to <paramref name="path"/>.
    /// </summary>
    public static void SpeedupBars(IReadOnlyList<(string Label, double Speedup)> cases, string ours, string reference, string title, string path)
    {
        var plot = new Plot();
        var oursBars = new List<Bar>();
        var referenceBars = new List<Bar>();
        for (int i = 0; i < cases.Count; i++)
        {
            oursBars.Add(new Bar { Position = i * 3, Value = cases[i].Speedup, FillColor = Colors.SteelBlue });
            referenceBars.Add(new Bar { Position = i * 3 + 1, Value = 1.0, FillColor = Colors.Orange });
        }
        plot.Add.Bars(oursBars).LegendText = ours;
        plot.Add.Bars(referenceBars).LegendText = $"{reference} (= 1)";
        plot.Axes.Bottom.SetTicks(cases.Select((_, i) => i * 3 + 0.5).ToArray(), cases.Select(c => c.Label.Replace(" ", "\n", StringComparison.Ordinal)).ToArray());
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Margins(bottom: 0);
        plot.YLabel($"speed relative to {reference} (higher is better)");
        plot.Title(title);
        plot.ShowLegend(Alignment.UpperRight);
        AtomicFile.Write(path, tmp => plot.SavePng(tmp, 1200, 520));
    }

    private static void Save(Plot plot, string path, int width, int height) =>
        AtomicFile.Write(path, tmp => plot.SavePng(tmp, Math.Max(width, 560), Math.Max(height, 360)));
}
