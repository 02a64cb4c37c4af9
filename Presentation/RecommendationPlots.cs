using AttnCore.Models.Recommendation;
using AttnCore.Models.Training;
using ScottPlot;

namespace AttnCore.Presentation;

/// <summary>PNG charts of a recommender run (ScottPlot, headless, written atomically).</summary>
public static class RecommendationPlots
{
    /// <summary>Validation NDCG@10 and HR@10 against the epoch, for the epochs that were evaluated.</summary>
    public static void ValidationCurve(IReadOnlyList<RecommenderEpoch> history, string model, string path)
    {
        var evaluated = history.Where(e => e.Validation is not null).ToArray();
        var plot = new Plot();
        double[] epochs = evaluated.Select(e => (double)e.Epoch).ToArray();
        var ndcg = plot.Add.Scatter(epochs, evaluated.Select(e => e.Validation!.Ndcg).ToArray());
        ndcg.LegendText = "NDCG@10";
        var hr = plot.Add.Scatter(epochs, evaluated.Select(e => e.Validation!.HitRate).ToArray());
        hr.LegendText = "HR@10";
        plot.XLabel("epoch"); plot.YLabel("validation (100 sampled negatives)"); plot.Title($"{model}: validation ranking");
        plot.ShowLegend(Alignment.LowerRight);
        AtomicFile.Write(path, tmp => plot.SavePng(tmp, 800, 450));
    }

    /// <summary>
    /// One user's self-attention weights [T, T] (the model's last block) over the items of their history, padding cut:
    /// row i is where the state after the i-th item looked.
    /// </summary>
    public static void HistoryAttention(float[,] weights, IReadOnlyList<long> history, string title, string path)
    {
        int t = history.Count;
        if (weights.GetLength(0) != t || weights.GetLength(1) != t)
            throw new ArgumentException($"HistoryAttention: weights {weights.GetLength(0)}x{weights.GetLength(1)} for a history of {t} positions");
        int first = 0;
        while (first < t && history[first] == 0) first++;
        int n = t - first;
        if (n == 0) throw new ArgumentException("HistoryAttention: the history is all padding");
        var cut = new float[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) cut[i, j] = weights[first + i, first + j];
        var labels = history.Skip(first).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Plots.AttentionMap(cut, labels, labels, title, path);
    }
}
