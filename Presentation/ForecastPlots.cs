using AttnCore.Models.Training;
using ScottPlot;

namespace AttnCore.Presentation;

/// <summary>One panel of a forecast chart: a channel's history, its forecast and, for test windows, the truth.</summary>
/// <param name="Title">Panel title (window and channel).</param>
/// <param name="History">The look-back values, drawn at x = -L .. -1.</param>
/// <param name="Prediction">The forecast, drawn at x = 0 .. H-1.</param>
/// <param name="Truth">The true values over the horizon, or null for a forecast of the future.</param>
public sealed record ForecastPanel(string Title, double[] History, double[] Prediction, double[]? Truth);

/// <summary>PNG charts of forecasts (ScottPlot, headless), written atomically.</summary>
public static class ForecastPlots
{
    /// <summary>The panels in a grid of <paramref name="columns"/> columns, one PNG.</summary>
    public static void Panels(IReadOnlyList<ForecastPanel> panels, int columns, string title, string path)
    {
        if (panels.Count == 0) throw new ArgumentException("ForecastPlots.Panels: no panels to draw");
        if (columns <= 0) throw new ArgumentOutOfRangeException(nameof(columns), columns, "ForecastPlots.Panels: columns must be positive");
        int rows = (panels.Count + columns - 1) / columns;
        var multiplot = new Multiplot();
        multiplot.AddPlots(panels.Count);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(rows, columns);
        for (int i = 0; i < panels.Count; i++)
        {
            var p = panels[i];
            var plot = multiplot.GetPlot(i);
            int l = p.History.Length, h = p.Prediction.Length;
            var history = plot.Add.Scatter(Enumerable.Range(-l, l).Select(t => (double)t).ToArray(), p.History);
            history.LegendText = "history"; history.MarkerSize = 0; history.Color = Colors.Gray;
            var steps = Enumerable.Range(0, h).Select(t => (double)t).ToArray();
            if (p.Truth is not null)
            {
                var truth = plot.Add.Scatter(steps, p.Truth);
                truth.LegendText = "truth"; truth.MarkerSize = 0; truth.Color = Colors.Black;
            }
            var prediction = plot.Add.Scatter(steps, p.Prediction);
            prediction.LegendText = "forecast"; prediction.MarkerSize = 0; prediction.Color = Colors.OrangeRed;
            plot.Title(i == 0 ? $"{title}\n{p.Title}" : p.Title);
            plot.XLabel("step (0 = first forecast)");
            if (i == 0) plot.ShowLegend(Alignment.UpperLeft);
        }
        AtomicFile.Write(path, tmp => multiplot.SavePng(tmp, 520 * columns, 320 * rows));
    }

    /// <summary>
    /// Attention weights between patches [N, N] (query patch down the side, key patch along the top), as
    /// <see cref="Plots.AttentionMap"/> with the patches numbered.
    /// </summary>
    public static void PatchAttention(float[,] weights, string title, string path)
    {
        var labels = Enumerable.Range(0, weights.GetLength(0)).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var keys = Enumerable.Range(0, weights.GetLength(1)).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Plots.AttentionMap(weights, labels, keys, title, path);
    }
}
