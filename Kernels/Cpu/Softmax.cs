// Softmax: y = exp(x - max) / sum(exp(x - max)) along each row; LogSoftmax: y = x - max - log(sum).
//
// Algorithm, per row of n values (rows split over WorkerPool when there are enough of them):
//   rows that fit in L2 (n <= 16K): pass 1 finds the max, pass 2 writes e = exp(x - max) and sums it,
//   pass 3 scales by 1/sum. One exp per element, and passes 2-3 re-read the row from L1/L2.
//   longer rows: the online softmax (Milakov and Gimelshein 2018): one pass keeps per-lane running max m
//   and sum s, rescaling s by exp(m_old - m_new) when the max grows; the lanes are then merged, and one
//   pass writes exp(x - M)/S. Two reads of the row from memory instead of three.
// Subtracting the max makes it numerically safe (TensorPrimitives.SoftMax does not: [1000, 1001] -> NaN).
// FLOPs: ~4 per element plus one exp. Bytes: 8 per element (read x, write y) plus re-reads from cache.
// Bound: exp throughput (VectorMath.Exp) for rows in cache. Softmax outputs too large to stay in the cache
// (StreamingStores.Pay) stage the exps in thread scratch and write y once, with streaming stores.
// Backward: softmax dx = y (dy - sum(dy y)); log-softmax dx = dy - exp(y) sum(dy).
// Reference: SoftmaxReference (float64; its log flag gives log-softmax), and an independent one in
// Tests/Kernels/RowKernelTests.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Row-wise softmax and log-softmax, forward and backward.</summary>
public static unsafe class Softmax
{
    private const int InCacheRow = 16 * 1024;
    private const int MinParallelElements = 32 * 1024;

    private struct Args
    {
        public float* X, Y, Dy; public double* Xd, Yd, Dyd;
        public int Rows, Cols, RowsPerChunk; public bool Log, Stream;
    }

    /// <summary>y = softmax(x) row by row; x is [rows, cols], y may alias x.</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, int rows, int cols) =>
        Run(x, y, rows, cols, log: false, StreamingStores.Pay((long)rows * cols));

    // streamOutput chooses the stores, so that tests run both kinds on any size.
    internal static void Forward(ReadOnlySpan<float> x, Span<float> y, int rows, int cols, bool streamOutput) => Run(x, y, rows, cols, log: false, streamOutput);

    /// <summary>y = log_softmax(x) row by row; y may alias x.</summary>
    public static void LogSoftmaxForward(ReadOnlySpan<float> x, Span<float> y, int rows, int cols) => Run(x, y, rows, cols, log: true, streamOutput: false);

    private static void Check(string op, int xLen, int yLen, int rows, int cols)
    {
        if (rows < 0 || cols < 0) throw new ArgumentException($"{op}: rows and cols must be non-negative, got {rows} x {cols}");
        long need = (long)rows * cols;
        if (xLen < need || yLen < need) throw new ArgumentException($"{op}: spans of {xLen} and {yLen} elements are shorter than {rows} x {cols}");
    }

    private static void Run(ReadOnlySpan<float> x, Span<float> y, int rows, int cols, bool log, bool streamOutput)
    {
        Check(log ? "Softmax.LogSoftmaxForward" : "Softmax.Forward", x.Length, y.Length, rows, cols);
        if (rows == 0 || cols == 0) return;
        fixed (float* px = x) fixed (float* py = y)
        {
            var a = new Args { X = px, Y = py, Rows = rows, Cols = cols, Log = log, Stream = streamOutput && StreamingStores.Supported };
            Parallel(ref a, &ForwardChunk);
        }
    }

    private static void Parallel(ref Args a, delegate*<int, nint, void> body)
    {
        long total = (long)a.Rows * a.Cols;
        int chunks = total < MinParallelElements ? 1 : Math.Min(a.Rows, WorkerPool.ChunkCount(total, MinParallelElements, 4));
        a.RowsPerChunk = (a.Rows + chunks - 1) / chunks;
        chunks = (a.Rows + a.RowsPerChunk - 1) / a.RowsPerChunk;
        fixed (Args* pa = &a) WorkerPool.For(chunks, body, (nint)pa);
    }

