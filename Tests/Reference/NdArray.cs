namespace AttnCore.Tests.Reference;

/// <summary>
/// The float64 reference: a plain row-major n-d array with the textbook definition of every op,
/// written for obviousness, not speed. Engine results are compared against it.
/// </summary>
public sealed class NdArray
{
    public int[] Shape { get; }
    public double[] Data { get; }

    public NdArray(int[] shape, double[] data)
    {
        if (Numel(shape) != data.Length) throw new ArgumentException("NdArray: data does not fill shape");
        Shape = shape; Data = data;
    }

    public static NdArray From(Tensor t) => new(t.Shape, t.ToArray<double>());
    public static long Numel(int[] shape) { long n = 1; foreach (var d in shape) n *= d; return n; }
    public int Rank => Shape.Length;

    public static int[] StridesOf(int[] shape)
    {
        var s = new int[shape.Length]; int acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    /// <summary>Multi-index of flat position p in shape.</summary>
    public static int[] Unravel(long p, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { if (shape[i] == 0) return idx; idx[i] = (int)(p % shape[i]); p /= shape[i]; }
        return idx;
    }

    public double At(int[] idx) { long p = 0; var s = StridesOf(Shape); for (int i = 0; i < idx.Length; i++) p += (long)idx[i] * s[i]; return Data[p]; }

    /// <summary>Value at an index of a broadcast result shape (NumPy rules, right-aligned).</summary>
    public double AtBroadcast(int[] outIdx)
    {
        var idx = new int[Rank];
        int pad = outIdx.Length - Rank;
        for (int i = 0; i < Rank; i++) idx[i] = Shape[i] == 1 ? 0 : outIdx[i + pad];
        return At(idx);
    }

    public static int[] BroadcastShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1, db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            o[i] = da == 1 ? db : da;
        }
        return o;
    }

    public NdArray Map(Func<double, double> f) => new(Shape, Data.Select(f).ToArray());

    public static NdArray Zip(NdArray a, NdArray b, Func<double, double, double> f)
    {
        var shape = BroadcastShape(a.Shape, b.Shape);
        var data = new double[Numel(shape)];
        for (long p = 0; p < data.Length; p++) { var idx = Unravel(p, shape); data[p] = f(a.AtBroadcast(idx), b.AtBroadcast(idx)); }
        return new NdArray(shape, data);
    }

    public NdArray Permute(int[] perm)
    {
        var shape = perm.Select(p => Shape[p]).ToArray();
        var data = new double[Data.Length];
        for (long p = 0; p < data.Length; p++)
        {
            var o = Unravel(p, shape);
            var src = new int[Rank];
            for (int i = 0; i < Rank; i++) src[perm[i]] = o[i];
            data[p] = At(src);
        }
        return new NdArray(shape, data);
    }

    /// <summary>Reduces the given axes with f over the list of values.</summary>
    public NdArray Reduce(int[] axes, bool keepDim, Func<List<double>, double> f)
    {
        var red = new bool[Rank];
        foreach (var a in axes) red[a < 0 ? a + Rank : a] = true;
        if (axes.Length == 0) Array.Fill(red, true);
        var keptShape = Enumerable.Range(0, Rank).Where(i => !red[i]).Select(i => Shape[i]).ToArray();
        var groups = new List<double>[Numel(keptShape)];
        for (int g = 0; g < groups.Length; g++) groups[g] = [];
        var keptStrides = StridesOf(keptShape);
        for (long p = 0; p < Data.Length; p++)
        {
            var idx = Unravel(p, Shape);
            long g = 0; int k = 0;
            for (int i = 0; i < Rank; i++) if (!red[i]) g += (long)idx[i] * keptStrides[k++];
            groups[g].Add(Data[p]);
        }
        var outShape = keepDim ? Enumerable.Range(0, Rank).Select(i => red[i] ? 1 : Shape[i]).ToArray() : keptShape;
        return new NdArray(outShape, groups.Select(f).ToArray());
    }

    public static NdArray MatMul(NdArray a, NdArray b)
    {
        // Batched with broadcasting over leading dims; both at least 2-d here.
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        var batch = BroadcastShape(a.Shape[..^2], b.Shape[..^2]);
        var shape = batch.Concat(new[] { m, n }).ToArray();
        var data = new double[Numel(shape)];
        for (long p = 0; p < data.Length; p++)
        {
            var idx = Unravel(p, shape);
            double s = 0;
            for (int q = 0; q < k; q++)
            {
                var ia = idx[..^2].Concat(new[] { idx[^2], q }).ToArray();
                var ib = idx[..^2].Concat(new[] { q, idx[^1] }).ToArray();
                s += a.AtBroadcast(ia) * b.AtBroadcast(ib);
            }
            data[p] = s;
        }
        return new NdArray(shape, data);
    }

    /// <summary>Applies f to every row along the last axis.</summary>
    public NdArray Rows(Func<double[], double[]> f)
    {
        int cols = Shape.Length == 0 ? 1 : Shape[^1];
        var data = new double[Data.Length];
        for (int r = 0; cols > 0 && r < Data.Length / cols; r++)
            f(Data.AsSpan(r * cols, cols).ToArray()).CopyTo(data, r * cols);
        return new NdArray(Shape, data);
    }

    public static double[] Softmax(double[] row)
    {
        double m = row.Max();
        var e = row.Select(v => Math.Exp(v - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    public static double[] LogSoftmax(double[] row)
    {
        double m = row.Max();
        double logSum = Math.Log(row.Sum(v => Math.Exp(v - m)));
        return row.Select(v => (v - m) - logSum).ToArray();   // not v - (m + logSum): for |m| ~ 1e30 that loses logSum
    }

    /// <summary>
    /// erf to ~1e-15: the Maclaurin series below |x| = 2 (its alternating terms stay under e^4, so cancellation
    /// costs at most ~50 ulps), 1 - erfc by Laplace's continued fraction beyond (the series lost 8 digits at |x| = 4).
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        if (Math.Abs(x) >= 2)
        {
            double y = Math.Abs(x), f = y;
            for (int n = 200; n >= 1; n--) f = y + n / 2.0 / f;   // erfc(y) = e^(-y^2) / (sqrt(pi) (y + (1/2)/(y + 1/(y + (3/2)/(y + ...)))))
            return Math.Sign(x) * (1 - Math.Exp(-y * y) / Math.Sqrt(Math.PI) / f);
        }
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
            if (Math.Abs(term) < 1e-17) break;
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }
}
