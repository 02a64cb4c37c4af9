// BatchNorm: per-channel normalisation of NCHW tensors (Ioffe and Szegedy 2015), PyTorch semantics.
//
// Training: for each channel over its M = N·H·W values, one fused pass accumulates Σ(x − K) and Σ(x − K)² with
// K the channel's first value (shifted data: accurate when |mean| >> std, unlike the plain sum of squares),
// in vector registers flushed to float64 every few thousand values; this gives the mean and the biased
// variance. A second pass writes y = x·scale + shift with scale = γ·invstd, shift = β − mean·scale,
// invstd = 1/sqrt(var + eps). mean and invstd are saved for backward. The running statistics move by
// momentum, the running variance with the unbiased estimate var·M/(M − 1), as PyTorch does.
// Evaluation: the running statistics replace the batch ones (one pass).
// Backward (training): with xhat = (x − mean)·invstd and sums over the channel,
//   dβ = Σ dy,  dγ = Σ dy·xhat,  dx = γ·invstd/M · (M·dy − Σ dy − xhat·Σ dy·xhat),
// one pass for the two sums and one writing dx = a·dy + b·x + c (a, b, c per channel).
// Channels are independent and are split over WorkerPool.
// FLOPs: ~5 per element forward, ~8 backward. Bytes: forward reads x twice and writes y (12 per float
// element), backward reads dy and x twice and writes dx (20). Bound: memory bandwidth.
// Reference: ForwardTrainingReference / BackwardReference (two-pass float64), and independent loops in
// Tests/Kernels/ConvPoolNormTests.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>BatchNorm2d kernels over NCHW tensors (float32 and float64); x is [N, C, HW] with HW = H·W.</summary>
public static unsafe partial class BatchNorm
{
    private const long MinParallelElements = 1 << 15;
    private const int FlushEvery = 4096;   // values summed in T before the partial sums move to float64

    private struct Args<T> where T : unmanaged
    {
        public T* X, Gamma, Beta, Y, Mean, Invstd, RunMean, RunVar, Dy, Dx, DGamma, DBeta;
        public int N, C, Hw, ChannelsPerChunk;
        public double Momentum, Eps;
        public bool Relu;   // fused ReLU (BatchNormRelu.cs): forward clamps y; backward masks dy by Y > 0
    }

    private static void Check(string op, int n, int c, int hw, int xLen, int yLen, params (int Length, string Name, bool Optional)[] perChannel)
    {
        if (n < 0 || c <= 0 || hw <= 0) throw new ArgumentException($"{op}: invalid sizes N={n} C={c} HW={hw}");
        long need = (long)n * c * hw;
        if (need > int.MaxValue) throw new ArgumentException($"{op}: N·C·HW = {need} is too large for 32-bit indexing");
        if (xLen < need || yLen < need) throw new ArgumentException($"{op}: spans of {xLen} and {yLen} elements are shorter than N·C·HW = {need} (N={n} C={c} HW={hw})");
        foreach (var (len, name, optional) in perChannel)
            if (len < c && !(optional && len == 0)) throw new ArgumentException($"{op}: {name} has {len} elements, needs C={c}{(optional ? " (or none)" : "")}");
    }

    private static void Run<T>(ref Args<T> a, delegate*<int, nint, void> body) where T : unmanaged
    {
        long total = (long)a.N * a.C * a.Hw;
        int chunks = total < MinParallelElements ? 1 : Math.Min(a.C, WorkerPool.ChunkCount(total, MinParallelElements));
        a.ChannelsPerChunk = (a.C + chunks - 1) / chunks;
        chunks = (a.C + a.ChannelsPerChunk - 1) / a.ChannelsPerChunk;
        fixed (Args<T>* pa = &a)
        {
            if (chunks == 1) body(0, (nint)pa);
            else WorkerPool.For(chunks, body, (nint)pa);
        }
    }