    private static void ForwardChunk(int chunk, nint state)
    {
        ref Args a = ref *(Args*)state;
        int r0 = chunk * a.RowsPerChunk, r1 = Math.Min(a.Rows, r0 + a.RowsPerChunk);
        for (int r = r0; r < r1; r++)
        {
            float* x = a.X + (long)r * a.Cols, y = a.Y + (long)r * a.Cols;
            if (a.Cols <= InCacheRow) RowThreePass(x, y, a.Cols, a.Log, a.Stream ? Attention.Scratch(a.Cols) : null);
            else RowOnline(x, y, a.Cols, a.Log);
        }
        if (a.Stream) StreamingStores.Fence();
    }

    // staging (a row of thread scratch, or null): the exps go there instead of into y, and y is written once, with
    // streaming stores, so none of its lines is read for ownership (StreamingStores).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowThreePass(float* x, float* y, int n, bool log, float* staging)
    {
        float max = Max(x, n);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max)) { FillRow(y, n, float.NaN); return; }
        if (log)
        {
            float lse = ExpShiftSum(x, null, n, max, storeExp: false);
            LogShift(x, y, n, max, MathF.Log(lse));
            return;
        }
        if (staging != null && !log)
        {
            float total = ExpShiftSum(x, staging, n, max, storeExp: true);
            StreamingStores.Scale(staging, y, n, 1f / total);
            return;
        }
        float sum = ExpShiftSum(x, y, n, max, storeExp: true);
        Scale(y, n, 1f / sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowOnline(float* x, float* y, int n, bool log)
    {
        // One pass: per-lane running max and rescaled sum.
        int i = 0;
        float max, sum;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var m = Vector512.Create(float.NegativeInfinity);
            var s = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(x + i);
                var mNew = Vector512.Max(m, v);
                // Lanes still at -inf would give exp(-inf - -inf) = NaN: their sum is 0 either way.
                var rescale = Vector512.ConditionalSelect(Vector512.Equals(mNew, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero, VectorMath.Exp(m - mNew));
                var e = Vector512.ConditionalSelect(Vector512.Equals(mNew, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero, VectorMath.Exp(v - mNew));
                s = Vector512.FusedMultiplyAdd(s, rescale, e);
                m = mNew;
            }
            max = Vector512.Max(m, Vector512.Create(float.NegativeInfinity)).ToScalar();
            for (int l = 1; l < 16; l++) max = Math.Max(max, m.GetElement(l));
            sum = 0;
            if (!float.IsNegativeInfinity(max))
                for (int l = 0; l < 16; l++) sum += s.GetElement(l) * VectorMath.Exp(m.GetElement(l) - max);
        }
        else if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            // The same per-lane running max and sum at the portable width (AVX2: 8 lanes, Arm64: 4).
            int w = Vector<float>.Count;
            var negInf = new Vector<float>(float.NegativeInfinity);
            var m = negInf;
            var s = Vector<float>.Zero;
            for (; i + w <= n; i += w)
            {
                var v = Vector.Load(x + i);
                var mNew = Vector.Max(m, v);
                var dead = Vector.Equals(mNew, negInf);
                var rescale = Vector.ConditionalSelect(dead, Vector<float>.Zero, VectorMath.Exp(m - mNew));
                var e = Vector.ConditionalSelect(dead, Vector<float>.Zero, VectorMath.Exp(v - mNew));
                s = Vector.MultiplyAddEstimate(s, rescale, e);
                m = mNew;
            }
            max = float.NegativeInfinity;
            for (int l = 0; l < w; l++) max = MathF.Max(max, m[l]);
            sum = 0;
            if (!float.IsNegativeInfinity(max))
                for (int l = 0; l < w; l++) sum += s[l] * VectorMath.Exp(m[l] - max);
        }
        else { max = float.NegativeInfinity; sum = 0; }
        // The rest (or, without vectors, the whole row) one value at a time, summed in double: a float sum over the
        // 16K or more values of such a row rounds by more than the float64 reference test allows.
        double total = sum;
        for (; i < n; i++)
        {
            float v = x[i];
            if (v > max) { total = float.IsNegativeInfinity(max) ? 0 : total * Math.Exp(max - v); max = v; }
            if (!float.IsNegativeInfinity(max)) total += Math.Exp(v - max);
        }
        sum = (float)total;
        if (float.IsNegativeInfinity(max) || float.IsNaN(max)) { FillRow(y, n, float.NaN); return; }
        if (log) LogShift(x, y, n, max, MathF.Log(sum));
        else { ExpShiftSum(x, y, n, max, storeExp: true); Scale(y, n, 1f / sum); }
    }

    private static void FillRow(float* y, int n, float v) => new Span<float>(y, n).Fill(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max(float* x, int n)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var m = Vector512.Load(x);
            for (i = 16; i + 16 <= n; i += 16) m = Vector512.MaxNative(m, Vector512.Load(x + i));   // one vmaxps (Max orders NaN and -0 with three ops); a NaN still reaches the row through its exp
            max = Vector512.Max(m, m).GetElement(0);
            for (int l = 1; l < 16; l++) max = MathF.Max(max, m.GetElement(l));
        }
        else if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            int w = Vector<float>.Count;
            var m = Vector.Load(x);
            for (i = w; i + w <= n; i += w) m = Vector.MaxNative(m, Vector.Load(x + i));
            for (int l = 0; l < w; l++) max = MathF.Max(max, m[l]);
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        return max;
    }

    // Sum of exp(x - shift); writes the exponentials to y when asked.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ExpShiftSum(float* x, float* y, int n, float shift, bool storeExp)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var nsl = Vector512.Create(-shift * 1.44269504088896341f);
            var s0 = Vector512<float>.Zero; var s1 = Vector512<float>.Zero;
            var s2 = Vector512<float>.Zero; var s3 = Vector512<float>.Zero;
            // Four independent exponentials per iteration keep the FMA pipes busy (each exp is a dependent chain).
            for (; i + 64 <= n; i += 64)
            {
                var e0 = VectorMath.ExpShifted(Vector512.Load(x + i), nsl);
                var e1 = VectorMath.ExpShifted(Vector512.Load(x + i + 16), nsl);
                var e2 = VectorMath.ExpShifted(Vector512.Load(x + i + 32), nsl);
                var e3 = VectorMath.ExpShifted(Vector512.Load(x + i + 48), nsl);
                if (storeExp) { e0.Store(y + i); e1.Store(y + i + 16); e2.Store(y + i + 32); e3.Store(y + i + 48); }
                s0 += e0; s1 += e1; s2 += e2; s3 += e3;
            }
            s0 += s2; s1 += s3;
            for (; i + 16 <= n; i += 16)
            {
                var e0 = VectorMath.ExpShifted(Vector512.Load(x + i), nsl);
                if (storeExp) e0.Store(y + i);
                s0 += e0;
            }
            sum = Vector512.Sum(s0 + s1);
        }
        else if (Vector.IsHardwareAccelerated)
        {
            // AVX2 (8 lanes) or Arm64 (4): two independent exponentials per iteration.
            int w = Vector<float>.Count;
            var sh = new Vector<float>(shift);
            var s0 = Vector<float>.Zero; var s1 = Vector<float>.Zero;
            for (; i + 2 * w <= n; i += 2 * w)
            {
                var e0 = VectorMath.ExpNonPositive(Vector.Load(x + i) - sh);
                var e1 = VectorMath.ExpNonPositive(Vector.Load(x + i + w) - sh);
                if (storeExp) { e0.Store(y + i); e1.Store(y + i + w); }
                s0 += e0; s1 += e1;
            }
            for (; i + w <= n; i += w)
            {
                var e0 = VectorMath.ExpNonPositive(Vector.Load(x + i) - sh);
                if (storeExp) e0.Store(y + i);
                s0 += e0;
            }
            sum = Vector.Sum(s0 + s1);
        }
        // The tail (or, without vectors, the whole row) summed in double, as RowOnline's: a float sum over a
        // thousand values one at a time rounds by more than the float64 reference test allows.
        double total = sum;
        for (; i < n; i++)
        {
            float e = VectorMath.Exp(x[i] - shift);
            if (storeExp) y[i] = e;
            total += e;
        }
        return (float)total;
    }

    /// <summary>Writes exp(x - shift) for the first n values of x into y and returns their sum (the vector exp, for tests).</summary>
    internal static float ExpShiftSum(ReadOnlySpan<float> x, Span<float> y, int n, float shift)
    {
        if (x.Length < n || y.Length < n) throw new ArgumentException("Softmax.ExpShiftSum: spans shorter than n");
        fixed (float* px = x) fixed (float* py = y) return ExpShiftSum(px, py, n, shift, storeExp: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* y, int n, float s) => System.Numerics.Tensors.TensorPrimitives.Multiply(new ReadOnlySpan<float>(y, n), s, new Span<float>(y, n));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    // y = (x - max) - logSum, in that order: x - (max + logSum) loses logSum when |max| is huge (1e30 gave 0, not -log n).
    private static void LogShift(float* x, float* y, int n, float max, float logSum)
    {
        var dst = new Span<float>(y, n);
        System.Numerics.Tensors.TensorPrimitives.Subtract(new ReadOnlySpan<float>(x, n), max, dst);
        System.Numerics.Tensors.TensorPrimitives.Subtract(dst, logSum, dst);
    }

    /// <summary>dx = y (dy - sum(dy y)) for softmax, or dx = dy - exp(y) sum(dy) when <paramref name="log"/>; y is the forward output.</summary>
    public static void Backward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int rows, int cols, bool log)
    {
        Check("Softmax.Backward", Math.Min(y.Length, dy.Length), dx.Length, rows, cols);
        if (rows == 0 || cols == 0) return;
        fixed (float* py = y) fixed (float* pdy = dy) fixed (float* pdx = dx)
        {
            var a = new Args { X = pdx, Y = py, Dy = pdy, Rows = rows, Cols = cols, Log = log };
            Parallel(ref a, &BackwardChunk);
        }
    }

    private static void BackwardChunk(int chunk, nint state)
    {
        ref Args a = ref *(Args*)state;
        int r0 = chunk * a.RowsPerChunk, r1 = Math.Min(a.Rows, r0 + a.RowsPerChunk);
        for (int r = r0; r < r1; r++)
        {
            var y = new ReadOnlySpan<float>(a.Y + (long)r * a.Cols, a.Cols);
            var dy = new ReadOnlySpan<float>(a.Dy + (long)r * a.Cols, a.Cols);
            var dx = new Span<float>(a.X + (long)r * a.Cols, a.Cols);
            if (!a.Log)
            {
                float dot = System.Numerics.Tensors.TensorPrimitives.Dot(dy, y);
                System.Numerics.Tensors.TensorPrimitives.Subtract(dy, dot, dx);
                System.Numerics.Tensors.TensorPrimitives.Multiply(dx, y, dx);
            }
            else
            {
                float s = System.Numerics.Tensors.TensorPrimitives.Sum(dy);
                System.Numerics.Tensors.TensorPrimitives.Exp(y, dx);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(dx, -s, dy, dx);
            }
        }
    }

    /// <summary>float64 softmax or log-softmax (simple scalar code: references and gradient checks).</summary>
    public static void Forward(ReadOnlySpan<double> x, Span<double> y, int rows, int cols, bool log = false)
    {
        Check("Softmax.Forward", x.Length, y.Length, rows, cols);
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols); var yr = y.Slice(r * cols, cols);
            double max = double.NegativeInfinity;
            foreach (var v in xr) max = Math.Max(max, v);
            if (double.IsNegativeInfinity(max)) { yr.Fill(double.NaN); continue; }
            double sum = 0;
            for (int j = 0; j < cols; j++) sum += Math.Exp(xr[j] - max);
            // Shift by max, never by max + log(sum): for |max| ~ 1e30 the log(sum) is absorbed and every y came out 1.
            double logSum = Math.Log(sum);
            for (int j = 0; j < cols; j++) yr[j] = log ? (xr[j] - max) - logSum : Math.Exp(xr[j] - max) / sum;
        }
    }

    /// <summary>float64 log-softmax.</summary>
    public static void LogSoftmaxForward(ReadOnlySpan<double> x, Span<double> y, int rows, int cols) => Forward(x, y, rows, cols, log: true);

    /// <summary>float64 backward (see the float32 overload).</summary>
    public static void Backward(ReadOnlySpan<double> y, ReadOnlySpan<double> dy, Span<double> dx, int rows, int cols, bool log)
    {
        Check("Softmax.Backward", Math.Min(y.Length, dy.Length), dx.Length, rows, cols);
        for (int r = 0; r < rows; r++)
        {
            var yr = y.Slice(r * cols, cols); var g = dy.Slice(r * cols, cols); var d = dx.Slice(r * cols, cols);
            double s = 0;
            for (int j = 0; j < cols; j++) s += log ? g[j] : g[j] * yr[j];
            for (int j = 0; j < cols; j++) d[j] = log ? g[j] - Math.Exp(yr[j]) * s : yr[j] * (g[j] - s);
        }
    }

    /// <summary>The float64 reference: softmax (or log-softmax) of each row, computed the obvious way.</summary>
    public static double[] SoftmaxReference(ReadOnlySpan<float> x, int rows, int cols, bool log = false)
    {
        var xd = new double[rows * cols];
        for (int i = 0; i < xd.Length; i++) xd[i] = x[i];
        var yd = new double[rows * cols];
        Forward(xd, yd, rows, cols, log);
        return yd;
    }
}
