// LayerNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta over each row of n values.
//
// Forward, per row: one pass accumulates sum and sum of squares of (x - K), K = the row's first value
// (the shifted-data algorithm: var = (S2 - S1^2/n)/n stays accurate when |mean| >> std, unlike the naive
// sum-of-squares), in 4 vector accumulators; a second pass writes y. mean and rstd = 1/sqrt(var + eps)
// are saved per row for the backward pass.
// Backward, per row, with xhat = (x - mean)·rstd and g = dy·gamma:
//   dx = rstd · (g - mean(g) - xhat · mean(g·xhat)),   dgamma += dy·xhat,   dbeta += dy.
// Rows are split over WorkerPool; each chunk sums its own dgamma/dbeta, merged at the end (no races).
// FLOPs: ~8 per element forward, ~12 backward. Bytes: 8 forward (read x, write y), 12 backward.
// Bound: memory bandwidth for rows beyond L2, FMA issue for rows in cache. Outputs too large to stay in the cache
// (StreamingStores.Pay) are written with streaming stores: no read-for-ownership of y/dx, and x stays in the L3.
// Residual add fused in (a pre-norm Transformer block: h = x + sublayer(x), then LayerNorm(h)): the forward can take
// a residual and write sum = x + residual row by row, normalising the row while it is in L1, so the stream is not
// read back from memory; the backward can take an addend (the gradient the input already has from its other
// consumer, the residual path) and write dx = addend + the layer-norm gradient in the same pass, so no separate
// add reads dx back. sum may be x or residual itself and dx may be the addend (in place).
// Reference: the float64 overloads of LayerNorm.Forward / LayerNorm.Backward (the same formulas in double, one
// thread), and an independent two-pass float64 layer norm in Tests/Kernels/RowKernelTests.cs.
using System.Buffers;
using System.Numerics.Tensors;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Layer normalisation over the last dim, forward and backward.</summary>
public static unsafe class LayerNorm
{
    private const int MinParallelElements = 32 * 1024;

    private struct Args
    {
        public float* X, Residual, Sum, Gamma, Beta, Y, Mean, Rstd, Dy, Dx, Addend, DGammaParts, DBetaParts;
        public int Rows, Cols, RowsPerChunk; public float Eps; public bool Stream;
    }

    private static void Check(string op, int rows, int cols, params ReadOnlySpan<(int Length, long Need, string Name)> spans)
    {
        if (rows < 0 || cols < 0) throw new ArgumentException($"{op}: rows and cols must be non-negative, got {rows} x {cols}");
        foreach (var (len, need, name) in spans)
            if (len < need) throw new ArgumentException($"{op}: {name} has {len} elements, needs {need} for {rows} x {cols}");
    }

    /// <summary>
    /// y = layer_norm(x) for x [rows, cols]; gamma/beta of length cols, or empty for no affine transform.
    /// Writes the per-row mean and 1/std.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y, Span<float> mean, Span<float> rstd, int rows, int cols, float eps) =>
        Forward(x, gamma, beta, y, mean, rstd, rows, cols, eps, StreamingStores.Pay((long)rows * cols));

    /// <summary>
    /// sum = x + residual and y = layer_norm(sum) in one pass over each row (a pre-norm block's residual add and the
    /// next layer norm). sum may be x or residual itself (an in-place residual stream); y must not overlap them.
    /// </summary>
    public static void ForwardWithResidual(ReadOnlySpan<float> x, ReadOnlySpan<float> residual, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> sum, Span<float> y, Span<float> mean, Span<float> rstd, int rows, int cols, float eps) =>
        Forward(x, gamma, beta, y, mean, rstd, rows, cols, eps, StreamingStores.Pay((long)rows * cols), residual, sum);