    /// <summary>
    /// Training-mode forward: writes y, the batch mean and invstd = 1/sqrt(var + eps) per channel (for backward), and
    /// updates the running statistics (when not empty) with <paramref name="momentum"/>, the variance unbiased.
    /// gamma/beta may be empty (no affine transform). Needs N·HW &gt; 1.
    /// </summary>
    public static void ForwardTraining<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, Span<T> mean, Span<T> invstd,
        Span<T> runningMean, Span<T> runningVar, int n, int c, int hw, T momentum, T eps) where T : unmanaged, IFloatingPointIeee754<T>
        => ForwardTrainingCore("BatchNorm.ForwardTraining", false, x, gamma, beta, y, mean, invstd, runningMean, runningVar, n, c, hw, momentum, eps);

    private static void ForwardTrainingCore<T>(string op, bool relu, ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, Span<T> mean, Span<T> invstd,
        Span<T> runningMean, Span<T> runningVar, int n, int c, int hw, T momentum, T eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(op, n, c, hw, x.Length, y.Length, (gamma.Length, "gamma", true), (beta.Length, "beta", true),
            (mean.Length, "mean", false), (invstd.Length, "invstd", false), (runningMean.Length, "runningMean", true), (runningVar.Length, "runningVar", true));
        if ((long)n * hw < 2) throw new ArgumentException($"{op}: needs more than one value per channel in training mode, got N·H·W = {(long)n * hw}");
        fixed (T* px = x) fixed (T* pg = gamma) fixed (T* pb = beta) fixed (T* py = y) fixed (T* pm = mean) fixed (T* pi = invstd) fixed (T* prm = runningMean) fixed (T* prv = runningVar)
        {
            var a = new Args<T>
            {
                X = px, Gamma = gamma.IsEmpty ? null : pg, Beta = beta.IsEmpty ? null : pb, Y = py, Mean = pm, Invstd = pi,
                RunMean = runningMean.IsEmpty ? null : prm, RunVar = runningVar.IsEmpty ? null : prv,
                N = n, C = c, Hw = hw, Momentum = double.CreateTruncating(momentum), Eps = double.CreateTruncating(eps), Relu = relu,
            };
            Run(ref a, &TrainingChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TrainingChunk<T>(int chunk, nint state) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        int hw = a.Hw; double m = (double)a.N * hw;
        for (int ch = chunk * a.ChannelsPerChunk, end = Math.Min(a.C, ch + a.ChannelsPerChunk); ch < end; ch++)
        {
            T k = a.X[(long)ch * hw];
            double s1 = 0, s2 = 0;
            for (int b = 0; b < a.N; b++) ShiftedMoments(a.X + ((long)b * a.C + ch) * hw, hw, k, ref s1, ref s2);
            double shift = s1 / m, var = Math.Max(0, s2 / m - shift * shift), mu = double.CreateTruncating(k) + shift;
            double inv = 1 / Math.Sqrt(var + a.Eps);
            a.Mean[ch] = T.CreateTruncating(mu); a.Invstd[ch] = T.CreateTruncating(inv);
            if (a.RunMean != null) a.RunMean[ch] = T.CreateTruncating((1 - a.Momentum) * double.CreateTruncating(a.RunMean[ch]) + a.Momentum * mu);
            if (a.RunVar != null) a.RunVar[ch] = T.CreateTruncating((1 - a.Momentum) * double.CreateTruncating(a.RunVar[ch]) + a.Momentum * var * m / (m - 1));
            // y from the mean and invstd as stored (rounded to T), so that the fused ReLU's backward recomputes the
            // same x·scale + shift, and with it the same mask, from x (BatchNormRelu.cs).
            Normalize(ref a, ch, double.CreateTruncating(a.Mean[ch]), double.CreateTruncating(a.Invstd[ch]));
        }
    }

    // s1 += Σ(x − k), s2 += Σ(x − k)² over len values.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ShiftedMoments<T>(T* x, int len, T k, ref double s1, ref double s2) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
        {
            var kv = Vector512.Create(k);
            while (i + Vector512<T>.Count <= len)
            {
                Vector512<T> a1 = Vector512<T>.Zero, a2 = Vector512<T>.Zero;
                for (int stop = Math.Min(len, i + FlushEvery); i + Vector512<T>.Count <= stop; i += Vector512<T>.Count)
                {
                    var d = Vector512.Load(x + i) - kv;
                    a1 += d; a2 += d * d;
                }
                s1 += double.CreateTruncating(Vector512.Sum(a1)); s2 += double.CreateTruncating(Vector512.Sum(a2));
            }
        }
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
        {
            var kv = Vector256.Create(k);
            while (i + Vector256<T>.Count <= len)
            {
                Vector256<T> a1 = Vector256<T>.Zero, a2 = Vector256<T>.Zero;
                for (int stop = Math.Min(len, i + FlushEvery); i + Vector256<T>.Count <= stop; i += Vector256<T>.Count)
                {
                    var d = Vector256.Load(x + i) - kv;
                    a1 += d; a2 += d * d;
                }
                s1 += double.CreateTruncating(Vector256.Sum(a1)); s2 += double.CreateTruncating(Vector256.Sum(a2));
            }
        }
        for (; i < len; i++) { double d = double.CreateTruncating(x[i] - k); s1 += d; s2 += d * d; }
    }

    // y = x·scale + shift per channel: scale = γ·invstd, shift = β − mean·γ·invstd, rounded to T once.
    private static (T Scale, T Shift) Affine<T>(T* gamma, T* beta, int ch, double mu, double inv) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double g = gamma == null ? 1 : double.CreateTruncating(gamma[ch]), bb = beta == null ? 0 : double.CreateTruncating(beta[ch]);
        return (T.CreateTruncating(inv * g), T.CreateTruncating(bb - mu * inv * g));
    }

    private static void Normalize<T>(ref Args<T> a, int ch, double mu, double inv) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (scale, shift) = Affine(a.Gamma, a.Beta, ch, mu, inv);
        for (int b = 0; b < a.N; b++)
        {
            long off = ((long)b * a.C + ch) * a.Hw;
            if (a.Relu) ScaleShift<T, ReluOutput<T>>(a.X + off, a.Y + off, a.Hw, scale, shift);
            else ScaleShift<T, IdentityOutput<T>>(a.X + off, a.Y + off, a.Hw, scale, shift);
        }
    }

    /// <summary>Evaluation-mode forward: y = (x − runningMean)/sqrt(runningVar + eps)·γ + β.</summary>
    public static void ForwardInference<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, ReadOnlySpan<T> runningMean, ReadOnlySpan<T> runningVar,
        int n, int c, int hw, T eps) where T : unmanaged, IFloatingPointIeee754<T>
        => ForwardInferenceCore("BatchNorm.ForwardInference", false, x, gamma, beta, y, runningMean, runningVar, n, c, hw, eps);

    private static void ForwardInferenceCore<T>(string op, bool relu, ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, ReadOnlySpan<T> runningMean, ReadOnlySpan<T> runningVar,
        int n, int c, int hw, T eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(op, n, c, hw, x.Length, y.Length, (gamma.Length, "gamma", true), (beta.Length, "beta", true),
            (runningMean.Length, "runningMean", false), (runningVar.Length, "runningVar", false));
        fixed (T* px = x) fixed (T* pg = gamma) fixed (T* pb = beta) fixed (T* py = y) fixed (T* prm = runningMean) fixed (T* prv = runningVar)
        {
            var a = new Args<T> { X = px, Gamma = gamma.IsEmpty ? null : pg, Beta = beta.IsEmpty ? null : pb, Y = py, RunMean = prm, RunVar = prv, N = n, C = c, Hw = hw, Eps = double.CreateTruncating(eps), Relu = relu };
            Run(ref a, &InferenceChunk<T>);
        }
    }

    private static void InferenceChunk<T>(int chunk, nint state) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        for (int ch = chunk * a.ChannelsPerChunk, end = Math.Min(a.C, ch + a.ChannelsPerChunk); ch < end; ch++)
            Normalize(ref a, ch, double.CreateTruncating(a.RunMean[ch]), 1 / Math.Sqrt(double.CreateTruncating(a.RunVar[ch]) + a.Eps));
    }

    /// <summary>
    /// Training-mode backward from the saved mean and invstd: dx (overwritten), and dγ/dβ (overwritten) when not empty.
    /// gamma may be empty (γ = 1).
    /// </summary>
    public static void Backward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> mean, ReadOnlySpan<T> invstd, ReadOnlySpan<T> gamma,
        Span<T> dx, Span<T> dgamma, Span<T> dbeta, int n, int c, int hw) where T : unmanaged, IFloatingPointIeee754<T>
        => BackwardCore("BatchNorm.Backward", false, dy, x, mean, invstd, gamma, default, dx, dgamma, dbeta, n, c, hw);

    // relu: dy is masked by x·scale + shift > 0, the fused ReLU's mask recomputed from x (BatchNormRelu.cs).
    private static void BackwardCore<T>(string op, bool relu, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> mean, ReadOnlySpan<T> invstd, ReadOnlySpan<T> gamma,
        ReadOnlySpan<T> beta, Span<T> dx, Span<T> dgamma, Span<T> dbeta, int n, int c, int hw) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(op, n, c, hw, x.Length, dx.Length, (dy.Length >= (long)n * c * hw ? c : 0, "dy (per channel: N·HW)", false),
            (mean.Length, "mean", false), (invstd.Length, "invstd", false), (gamma.Length, "gamma", true), (beta.Length, "beta", true),
            (dgamma.Length, "dgamma", true), (dbeta.Length, "dbeta", true));
        fixed (T* pdy = dy) fixed (T* px = x) fixed (T* pm = mean) fixed (T* pi = invstd) fixed (T* pg = gamma) fixed (T* pb = beta) fixed (T* pdx = dx) fixed (T* pdg = dgamma) fixed (T* pdb = dbeta)
        {
            var a = new Args<T>
            {
                Dy = pdy, X = px, Mean = pm, Invstd = pi, Gamma = gamma.IsEmpty ? null : pg, Beta = beta.IsEmpty ? null : pb, Dx = pdx,
                DGamma = dgamma.IsEmpty ? null : pdg, DBeta = dbeta.IsEmpty ? null : pdb, N = n, C = c, Hw = hw, Relu = relu,
            };
            Run(ref a, &BackwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardChunk<T>(int chunk, nint state) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        int hw = a.Hw; double m = (double)a.N * hw;
        for (int ch = chunk * a.ChannelsPerChunk, end = Math.Min(a.C, ch + a.ChannelsPerChunk); ch < end; ch++)
        {
            double mu = double.CreateTruncating(a.Mean[ch]), inv = double.CreateTruncating(a.Invstd[ch]);
            var (scale, shift) = Affine(a.Gamma, a.Beta, ch, mu, inv);
            double sdy = 0, sdyxc = 0;   // Σ dy and Σ dy·(x − mean)
            for (int b = 0; b < a.N; b++)
            {
                long off = ((long)b * a.C + ch) * hw;
                if (a.Relu) DyMoments<T, PositiveAffineMask<T>>(a.Dy + off, a.X + off, hw, T.CreateTruncating(mu), scale, shift, ref sdy, ref sdyxc);
                else DyMoments<T, NoMask<T>>(a.Dy + off, a.X + off, hw, T.CreateTruncating(mu), scale, shift, ref sdy, ref sdyxc);
            }
            double sdyxhat = sdyxc * inv;
            if (a.DGamma != null) a.DGamma[ch] = T.CreateTruncating(sdyxhat);
            if (a.DBeta != null) a.DBeta[ch] = T.CreateTruncating(sdy);
            double g = a.Gamma == null ? 1 : double.CreateTruncating(a.Gamma[ch]), k = g * inv / m;
            // dx = k·(M·dy − Σdy − (x − mean)·invstd·Σdy·xhat) = ca·dy + cb·x + cc
            T ca = T.CreateTruncating(k * m), cb = T.CreateTruncating(-k * inv * sdyxhat), cc = T.CreateTruncating(k * (inv * sdyxhat * mu - sdy));
            for (int b = 0; b < a.N; b++)
            {
                long off = ((long)b * a.C + ch) * hw;
                if (a.Relu) AxpbyC<T, PositiveAffineMask<T>>(a.Dy + off, a.X + off, a.Dx + off, hw, ca, cb, cc, scale, shift);
                else AxpbyC<T, NoMask<T>>(a.Dy + off, a.X + off, a.Dx + off, hw, ca, cb, cc, scale, shift);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    // sdy += Σ dz, sdyx += Σ dz·(x − mu) with dz = TMask.Apply(dy, x, scale, shift) (dy itself, or masked by the fused
    // ReLU's x·scale + shift > 0).
    private static void DyMoments<T, TMask>(T* dy, T* x, int len, T mu, T scale, T shift, ref double sdy, ref double sdyx) where T : unmanaged, IFloatingPointIeee754<T> where TMask : IDyMask<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
        {
            Vector512<T> mv = Vector512.Create(mu), va = Vector512.Create(scale), vb = Vector512.Create(shift);
            while (i + Vector512<T>.Count <= len)
            {
                Vector512<T> a1 = Vector512<T>.Zero, a2 = Vector512<T>.Zero;
                for (int stop = Math.Min(len, i + FlushEvery); i + Vector512<T>.Count <= stop; i += Vector512<T>.Count)
                {
                    var xv = Vector512.Load(x + i);
                    var g = TMask.Apply(Vector512.Load(dy + i), xv, va, vb);
                    a1 += g; a2 += g * (xv - mv);
                }
                sdy += double.CreateTruncating(Vector512.Sum(a1)); sdyx += double.CreateTruncating(Vector512.Sum(a2));
            }
        }
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
        {
            Vector256<T> mv = Vector256.Create(mu), va = Vector256.Create(scale), vb = Vector256.Create(shift);
            while (i + Vector256<T>.Count <= len)
            {
                Vector256<T> a1 = Vector256<T>.Zero, a2 = Vector256<T>.Zero;
                for (int stop = Math.Min(len, i + FlushEvery); i + Vector256<T>.Count <= stop; i += Vector256<T>.Count)
                {
                    var xv = Vector256.Load(x + i);
                    var g = TMask.Apply(Vector256.Load(dy + i), xv, va, vb);
                    a1 += g; a2 += g * (xv - mv);
                }
                sdy += double.CreateTruncating(Vector256.Sum(a1)); sdyx += double.CreateTruncating(Vector256.Sum(a2));
            }
        }
        for (; i < len; i++) { double g = double.CreateTruncating(TMask.Apply(dy[i], x[i], scale, shift)); sdy += g; sdyx += g * double.CreateTruncating(x[i] - mu); }
    }

    // y = TOut.Apply(x·scale + shift): the value itself, or clamped at 0 by the fused ReLU (BatchNormRelu.cs).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleShift<T, TOut>(T* x, T* y, int len, T scale, T shift) where T : unmanaged, IFloatingPointIeee754<T> where TOut : IOutputActivation<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
        {
            Vector512<T> va = Vector512.Create(scale), vb = Vector512.Create(shift);
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) TOut.Apply(Vector512.Load(x + i) * va + vb).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
        {
            Vector256<T> va = Vector256.Create(scale), vb = Vector256.Create(shift);
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) TOut.Apply(Vector256.Load(x + i) * va + vb).Store(y + i);
        }
        for (; i < len; i++) y[i] = TOut.Apply(x[i] * scale + shift);
    }

    // dx = ca·dz + cb·x + cc with dz = TMask.Apply(dy, x, scale, shift)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AxpbyC<T, TMask>(T* dy, T* x, T* dx, int len, T ca, T cb, T cc, T scale, T shift) where T : unmanaged, IFloatingPointIeee754<T> where TMask : IDyMask<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
        {
            Vector512<T> va = Vector512.Create(ca), vb = Vector512.Create(cb), vc = Vector512.Create(cc), vs = Vector512.Create(scale), vt = Vector512.Create(shift);
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count)
            {
                var xv = Vector512.Load(x + i);
                (va * TMask.Apply(Vector512.Load(dy + i), xv, vs, vt) + (vb * xv + vc)).Store(dx + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
        {
            Vector256<T> va = Vector256.Create(ca), vb = Vector256.Create(cb), vc = Vector256.Create(cc), vs = Vector256.Create(scale), vt = Vector256.Create(shift);
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count)
            {
                var xv = Vector256.Load(x + i);
                (va * TMask.Apply(Vector256.Load(dy + i), xv, vs, vt) + (vb * xv + vc)).Store(dx + i);
            }
        }
        for (; i < len; i++) dx[i] = ca * TMask.Apply(dy[i], x[i], scale, shift) + cb * x[i] + cc;
    }

    // ---- float64 references: two-pass statistics, the textbook formulas. ----

    /// <summary>Training-mode batch norm in float64: y, the batch mean, invstd and the unbiased variance per channel.</summary>
    public static (double[] Y, double[] Mean, double[] Invstd, double[] UnbiasedVar) ForwardTrainingReference(ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, int n, int c, int hw, double eps)
    {
        Check("BatchNorm.ForwardTrainingReference", n, c, hw, x.Length, int.MaxValue, (gamma.Length, "gamma", true), (beta.Length, "beta", true));
        var y = new double[(long)n * c * hw]; var mean = new double[c]; var inv = new double[c]; var uvar = new double[c];
        double m = (double)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0, sq = 0;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) sum += x[(b * c + ch) * hw + i];
            mean[ch] = sum / m;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) { double d = x[(b * c + ch) * hw + i] - mean[ch]; sq += d * d; }
            inv[ch] = 1 / Math.Sqrt(sq / m + eps); uvar[ch] = sq / (m - 1);
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++)
            {
                int o = (b * c + ch) * hw + i;
                y[o] = (x[o] - mean[ch]) * inv[ch] * (gamma.IsEmpty ? 1 : gamma[ch]) + (beta.IsEmpty ? 0 : beta[ch]);
            }
        }
        return (y, mean, inv, uvar);
    }

    /// <summary>Training-mode batch-norm gradients in float64, statistics recomputed from x: dx, dγ, dβ.</summary>
    public static (double[] Dx, double[] DGamma, double[] DBeta) BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, int n, int c, int hw, double eps)
    {
        var (_, mean, inv, _) = ForwardTrainingReference(x, default, default, n, c, hw, eps);
        var dx = new double[(long)n * c * hw]; var dg = new double[c]; var db = new double[c];
        double m = (double)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++)
            {
                int o = (b * c + ch) * hw + i;
                db[ch] += dy[o]; dg[ch] += dy[o] * (x[o] - mean[ch]) * inv[ch];
            }
            double g = gamma.IsEmpty ? 1 : gamma[ch];
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++)
            {
                int o = (b * c + ch) * hw + i;
                dx[o] = g * inv[ch] / m * (m * dy[o] - db[ch] - (x[o] - mean[ch]) * inv[ch] * dg[ch]);
            }
        }
        return (dx, dg, db);
    }
}
