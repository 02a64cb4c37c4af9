using AttnCore.Models.Reinforcement;
using AttnCore.Models.Training;
using ScottPlot;
using Spectre.Console;

namespace AttnCore.Presentation;

/// <summary>One curve of a learning-curve chart: a label and the episodes of one or more runs (seeds).</summary>
/// <param name="Label">Legend text.</param>
/// <param name="Runs">The finished episodes of each run.</param>
public sealed record LearningCurveSeries(string Label, IReadOnlyList<IReadOnlyList<EpisodeRecord>> Runs);

/// <summary>Charts of reinforcement-learning runs (ScottPlot, headless, written atomically).</summary>
public static class RlPlots
{
    /// <summary>
    /// Mean return of the last 100 episodes against environment steps, one line per series (the mean over its runs)
    /// with the band between its worst and best run shaded when it has several; an optional dashed line marks the
    /// solved threshold.
    /// </summary>
    public static void LearningCurve(IReadOnlyList<LearningCurveSeries> series, string path, string title, double? threshold = null, int points = 200)
    {
        var plot = new Plot();
        long maxStep = series.SelectMany(s => s.Runs).SelectMany(r => r).Select(e => e.EndStep).DefaultIfEmpty(0).Max();
        if (maxStep == 0) return;
        var xs = Enumerable.Range(1, points).Select(i => (double)maxStep * i / points).ToArray();
        for (int si = 0; si < series.Count; si++)
        {
            var s = series[si];
            var color = plot.Add.Palette.GetColor(si);
            var curves = s.Runs.Where(r => r.Count > 0).Select(r => RollingMean(r, xs)).ToArray();
            if (curves.Length == 0) continue;
            var mean = new double[xs.Length]; var lo = new double[xs.Length]; var hi = new double[xs.Length];
            var valid = new List<int>();
            for (int i = 0; i < xs.Length; i++)
            {
                var at = curves.Select(c => c[i]).Where(double.IsFinite).ToArray();
                if (at.Length == 0) continue;
                (mean[i], lo[i], hi[i]) = (at.Average(), at.Min(), at.Max());
                valid.Add(i);
            }
            double[] Pick(double[] a) => valid.Select(i => a[i]).ToArray();
            if (curves.Length > 1)
            {
                var band = plot.Add.FillY(Pick(xs), Pick(lo), Pick(hi));
                band.FillStyle.Color = color.WithAlpha(0.25);
                band.LineStyle.Width = 0;
            }
            var line = plot.Add.Scatter(Pick(xs), Pick(mean));
            line.MarkerSize = 0;
            line.LineWidth = 2;
            line.Color = color;
            line.LegendText = curves.Length > 1 ? $"{s.Label} (mean of {curves.Length} seeds, min-max shaded)" : s.Label;
        }
        if (threshold is double t)
        {
            var h = plot.Add.HorizontalLine(t);
            h.LinePattern = LinePattern.Dashed;
            h.LegendText = $"solved ({t})";
        }
        plot.XLabel("environment steps"); plot.YLabel("mean return of the last 100 episodes"); plot.Title(title);
        plot.ShowLegend(Alignment.UpperLeft);   // the curves end at the right, where they matter most
        AtomicFile.Write(path, tmp => plot.SavePng(tmp, 900, 500));
    }

    // The mean return of the (up to) 100 episodes that ended last at or before each x; NaN before the first.
    private static double[] RollingMean(IReadOnlyList<EpisodeRecord> episodes, double[] xs)
    {
        var result = new double[xs.Length];
        int next = 0;
        var window = new Queue<double>();
        double sum = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            while (next < episodes.Count && episodes[next].EndStep <= xs[i])
            {
                window.Enqueue(episodes[next].Return); sum += episodes[next].Return; next++;
                if (window.Count > 100) sum -= window.Dequeue();
            }
            result[i] = window.Count > 0 ? sum / window.Count : double.NaN;
        }
        return result;
    }
}

/// <summary>
/// Progress of a PPO run on the console: on an interactive terminal a Spectre.Console bar (iteration, steps, mean
/// return of the last 100 episodes, steps/s); otherwise one line every <c>every</c> iterations and at the end.
/// </summary>
public static class RlProgress
{
    /// <summary>Runs <paramref name="body"/>, handing it the callback that reports each iteration.</summary>
    public static T Run<T>(TextWriter lines, bool show, string label, int iterations, Func<Action<PpoIterationReport>, T> body, int every = 25, bool? interactive = null)
    {
        if (!show) return body(_ => { });
        if (!(interactive ?? AnsiConsole.Profile.Capabilities.Interactive))
            return body(r => { if (r.Iteration % every == 0 || r.Iteration == r.Iterations) lines.WriteLine(Line(label, r)); });
        T result = default!;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(label, maxValue: iterations);
                result = body(r => { task.Value = r.Iteration; task.Description = Line(label, r); });
            });
        return result;
    }

    /// <summary>The line for one report.</summary>
    public static string Line(string label, PpoIterationReport r) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{label} iteration {r.Iteration}/{r.Iterations}  steps {r.Steps}  mean return {r.MeanReturn100:F1}  {r.StepsPerSecond:F0} steps/s");
}
