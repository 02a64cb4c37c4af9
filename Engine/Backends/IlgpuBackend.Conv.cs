using AttnCore.Kernels;
using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// Convolution, pooling and batch norm on ILGPU devices (the kernels: Kernels/Gpu/Conv.cs, Pool.cs,
// BatchNorm.cs). Shapes are validated here with the CPU's rules, so both backends reject the same input.
public sealed partial class IlgpuBackend
{
    /// <summary>
    /// The most elements the im2col scratch buffer of a convolution may hold (default 16M, 64 MiB). A batch whose
    /// columns would need more runs in chunks of images (at least one image per chunk).
    /// </summary>
    public long ConvColumnLimit
    {
        get => _convColumnLimit;
        set => _convColumnLimit = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "IlgpuBackend.ConvColumnLimit must be positive");
    }
    private long _convColumnLimit = 1 << 24;

    private static void CheckLength(string op, string name, Storage? s, long need, string shape)
    {
        if (s is not null && s.Length < need) throw new ArgumentException($"IlgpuBackend.{op}: {name} has {s.Length} elements, needs {need} for {shape}");
    }

    private (int Images, int Chunks) ConvChunks(in Conv2dShape s)
    {
        long perImage = (long)(s.C / s.Groups) * s.R * s.S * s.P * s.Q;
        int images = (int)Math.Clamp(_convColumnLimit / perImage, 1, Math.Max(1, s.N));
        return (images, (s.N + images - 1) / images);
    }

    /// <inheritdoc/>
    public void Conv2dForward(Storage x, Storage w, Storage? bias, Storage y, in Conv2dShape shape)
    {
        const string op = "Conv2d";
        shape.Validate(op);
        var (xs, ws, ys) = (Float(x, op), Float(w, op), Float(y, op));
        var bs = bias is null ? null : Float(bias, op);
        string d = shape.ToString();
        CheckLength(op, "x", x, shape.XLength, d); CheckLength(op, "w", w, shape.WLength, d); CheckLength(op, "y", y, shape.YLength, d); CheckLength(op, "bias", bias, shape.K, d);
        if (shape.N == 0) return;
        var geo = ConvGeometry.From(shape);
        int kg = shape.K / shape.Groups, crs = shape.C / shape.Groups * shape.R * shape.S, pq = shape.P * shape.Q;
        var (images, chunks) = ConvChunks(shape);
        var col = Allocate(DType.Float32, (long)crs * images * pq);
        var output = Allocate(DType.Float32, (long)kg * images * pq);
        try
        {
            var (cv, ov) = (S(col, op).Floats, S(output, op).Floats);
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                int n0 = chunk * images, nb = Math.Min(images, shape.N - n0), cols = nb * pq;
                for (int g = 0; g < shape.Groups; g++)
                {
                    _k.Im2Col.Value(Threads(op, (long)crs * cols), xs.Floats, cv, geo, n0, nb, g);
                    MatMul(w, new MatrixOperand((long)g * kg * crs, 0, crs, false), col, new MatrixOperand(0, 0, cols, false), output, 1, kg, cols, crs);
                    _k.UnpackConvOutput.Value(Threads(op, (long)kg * cols), ov, ys.Floats, bs?.Floats ?? ov, geo, n0, nb, g, bs is null ? 0 : 1);
                }
            }
        }
        finally { col.Release(); output.Release(); }
    }

    /// <inheritdoc/>
    public void Conv2dBackward(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in Conv2dShape shape)
    {
        const string op = "Conv2dBackward";
        shape.Validate(op);
        var (dys, xs, ws) = (Float(dy, op), Float(x, op), Float(w, op));
        var (dxs, dws) = (dx is null ? null : Float(dx, op), dw is null ? null : Float(dw, op));
        if (dbias is not null) Float(dbias, op);
        string d = shape.ToString();
        CheckLength(op, "dy", dy, shape.YLength, d); CheckLength(op, "x", x, shape.XLength, d); CheckLength(op, "w", w, shape.WLength, d);
        CheckLength(op, "dx", dx, shape.XLength, d); CheckLength(op, "dw", dw, shape.WLength, d); CheckLength(op, "dbias", dbias, shape.K, d);
        int kg = shape.K / shape.Groups, crs = shape.C / shape.Groups * shape.R * shape.S, pq = shape.P * shape.Q;
        if (shape.N == 0)
        {
            // No images: every gradient is an empty sum.
            if (dw is not null) Fill(dw, Layout.Contiguous([(int)shape.WLength]), 0);
            if (dbias is not null) Fill(dbias, Layout.Contiguous([shape.K]), 0);
            return;
        }
        // dbias[k] = Σ over n, p, q of dy[n, k, p, q]: dy seen as [K, N, PQ] and summed over the last two dims.
        if (dbias is not null) Reduce(ReduceOp.Sum, dy, new Layout([shape.K, shape.N, pq], [pq, (long)shape.K * pq, 1], 0), 1, dbias);
        if (dx is null && dw is null) return;
        var geo = ConvGeometry.From(shape);
        var (images, chunks) = ConvChunks(shape);
        // The weight GEMM writes dw directly only when one product covers it all; otherwise a partial per group and chunk.
        bool direct = shape.Groups == 1 && chunks == 1;
        var col = Allocate(DType.Float32, (long)crs * images * pq);
        var dyT = Allocate(DType.Float32, (long)kg * images * pq);
        var partial = dw is not null && !direct ? Allocate(DType.Float32, (long)kg * crs) : null;
        try
        {
            var (cv, tv) = (S(col, op).Floats, S(dyT, op).Floats);
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                int n0 = chunk * images, nb = Math.Min(images, shape.N - n0), cols = nb * pq;
                for (int g = 0; g < shape.Groups; g++)
                {
                    _k.PackConvOutputGrad.Value(Threads(op, (long)kg * cols), dys.Floats, tv, geo, n0, nb, g);
                    if (dws is not null)
                    {
                        // dW[g] (kg x crs) = dyT (kg x cols) @ colᵀ, col stored crs x cols.
                        _k.Im2Col.Value(Threads(op, (long)crs * cols), xs.Floats, cv, geo, n0, nb, g);
                        MatMul(dyT, new MatrixOperand(0, 0, cols, false), col, new MatrixOperand(0, 0, cols, true), partial ?? dw!, 1, kg, crs, cols);
                        if (partial is not null)
                            _k.AddInto.Value(Threads(op, (long)kg * crs), S(partial, op).Floats, dws.Floats, (long)g * kg * crs, chunk > 0 ? 1 : 0);
                    }
                    if (dxs is not null)
                    {
                        // dcol (crs x cols) = W[g]ᵀ @ dyT, W[g] stored kg x crs; it reuses the col buffer (kernels run in order).
                        MatMul(w, new MatrixOperand((long)g * kg * crs, 0, crs, true), dyT, new MatrixOperand(0, 0, cols, false), col, 1, crs, cols, kg);
                        _k.Col2Im.Value(Threads(op, (long)nb * (shape.C / shape.Groups) * shape.H * shape.W), cv, dxs.Floats, geo, n0, nb, g);
                    }
                }
            }
        }
        finally { col.Release(); dyT.Release(); partial?.Release(); }
    }

    private void CheckPool(string op, in Pool2dShape shape, Storage x, Storage y, Storage? argmax, bool max)
    {
        shape.Validate(op);
        string d = shape.ToString();
        if (!max && (shape.DilationH != 1 || shape.DilationW != 1)) throw new ArgumentException($"IlgpuBackend.{op}: average pooling has no dilation ({d})");
        CheckLength(op, "x/dx", x, shape.XLength, d); CheckLength(op, "y/dy", y, shape.YLength, d);
        if (!max) return;
        if (argmax is null) throw new ArgumentException($"IlgpuBackend.{op}: max pooling needs the int64 argmax storage ({d})");
        if (argmax.DType != DType.Int64) throw new ArgumentException($"IlgpuBackend.{op}: argmax must be int64, got {argmax.DType.Name()} ({d})");
        S(argmax, op);
        CheckLength(op, "argmax", argmax, shape.YLength, d);
    }

    /// <inheritdoc/>
    public void Pool2dForward(bool max, Storage x, Storage y, Storage? argmax, in Pool2dShape shape)
    {
        string op = max ? "MaxPool2d" : "AvgPool2d";
        var (xs, ys) = (Float(x, op), Float(y, op));
        CheckPool(op, shape, x, y, argmax, max);
        if (shape.YLength == 0) return;
        var geo = PoolGeometry.From(shape);
        if (max) _k.MaxPool.Value(Threads(op, shape.YLength), xs.Floats, ys.Floats, S(argmax!, op).Longs, geo);
        else _k.AvgPool.Value(Threads(op, shape.YLength), xs.Floats, ys.Floats, geo);
    }

    /// <inheritdoc/>
    public void Pool2dBackward(bool max, Storage dy, Storage? argmax, Storage dx, in Pool2dShape shape)
    {
        string op = max ? "MaxPool2dBackward" : "AvgPool2dBackward";
        var (dys, dxs) = (Float(dy, op), Float(dx, op));
        CheckPool(op, shape, dx, dy, argmax, max);
        if (shape.XLength == 0) return;
        var geo = PoolGeometry.From(shape);
        if (max) _k.MaxPoolBackward.Value(Threads(op, shape.XLength), dys.Floats, S(argmax!, op).Longs, dxs.Floats, geo);
        else _k.AvgPoolBackward.Value(Threads(op, shape.XLength), dys.Floats, dxs.Floats, geo);
    }

    private static void CheckBatchNorm(string op, int n, int c, int hw, params (Storage? S, string Name, bool PerChannel)[] operands)
    {
        string d = $"N={n} C={c} HW={hw}";
        if (n < 0 || c <= 0 || hw <= 0) throw new ArgumentException($"IlgpuBackend.{op}: invalid sizes {d}");
        long numel = (long)n * c * hw;
        if (numel > int.MaxValue) throw new ArgumentException($"IlgpuBackend.{op}: N·C·HW = {numel} is too large for 32-bit indexing ({d})");
        foreach (var (s, name, perChannel) in operands) CheckLength(op, name, s, perChannel ? c : numel, d);
    }

    /// <inheritdoc/>
    public void BatchNormForward(bool training, Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage invstd, Storage? runningMean, Storage? runningVar,
        int n, int c, int hw, double momentum, double eps, bool relu = false)
    {
        string op = relu ? "BatchNorm2dRelu" : "BatchNorm2d";
        var (xs, ys) = (Float(x, op), Float(y, op));
        var (gs, bs) = (gamma is null ? null : Float(gamma, op), beta is null ? null : Float(beta, op));
        var (rm, rv) = (runningMean is null ? null : Float(runningMean, op), runningVar is null ? null : Float(runningVar, op));
        CheckBatchNorm(op, n, c, hw, (x, "x", false), (y, "y", false), (gamma, "gamma", true), (beta, "beta", true), (mean, "mean", true), (invstd, "invstd", true),
            (runningMean, "running mean", true), (runningVar, "running var", true));
        if ((rm is null) != (rv is null)) throw new ArgumentException($"IlgpuBackend.{op}: give both running statistics or neither");
        var args = new BatchNormArgs
        {
            N = n, C = c, Hw = hw, Momentum = (float)momentum, Eps = (float)eps,
            HasGamma = gs is null ? 0 : 1, HasBeta = bs is null ? 0 : 1, HasRunning = rm is null ? 0 : 1, Relu = relu ? 1 : 0,
        };
        long numel = (long)n * c * hw;
        var xv = xs.Floats;
        if (training)
        {
            if ((long)n * hw < 2) throw new ArgumentException($"IlgpuBackend.{op}: needs more than one value per channel in training mode, got N·H·W = {(long)n * hw}");
            var (mv, iv) = (Float(mean, op).Floats, Float(invstd, op).Floats);
            _k.BatchNormStats.Value(new KernelConfig(new Index1D(c), new Index1D(_k.GroupSize)), xv, mv, iv, rm?.Floats ?? mv, rv?.Floats ?? iv, args);
            _k.BatchNormNormalize.Value(Threads(op, numel), xv, ys.Floats, mv, iv, gs?.Floats ?? xv, bs?.Floats ?? xv, args, 0);
        }
        else
        {
            if (rm is null || rv is null) throw new ArgumentException($"IlgpuBackend.{op}: evaluation mode needs the running mean and variance");
            if (numel == 0) return;
            _k.BatchNormNormalize.Value(Threads(op, numel), xv, ys.Floats, rm.Floats, rv.Floats, gs?.Floats ?? xv, bs?.Floats ?? xv, args, 1);
        }
    }

    /// <inheritdoc/>
    public void BatchNormBackward(Storage dy, Storage x, Storage mean, Storage invstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int n, int c, int hw,
        Storage? reluOutput = null, Storage? beta = null)
    {
        string op = reluOutput is null ? "BatchNorm2dBackward" : "BatchNorm2dReluBackward";
        var (dys, xs, ms, iv, dxs) = (Float(dy, op), Float(x, op), Float(mean, op), Float(invstd, op), Float(dx, op));
        var ys = reluOutput is null ? dys : Float(reluOutput, op);
        var (gs, dgs, dbs) = (gamma is null ? null : Float(gamma, op), dgamma is null ? null : Float(dgamma, op), dbeta is null ? null : Float(dbeta, op));
        CheckBatchNorm(op, n, c, hw, (dy, "dy", false), (x, "x", false), (dx, "dx", false), (mean, "mean", true), (invstd, "invstd", true),
            (gamma, "gamma", true), (dgamma, "dgamma", true), (dbeta, "dbeta", true), (reluOutput, "relu output", false));
        if (n == 0)
        {
            // No values: the parameter gradients are empty sums, as on the CPU.
            if (dgamma is not null) Fill(dgamma, Layout.Contiguous([c]), 0);
            if (dbeta is not null) Fill(dbeta, Layout.Contiguous([c]), 0);
            return;
        }
        var args = new BatchNormArgs { N = n, C = c, Hw = hw, HasGamma = gs is null ? 0 : 1, WantDGamma = dgs is null ? 0 : 1, WantDBeta = dbs is null ? 0 : 1, Relu = reluOutput is null ? 0 : 1 };
        var coef = Allocate(DType.Float32, 3L * c);
        try
        {
            var cv = S(coef, op).Floats;
            _k.BatchNormBackwardSums.Value(new KernelConfig(new Index1D(c), new Index1D(_k.GroupSize)), dys.Floats, ys.Floats, xs.Floats, ms.Floats, iv.Floats, gs?.Floats ?? cv,
                cv, dgs?.Floats ?? cv, dbs?.Floats ?? cv, args);
            _k.BatchNormDx.Value(Threads(op, (long)n * c * hw), dys.Floats, ys.Floats, xs.Floats, cv, dxs.Floats, c, hw, args.Relu);
        }
        finally { coef.Release(); }
    }

    /// <inheritdoc/>
    public void ReluBackward(Storage dy, Storage y, Storage dx, long count)
    {
        const string op = "ReluBackward";
        var (dys, ys, dxs) = (Float(dy, op), Float(y, op), Float(dx, op));
        string d = $"count={count}";
        foreach (var (s, name) in new[] { (dy, "dy"), (y, "y"), (dx, "dx") }) CheckLength(op, name, s, count, d);
        if (count == 0) return;
        _k.ReluBackward.Value(Threads(op, count), dys.Floats, ys.Floats, dxs.Floats);
    }

    /// <inheritdoc/>
    public void AddRelu(Storage a, Storage b, Storage y, long count)
    {
        const string op = "AddRelu";
        var (sa, sb, sy) = (Float(a, op), Float(b, op), Float(y, op));
        foreach (var (s, name) in new[] { (a, "a"), (b, "b"), (y, "y") }) CheckLength(op, name, s, count, $"count={count}");
        if (count == 0) return;
        _k.AddRelu.Value(Threads(op, count), sa.Floats, sb.Floats, sy.Floats);
    }

    /// <inheritdoc/>
    public void ScaleAddRelu(Storage x, Storage s, Storage r, Storage y, int runs, int runLength)
    {
        const string op = "ScaleAddRelu";
        var (sx, ss, sr, sy) = (Float(x, op), Float(s, op), Float(r, op), Float(y, op));
        long count = CheckRuns(op, runs, runLength);
        string d = $"runs={runs} runLength={runLength}";
        foreach (var (st, name, need) in new[] { (x, "x", count), (s, "s", (long)runs), (r, "r", count), (y, "y", count) }) CheckLength(op, name, st, need, d);
        if (count == 0) return;
        _k.ScaleAddRelu.Value(Threads(op, count), sx.Floats, ss.Floats, sr.Floats, sy.Floats, runLength);
    }

    /// <inheritdoc/>
    public void ScaleAddReluBackward(Storage dy, Storage y, Storage x, Storage s, Storage? dx, Storage? ds, Storage? dr, int runs, int runLength)
    {
        const string op = "ScaleAddReluBackward";
        var (sdy, sy, sx, ss) = (Float(dy, op), Float(y, op), Float(x, op), Float(s, op));
        var (sdx, sds, sdr) = (dx is null ? null : Float(dx, op), ds is null ? null : Float(ds, op), dr is null ? null : Float(dr, op));
        long count = CheckRuns(op, runs, runLength);
        string d = $"runs={runs} runLength={runLength}";
        foreach (var (st, name, need) in new[] { (dy, "dy", count), (y, "y", count), (x, "x", count), (s, "s", (long)runs), (dx, "dx", count), (ds, "ds", (long)runs), (dr, "dr", count) })
            CheckLength(op, name, st, need, d);
        if (runs == 0 || (sdx ?? sds ?? sdr) is null) return;
        if (runLength == 0)
        {
            // Empty runs: ds is an empty sum per run, as on the CPU.
            if (ds is not null) Fill(ds, Layout.Contiguous([runs]), 0);
            return;
        }
        var args = new ScaleAddReluArgs { RunLength = runLength, WantDx = sdx is null ? 0 : 1, WantDs = sds is null ? 0 : 1, WantDr = sdr is null ? 0 : 1 };
        var none = sdy.Floats;   // stands in for the outputs not wanted; the kernel never touches it through them
        _k.ScaleAddReluBackward.Value(new KernelConfig(new Index1D(runs), new Index1D(_k.GroupSize)), sdy.Floats, sy.Floats, sx.Floats, ss.Floats,
            sdx?.Floats ?? none, sds?.Floats ?? none, sdr?.Floats ?? none, args);
    }

    private static long CheckRuns(string op, int runs, int runLength)
    {
        if (runs < 0 || runLength < 0) throw new ArgumentException($"IlgpuBackend.{op}: invalid sizes runs={runs} runLength={runLength}");
        return (long)runs * runLength;
    }
}