    // streamOutput chooses the stores, so that tests run both kinds on any size.
    internal static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y, Span<float> mean, Span<float> rstd, int rows, int cols, float eps, bool streamOutput,
        ReadOnlySpan<float> residual = default, Span<float> sum = default)
    {
        long n = (long)rows * cols;
        string op = residual.IsEmpty ? "LayerNorm.Forward" : "LayerNorm.ForwardWithResidual";
        Check(op, rows, cols, (x.Length, n, "x"), (y.Length, n, "y"), (mean.Length, rows, "mean"), (rstd.Length, rows, "rstd"),
            (gamma.IsEmpty ? cols : gamma.Length, cols, "gamma"), (beta.IsEmpty ? cols : beta.Length, cols, "beta"));
        if (!residual.IsEmpty || !sum.IsEmpty) Check(op, rows, cols, (residual.Length, n, "residual"), (sum.Length, n, "sum"));
        if (rows == 0 || cols == 0) return;
        fixed (float* px = x) fixed (float* pg = gamma) fixed (float* pb = beta) fixed (float* py = y) fixed (float* pm = mean) fixed (float* pr = rstd)
        fixed (float* pres = residual) fixed (float* psum = sum)
        {
            var a = new Args { X = px, Gamma = gamma.IsEmpty ? null : pg, Beta = beta.IsEmpty ? null : pb, Y = py, Mean = pm, Rstd = pr, Rows = rows, Cols = cols, Eps = eps,
                Residual = residual.IsEmpty ? null : pres, Sum = residual.IsEmpty ? null : psum, Stream = streamOutput && StreamingStores.Supported };
            int chunks = Chunks(ref a);
            WorkerPool.For(chunks, &ForwardChunk, (nint)(&a));
        }
    }

    private static int Chunks(ref Args a)
    {
        long total = (long)a.Rows * a.Cols;
        int chunks = total < MinParallelElements ? 1 : Math.Min(a.Rows, WorkerPool.ChunkCount(total, MinParallelElements, 4));
        a.RowsPerChunk = (a.Rows + chunks - 1) / chunks;
        return (a.Rows + a.RowsPerChunk - 1) / a.RowsPerChunk;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardChunk(int chunk, nint state)
    {
        ref Args a = ref *(Args*)state;
        int n = a.Cols;
        for (int r = chunk * a.RowsPerChunk, end = Math.Min(a.Rows, r + a.RowsPerChunk); r < end; r++)
        {
            float* x = a.X + (long)r * n, y = a.Y + (long)r * n;
            if (a.Residual != null)
            {
                // The row of the sum is written once and then read from L1 by the two passes below.
                float* s = a.Sum + (long)r * n;
                TensorPrimitives.Add(new ReadOnlySpan<float>(x, n), new ReadOnlySpan<float>(a.Residual + (long)r * n, n), new Span<float>(s, n));
                x = s;
            }
            float k = x[0];
            double s1, s2;
            int i = 0;
            if (Vector512.IsHardwareAccelerated && n >= 32)
            {
                var kv = Vector512.Create(k);
                Vector512<float> a1 = default, a2 = default, b1 = default, b2 = default;
                for (; i + 32 <= n; i += 32)
                {
                    var d0 = Vector512.Load(x + i) - kv; var d1 = Vector512.Load(x + i + 16) - kv;
                    a1 += d0; b1 += d1;
                    a2 = Vector512.FusedMultiplyAdd(d0, d0, a2); b2 = Vector512.FusedMultiplyAdd(d1, d1, b2);
                }
                s1 = Vector512.Sum(a1 + b1); s2 = Vector512.Sum(a2 + b2);
            }
            else if (Vector.IsHardwareAccelerated && n >= 2 * Vector<float>.Count)
            {
                // The same sums at the portable width (AVX2: 8 lanes, Arm64: 4).
                int w = Vector<float>.Count;
                var kv = new Vector<float>(k);
                Vector<float> a1 = default, a2 = default, b1 = default, b2 = default;
                for (; i + 2 * w <= n; i += 2 * w)
                {
                    var d0 = Vector.Load(x + i) - kv; var d1 = Vector.Load(x + i + w) - kv;
                    a1 += d0; b1 += d1;
                    a2 = Vector.MultiplyAddEstimate(d0, d0, a2); b2 = Vector.MultiplyAddEstimate(d1, d1, b2);
                }
                s1 = Vector.Sum(a1 + b1); s2 = Vector.Sum(a2 + b2);
            }
            else { s1 = 0; s2 = 0; }
            for (; i < n; i++) { double d = x[i] - k; s1 += d; s2 += d * d; }
            double meanShift = s1 / n;
            double var = Math.Max(0, s2 / n - meanShift * meanShift);
            float mu = (float)(k + meanShift), rs = (float)(1 / Math.Sqrt(var + a.Eps));
            a.Mean[r] = mu; a.Rstd[r] = rs;
            Normalize(x, y, n, mu, rs, a.Gamma, a.Beta, a.Stream);
        }
        if (a.Stream) StreamingStores.Fence();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Normalize(float* x, float* y, int n, float mu, float rs, float* gamma, float* beta, bool stream)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (int head = stream ? StreamingStores.AlignedHead(y, n) : 0; i < head; i++) y[i] = NormalizeOne(x, i, mu, rs, gamma, beta);
            var m = Vector512.Create(mu); var s = Vector512.Create(rs);
            for (; i + 16 <= n; i += 16)
            {
                var h = (Vector512.Load(x + i) - m) * s;
                if (gamma != null) h *= Vector512.Load(gamma + i);
                if (beta != null) h += Vector512.Load(beta + i);
                if (stream) h.StoreAlignedNonTemporal(y + i); else h.Store(y + i);
            }
        }
        else if (Vector.IsHardwareAccelerated)
        {
            var m = new Vector<float>(mu); var s = new Vector<float>(rs);
            for (int w = Vector<float>.Count; i + w <= n; i += w)
            {
                var h = (Vector.Load(x + i) - m) * s;
                if (gamma != null) h *= Vector.Load(gamma + i);
                if (beta != null) h += Vector.Load(beta + i);
                h.Store(y + i);
            }
        }
        for (; i < n; i++) y[i] = NormalizeOne(x, i, mu, rs, gamma, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float NormalizeOne(float* x, int i, float mu, float rs, float* gamma, float* beta)
    {
        float h = (x[i] - mu) * rs;
        if (gamma != null) h *= gamma[i];
        if (beta != null) h += beta[i];
        return h;
    }

    /// <summary>
    /// Backward pass: dx from dy, x, the saved mean and rstd and gamma (empty for none); accumulates (+=)
    /// dgamma and dbeta when they are not empty.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> gamma,
        Span<float> dx, Span<float> dgamma, Span<float> dbeta, int rows, int cols) =>
        Backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols, StreamingStores.Pay((long)rows * cols));

    /// <summary>
    /// The backward pass with an addend: dx = addend + the layer-norm input gradient, in the same pass (the addend is
    /// the gradient x already has from its other consumer, the residual path). dx may be the addend itself.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> addend, Span<float> dx, Span<float> dgamma, Span<float> dbeta, int rows, int cols) =>
        Backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols, StreamingStores.Pay((long)rows * cols), addend);

    internal static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> gamma,
        Span<float> dx, Span<float> dgamma, Span<float> dbeta, int rows, int cols, bool streamOutput, ReadOnlySpan<float> addend = default)
    {
        long n = (long)rows * cols;
        Check("LayerNorm.Backward", rows, cols, (dy.Length, n, "dy"), (x.Length, n, "x"), (dx.Length, n, "dx"), (mean.Length, rows, "mean"), (rstd.Length, rows, "rstd"),
            (gamma.IsEmpty ? cols : gamma.Length, cols, "gamma"), (dgamma.IsEmpty ? cols : dgamma.Length, cols, "dgamma"), (dbeta.IsEmpty ? cols : dbeta.Length, cols, "dbeta"),
            (addend.IsEmpty ? (int)n : addend.Length, n, "addend"));
        if (rows == 0 || cols == 0) return;
        fixed (float* pdy = dy) fixed (float* px = x) fixed (float* pm = mean) fixed (float* pr = rstd) fixed (float* pg = gamma) fixed (float* pdx = dx) fixed (float* pad = addend)
        {
            var a = new Args { Dy = pdy, X = px, Mean = pm, Rstd = pr, Gamma = gamma.IsEmpty ? null : pg, Dx = pdx, Addend = addend.IsEmpty ? null : pad, Rows = rows, Cols = cols,
                Stream = streamOutput && StreamingStores.Supported };
            int chunks = Chunks(ref a);
            bool wantParams = !dgamma.IsEmpty || !dbeta.IsEmpty;
            float[]? parts = wantParams ? ArrayPool<float>.Shared.Rent(2 * chunks * cols) : null;
            try
            {
                fixed (float* pp = parts)
                {
                    if (parts is not null)
                    {
                        new Span<float>(pp, 2 * chunks * cols).Clear();
                        a.DGammaParts = pp; a.DBetaParts = pp + (long)chunks * cols;
                    }
                    WorkerPool.For(chunks, &BackwardChunk, (nint)(&a));
                    for (int c = 0; c < chunks && parts is not null; c++)
                    {
                        if (!dgamma.IsEmpty) TensorPrimitives.Add(dgamma[..cols], new ReadOnlySpan<float>(a.DGammaParts + (long)c * cols, cols), dgamma[..cols]);
                        if (!dbeta.IsEmpty) TensorPrimitives.Add(dbeta[..cols], new ReadOnlySpan<float>(a.DBetaParts + (long)c * cols, cols), dbeta[..cols]);
                    }
                }
            }
            finally { if (parts is not null) ArrayPool<float>.Shared.Return(parts); }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardChunk(int chunk, nint state)
    {
        ref Args a = ref *(Args*)state;
        int n = a.Cols;
        float* dg = a.DGammaParts == null ? null : a.DGammaParts + (long)chunk * n;
        float* db = a.DBetaParts == null ? null : a.DBetaParts + (long)chunk * n;
        for (int r = chunk * a.RowsPerChunk, end = Math.Min(a.Rows, r + a.RowsPerChunk); r < end; r++)
        {
            float* x = a.X + (long)r * n, dy = a.Dy + (long)r * n, dx = a.Dx + (long)r * n;
            float* add = a.Addend == null ? null : a.Addend + (long)r * n;
            float mu = a.Mean[r], rs = a.Rstd[r];
            // Pass 1: mean(g) and mean(g·xhat), plus the parameter gradients.
            float sumG = 0, sumGX = 0;
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var m = Vector512.Create(mu); var s = Vector512.Create(rs);
                Vector512<float> ag = default, agx = default;
                for (; i + 16 <= n; i += 16)
                {
                    var xh = (Vector512.Load(x + i) - m) * s;
                    var d = Vector512.Load(dy + i);
                    var g = a.Gamma != null ? d * Vector512.Load(a.Gamma + i) : d;
                    ag += g; agx = Vector512.FusedMultiplyAdd(g, xh, agx);
                    if (dg != null) Vector512.FusedMultiplyAdd(d, xh, Vector512.Load(dg + i)).Store(dg + i);
                    if (db != null) (Vector512.Load(db + i) + d).Store(db + i);
                }
                sumG = Vector512.Sum(ag); sumGX = Vector512.Sum(agx);
            }
            else if (Vector.IsHardwareAccelerated)
            {
                var m = new Vector<float>(mu); var s = new Vector<float>(rs);
                Vector<float> ag = default, agx = default;
                for (int w = Vector<float>.Count; i + w <= n; i += w)
                {
                    var xh = (Vector.Load(x + i) - m) * s;
                    var d = Vector.Load(dy + i);
                    var g = a.Gamma != null ? d * Vector.Load(a.Gamma + i) : d;
                    ag += g; agx = Vector.MultiplyAddEstimate(g, xh, agx);
                    if (dg != null) Vector.MultiplyAddEstimate(d, xh, Vector.Load(dg + i)).Store(dg + i);
                    if (db != null) (Vector.Load(db + i) + d).Store(db + i);
                }
                sumG = Vector.Sum(ag); sumGX = Vector.Sum(agx);
            }
            for (; i < n; i++)
            {
                float xh = (x[i] - mu) * rs, d = dy[i], g = a.Gamma != null ? d * a.Gamma[i] : d;
                sumG += g; sumGX += g * xh;
                if (dg != null) dg[i] += d * xh;
                if (db != null) db[i] += d;
            }
            float meanG = sumG / n, meanGX = sumGX / n;
            // Pass 2: dx.
            i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (int head = a.Stream ? StreamingStores.AlignedHead(dx, n) : 0; i < head; i++) dx[i] = InputGradientOne(x, dy, a.Gamma, add, i, mu, rs, meanG, meanGX);
                var m = Vector512.Create(mu); var s = Vector512.Create(rs);
                var mg = Vector512.Create(meanG); var mgx = Vector512.Create(meanGX);
                for (; i + 16 <= n; i += 16)
                {
                    var xh = (Vector512.Load(x + i) - m) * s;
                    var d = Vector512.Load(dy + i);
                    var g = a.Gamma != null ? d * Vector512.Load(a.Gamma + i) : d;
                    var v = s * (g - mg - xh * mgx);
                    if (add != null) v += Vector512.Load(add + i);
                    if (a.Stream) v.StoreAlignedNonTemporal(dx + i); else v.Store(dx + i);
                }
            }
            else if (Vector.IsHardwareAccelerated)
            {
                var m = new Vector<float>(mu); var s = new Vector<float>(rs);
                var mg = new Vector<float>(meanG); var mgx = new Vector<float>(meanGX);
                for (int w = Vector<float>.Count; i + w <= n; i += w)
                {
                    var xh = (Vector.Load(x + i) - m) * s;
                    var d = Vector.Load(dy + i);
                    var g = a.Gamma != null ? d * Vector.Load(a.Gamma + i) : d;
                    var v = s * (g - mg - xh * mgx);
                    if (add != null) v += Vector.Load(add + i);
                    v.Store(dx + i);
                }
            }
            for (; i < n; i++) dx[i] = InputGradientOne(x, dy, a.Gamma, add, i, mu, rs, meanG, meanGX);
        }
        if (a.Stream) StreamingStores.Fence();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float InputGradientOne(float* x, float* dy, float* gamma, float* addend, int i, float mu, float rs, float meanG, float meanGX)
    {
        float xh = (x[i] - mu) * rs, d = dy[i], g = gamma != null ? d * gamma[i] : d;
        float v = rs * (g - meanG - xh * meanGX);
        return addend != null ? v + addend[i] : v;
    }

    /// <summary>float64 forward (scalar two-pass; used for float64 tensors and as the reference).</summary>
    public static void Forward(ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, Span<double> y, Span<double> mean, Span<double> rstd, int rows, int cols, double eps) =>
        ForwardWithResidual(x, default, gamma, beta, default, y, mean, rstd, rows, cols, eps);

    /// <summary>float64 sum = x + residual and y = layer_norm(sum); an empty residual normalises x alone.</summary>
    public static void ForwardWithResidual(ReadOnlySpan<double> x, ReadOnlySpan<double> residual, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta,
        Span<double> sum, Span<double> y, Span<double> mean, Span<double> rstd, int rows, int cols, double eps)
    {
        long n = (long)rows * cols;
        string op = residual.IsEmpty ? "LayerNorm.Forward" : "LayerNorm.ForwardWithResidual";
        Check(op, rows, cols, (x.Length, n, "x"), (y.Length, n, "y"), (mean.Length, rows, "mean"), (rstd.Length, rows, "rstd"));
        if (!residual.IsEmpty || !sum.IsEmpty) Check(op, rows, cols, (residual.Length, n, "residual"), (sum.Length, n, "sum"));
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<double> xr = x.Slice(r * cols, cols); var yr = y.Slice(r * cols, cols);
            if (!residual.IsEmpty)
            {
                var sr = sum.Slice(r * cols, cols);
                for (int j = 0; j < cols; j++) sr[j] = xr[j] + residual[r * cols + j];
                xr = sr;
            }
            double mu = 0;
            foreach (var v in xr) mu += v;
            mu /= cols;
            double var = 0;
            foreach (var v in xr) var += (v - mu) * (v - mu);
            var /= cols;
            double rs = 1 / Math.Sqrt(var + eps);
            mean[r] = mu; rstd[r] = rs;
            for (int j = 0; j < cols; j++) yr[j] = (xr[j] - mu) * rs * (gamma.IsEmpty ? 1 : gamma[j]) + (beta.IsEmpty ? 0 : beta[j]);
        }
    }

    /// <summary>float64 backward (scalar; see the float32 overload).</summary>
    public static void Backward(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> rstd, ReadOnlySpan<double> gamma,
        Span<double> dx, Span<double> dgamma, Span<double> dbeta, int rows, int cols) =>
        Backward(dy, x, mean, rstd, gamma, default, dx, dgamma, dbeta, rows, cols);

    /// <summary>float64 backward with an addend: dx = addend + the input gradient (dx may be the addend).</summary>
    public static void Backward(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> rstd, ReadOnlySpan<double> gamma,
        ReadOnlySpan<double> addend, Span<double> dx, Span<double> dgamma, Span<double> dbeta, int rows, int cols)
    {
        long n = (long)rows * cols;
        Check("LayerNorm.Backward", rows, cols, (dy.Length, n, "dy"), (x.Length, n, "x"), (dx.Length, n, "dx"), (addend.IsEmpty ? (int)n : addend.Length, n, "addend"));
        for (int r = 0; r < rows; r++)
        {
            double mu = mean[r], rs = rstd[r], sumG = 0, sumGX = 0;
            for (int j = 0; j < cols; j++)
            {
                double xh = (x[r * cols + j] - mu) * rs, d = dy[r * cols + j], g = gamma.IsEmpty ? d : d * gamma[j];
                sumG += g; sumGX += g * xh;
                if (!dgamma.IsEmpty) dgamma[j] += d * xh;
                if (!dbeta.IsEmpty) dbeta[j] += d;
            }
            for (int j = 0; j < cols; j++)
            {
                double xh = (x[r * cols + j] - mu) * rs, d = dy[r * cols + j], g = gamma.IsEmpty ? d : d * gamma[j];
                dx[r * cols + j] = rs * (g - sumG / cols - xh * sumGX / cols) + (addend.IsEmpty ? 0 : addend[r * cols + j]);
            }
        }
    }
}
