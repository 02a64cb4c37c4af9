namespace AttnCore.Models.Data.Vision;

/// <summary>
/// Counts of (true class, predicted class) pairs: row = the true class, column = the prediction, so the diagonal
/// holds the correct answers and row r sums to the number of images of class r.
/// </summary>
public sealed class ConfusionMatrix
{
    /// <summary>An empty matrix over <paramref name="classes"/> classes.</summary>
    public ConfusionMatrix(int classes)
    {
        if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, "ConfusionMatrix: needs at least one class");
        Counts = new long[classes, classes];
    }

    /// <summary>Counts[true, predicted].</summary>
    public long[,] Counts { get; }
    /// <summary>Number of classes.</summary>
    public int Classes => Counts.GetLength(0);
    /// <summary>Pairs counted.</summary>
    public long Total { get; private set; }

    /// <summary>Counts one batch of true labels against predictions.</summary>
    public void Add(ReadOnlySpan<long> truth, ReadOnlySpan<long> predicted)
    {
        if (truth.Length != predicted.Length)
            throw new ArgumentException($"ConfusionMatrix.Add: {truth.Length} labels but {predicted.Length} predictions");
        for (int i = 0; i < truth.Length; i++)
        {
            if ((ulong)truth[i] >= (ulong)Classes || (ulong)predicted[i] >= (ulong)Classes)
                throw new ArgumentOutOfRangeException(nameof(truth), $"ConfusionMatrix.Add: pair {i} is (true {truth[i]}, predicted {predicted[i]}), outside the {Classes} classes");
            Counts[truth[i], predicted[i]]++;
        }
        Total += truth.Length;
    }

    /// <summary>The fraction of pairs on the diagonal (NaN when nothing was counted).</summary>
    public double Accuracy
    {
        get
        {
            long right = 0;
            for (int c = 0; c < Classes; c++) right += Counts[c, c];
            return Total == 0 ? double.NaN : (double)right / Total;
        }
    }

    /// <summary>Recall of each class: the diagonal over the row sum (NaN for a class with no images).</summary>
    public double[] PerClassAccuracy()
    {
        var result = new double[Classes];
        for (int r = 0; r < Classes; r++)
        {
            long row = 0;
            for (int c = 0; c < Classes; c++) row += Counts[r, c];
            result[r] = row == 0 ? double.NaN : (double)Counts[r, r] / row;
        }
        return result;
    }
}
