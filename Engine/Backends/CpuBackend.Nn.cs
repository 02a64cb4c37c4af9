using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void MatMul(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage c, int batch, int m, int n, int k)
    {
        switch (a.DType)
        {
            case DType.Float32 when batch == 1 && !aOp.Transposed && bOp.Transposed:
                // Against a Linear weight: a decoder step's few rows stream W once, without packing.
                Gemv.MultiplyByWeight(m, n, k, Data<float>(a).AsSpan((int)aOp.Offset), aOp.Ld, Data<float>(b).AsSpan((int)bOp.Offset), bOp.Ld, Data<float>(c), n);
                break;
            case DType.Float32:
                Gemm.SgemmStridedBatched(batch, aOp.Transposed, bOp.Transposed, m, n, k, 1f,
                    Data<float>(a).AsSpan((int)aOp.Offset), aOp.Ld, aOp.BatchStride,
                    Data<float>(b).AsSpan((int)bOp.Offset), bOp.Ld, bOp.BatchStride,
                    0f, Data<float>(c), n, (long)m * n);
                break;
            case DType.Float64:
                Gemm.DgemmStridedBatched(batch, aOp.Transposed, bOp.Transposed, m, n, k, 1.0,
                    Data<double>(a).AsSpan((int)aOp.Offset), aOp.Ld, aOp.BatchStride,
                    Data<double>(b).AsSpan((int)bOp.Offset), bOp.Ld, bOp.BatchStride,
                    0.0, Data<double>(c), n, (long)m * n);
                break;
            default: throw new NotSupportedException($"MatMul: not defined for {a.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void MatMulBias(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage bias, long biasOffset, Storage c, int m, int n, int k)
    {
        if (a.DType == DType.Float32)
        {
            // The bias is added as the sums are stored: by the blocked GEMM's tile store, or by Gemv against a Linear
            // weight (a decoder step's few rows), the two paths MatMul takes.
            var biasRow = Data<float>(bias).AsSpan((int)biasOffset, n);
            if (!aOp.Transposed && bOp.Transposed)
                Gemv.MultiplyByWeight(m, n, k, Data<float>(a).AsSpan((int)aOp.Offset), aOp.Ld, Data<float>(b).AsSpan((int)bOp.Offset), bOp.Ld, Data<float>(c), n, biasRow);
            else
                Gemm.SgemmStridedBatched(1, aOp.Transposed, bOp.Transposed, m, n, k, 1f, Data<float>(a).AsSpan((int)aOp.Offset), aOp.Ld, 0,
                    Data<float>(b).AsSpan((int)bOp.Offset), bOp.Ld, 0, 0f, Data<float>(c), n, (long)m * n, biasRow);
            return;
        }
        // float64: the product, then the bias row by row.
        MatMul(a, aOp, b, bOp, c, 1, m, n, k);
        this.AddBiasRows(c, m, n, bias, biasOffset);
    }

    /// <inheritdoc/>
    public void Softmax(Storage src, Storage dst, int rows, int cols, bool log)
    {
        switch (src.DType)
        {
            case DType.Float32:
                if (log) Kernels.Cpu.Softmax.LogSoftmaxForward(Data<float>(src).AsSpan(0, rows * cols), Data<float>(dst).AsSpan(0, rows * cols), rows, cols);
                else Kernels.Cpu.Softmax.Forward(Data<float>(src).AsSpan(0, rows * cols), Data<float>(dst).AsSpan(0, rows * cols), rows, cols);
                break;
            case DType.Float64:
                if (log) Kernels.Cpu.Softmax.LogSoftmaxForward(Data<double>(src).AsSpan(0, rows * cols), Data<double>(dst).AsSpan(0, rows * cols), rows, cols);
                else Kernels.Cpu.Softmax.Forward(Data<double>(src).AsSpan(0, rows * cols), Data<double>(dst).AsSpan(0, rows * cols), rows, cols);
                break;
            default: throw new NotSupportedException($"Softmax: not defined for {src.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void LayerNorm(Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage rstd, int rows, int cols, double eps, Storage? residual = null, Storage? sum = null)
    {
        int n = rows * cols;
        if ((residual is null) != (sum is null)) throw new ArgumentException("LayerNorm: a residual needs a sum to write, and a sum a residual");
        switch (x.DType)
        {
            case DType.Float32:
                if (residual is null)
                    Kernels.Cpu.LayerNorm.Forward(Data<float>(x).AsSpan(0, n),
                        gamma is null ? default : Data<float>(gamma).AsSpan(0, cols), beta is null ? default : Data<float>(beta).AsSpan(0, cols),
                        Data<float>(y).AsSpan(0, n), Data<float>(mean).AsSpan(0, rows), Data<float>(rstd).AsSpan(0, rows), rows, cols, (float)eps);
                else
                    Kernels.Cpu.LayerNorm.ForwardWithResidual(Data<float>(x).AsSpan(0, n), Data<float>(residual).AsSpan(0, n),
                        gamma is null ? default : Data<float>(gamma).AsSpan(0, cols), beta is null ? default : Data<float>(beta).AsSpan(0, cols),
                        Data<float>(sum!).AsSpan(0, n), Data<float>(y).AsSpan(0, n), Data<float>(mean).AsSpan(0, rows), Data<float>(rstd).AsSpan(0, rows), rows, cols, (float)eps);
                break;
            case DType.Float64:
                Kernels.Cpu.LayerNorm.ForwardWithResidual(Data<double>(x).AsSpan(0, n), residual is null ? default : Data<double>(residual).AsSpan(0, n),
                    gamma is null ? default : Data<double>(gamma).AsSpan(0, cols), beta is null ? default : Data<double>(beta).AsSpan(0, cols),
                    sum is null ? default : Data<double>(sum).AsSpan(0, n), Data<double>(y).AsSpan(0, n), Data<double>(mean).AsSpan(0, rows), Data<double>(rstd).AsSpan(0, rows), rows, cols, eps);
                break;
            default: throw new NotSupportedException($"LayerNorm: not defined for {x.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void LayerNormBackward(Storage dy, Storage x, Storage mean, Storage rstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int rows, int cols, Storage? addend = null)
    {
        int n = rows * cols;
        switch (x.DType)
        {
            case DType.Float32:
            {
                var dg = dgamma is null ? default : Data<float>(dgamma).AsSpan(0, cols);
                var db = dbeta is null ? default : Data<float>(dbeta).AsSpan(0, cols);
                dg.Clear(); db.Clear();
                Kernels.Cpu.LayerNorm.Backward(Data<float>(dy).AsSpan(0, n), Data<float>(x).AsSpan(0, n), Data<float>(mean).AsSpan(0, rows), Data<float>(rstd).AsSpan(0, rows),
                    gamma is null ? default : Data<float>(gamma).AsSpan(0, cols), addend is null ? default : Data<float>(addend).AsSpan(0, n), Data<float>(dx).AsSpan(0, n), dg, db, rows, cols);
                break;
            }
            case DType.Float64:
            {
                var dg = dgamma is null ? default : Data<double>(dgamma).AsSpan(0, cols);
                var db = dbeta is null ? default : Data<double>(dbeta).AsSpan(0, cols);
                dg.Clear(); db.Clear();
                Kernels.Cpu.LayerNorm.Backward(Data<double>(dy).AsSpan(0, n), Data<double>(x).AsSpan(0, n), Data<double>(mean).AsSpan(0, rows), Data<double>(rstd).AsSpan(0, rows),
                    gamma is null ? default : Data<double>(gamma).AsSpan(0, cols), addend is null ? default : Data<double>(addend).AsSpan(0, n), Data<double>(dx).AsSpan(0, n), dg, db, rows, cols);
                break;
            }
            default: throw new NotSupportedException($"LayerNorm: not defined for {x.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void CrossEntropyForward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage loss, Storage denominator,
        CrossEntropyProblem problem, Reduction reduction)
    {
        switch (logits.DType)
        {
            case DType.Float32: CrossEntropyForwardT<float>(logits, targets, weight, lse, rowScale, loss, denominator, problem, reduction); break;
            case DType.Float64: CrossEntropyForwardT<double>(logits, targets, weight, lse, rowScale, loss, denominator, problem, reduction); break;
            default: throw new NotSupportedException($"CrossEntropy: not defined for {logits.DType.Name()} logits");
        }
    }

    private static void CrossEntropyForwardT<T>(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage loss, Storage denominator,
        CrossEntropyProblem p, Reduction reduction) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        int n = (int)p.Logits, positions = (int)p.Positions;
        var perPosition = reduction == Reduction.None ? Data<T>(loss).AsSpan(0, positions) : default;
        double total = Kernels.Cpu.CrossEntropy.Forward<T>(Data<T>(logits).AsSpan(0, n),
            p.ProbabilityTargets ? default : Data<long>(targets).AsSpan(0, positions), p.ProbabilityTargets ? Data<T>(targets).AsSpan(0, n) : default,
            weight is null ? default : Data<T>(weight).AsSpan(0, p.Classes), Data<T>(lse).AsSpan(0, positions), Data<T>(rowScale).AsSpan(0, positions),
            perPosition, p, out double denom);
        // 0/0 is NaN when every target is ignored, as PyTorch's mean.
        if (reduction != Reduction.None) Data<T>(loss)[0] = T.CreateTruncating(reduction == Reduction.Mean ? total / denom : total);
        Data<T>(denominator)[0] = T.CreateTruncating(denom);
    }

    /// <inheritdoc/>
    public void CrossEntropyBackward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage gradOutput, Storage denominator,
        Storage dlogits, CrossEntropyProblem problem, Reduction reduction)
    {
        switch (logits.DType)
        {
            case DType.Float32: CrossEntropyBackwardT<float>(logits, targets, weight, lse, rowScale, gradOutput, denominator, dlogits, problem, reduction); break;
            case DType.Float64: CrossEntropyBackwardT<double>(logits, targets, weight, lse, rowScale, gradOutput, denominator, dlogits, problem, reduction); break;
            default: throw new NotSupportedException($"CrossEntropyBackward: not defined for {logits.DType.Name()} logits");
        }
    }

    private static void CrossEntropyBackwardT<T>(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage gradOutput, Storage denominator,
        Storage dlogits, CrossEntropyProblem p, Reduction reduction) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        int n = (int)p.Logits, positions = (int)p.Positions;
        Kernels.Cpu.CrossEntropy.Backward<T>(Data<T>(logits).AsSpan(0, n),
            p.ProbabilityTargets ? default : Data<long>(targets).AsSpan(0, positions), p.ProbabilityTargets ? Data<T>(targets).AsSpan(0, n) : default,
            weight is null ? default : Data<T>(weight).AsSpan(0, p.Classes), Data<T>(lse).AsSpan(0, positions), Data<T>(rowScale).AsSpan(0, positions),
            Data<T>(gradOutput).AsSpan(0, reduction == Reduction.None ? positions : 1), reduction == Reduction.Mean ? Data<T>(denominator)[0] : T.One,
            Data<T>(dlogits).AsSpan(0, n), p);
    }

    /// <inheritdoc/>
    public void DropoutMask(Storage dst, long length, double p, ulong seed)
    {
        float fp = (float)p, scale = (float)(1 / (1 - p));
        if (dst.DType == DType.Float32)
        {
            Kernels.Cpu.DropoutMask.Fill(Data<float>(dst).AsSpan(0, checked((int)length)), seed, fp, scale);
        }
        else if (dst.DType == DType.Float64)
        {
            var d = Data<double>(dst);
            double dscale = 1 / (1 - p);
            for (long i = 0; i < length; i++) d[i] = Kernels.RandomMask.KeepScale(seed, i, fp, 1f) * dscale;
        }
        else throw new NotSupportedException($"DropoutMask: dtype must be float32 or float64, got {dst.DType.Name()}");
    }

    /// <inheritdoc/>
    public void CheckIndexRange(Storage index, long count, long size, long? ignoreIndex, string op, string what)
    {
        var idx = Data<long>(index);
        for (long i = 0; i < count; i++)
        {
            long v = idx[i];
            if ((v < 0 || v >= size) && v != ignoreIndex)
                throw new ArgumentOutOfRangeException("index", $"{op}: index {v} is out of range for {what} of size {size}");
        }
    }

    /// <inheritdoc/>
    public void IndexSelect(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst)
    {
        var idx = Data<long>(index);
        switch (src.DType)
        {
            case DType.Float32: IndexSelectT(Data<float>(src), outer, axisSize, inner, idx, count, Data<float>(dst)); break;
            case DType.Float64: IndexSelectT(Data<double>(src), outer, axisSize, inner, idx, count, Data<double>(dst)); break;
            case DType.Int64: IndexSelectT(Data<long>(src), outer, axisSize, inner, idx, count, Data<long>(dst)); break;
            case DType.Bool: IndexSelectT(Data<bool>(src), outer, axisSize, inner, idx, count, Data<bool>(dst)); break;
            default: throw new NotSupportedException($"IndexSelect: dtype {src.DType.Name()} is not supported on {Device}");
        }
    }

    // Each selected slice is a contiguous run of `inner` elements: one block copy per index (an embedding row).
    private static void IndexSelectT<T>(T[] src, long outer, int axisSize, long inner, long[] idx, int count, T[] dst) where T : unmanaged
    {
        for (long o = 0; o < outer; o++)
            for (int j = 0; j < count; j++)
                src.AsSpan((int)((o * axisSize + idx[j]) * inner), (int)inner)
                   .CopyTo(dst.AsSpan((int)((o * count + j) * inner), (int)inner));
    }

    /// <inheritdoc/>
    public void Gather(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst)
    {
        var idx = Data<long>(index);
        switch (src.DType)
        {
            case DType.Float32: GatherT(Data<float>(src), outer, axisSize, inner, idx, count, Data<float>(dst)); break;
            case DType.Float64: GatherT(Data<double>(src), outer, axisSize, inner, idx, count, Data<double>(dst)); break;
            case DType.Int64: GatherT(Data<long>(src), outer, axisSize, inner, idx, count, Data<long>(dst)); break;
            case DType.Bool: GatherT(Data<bool>(src), outer, axisSize, inner, idx, count, Data<bool>(dst)); break;
            default: throw new NotSupportedException($"Gather: dtype {src.DType.Name()} is not supported on {Device}");
        }
    }

    /// <inheritdoc/>
    public void IndexAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src)
    {
        var idx = Data<long>(index);
        switch (dst.DType)
        {
            case DType.Float32: IndexAddT(Data<float>(dst), outer, axisSize, inner, idx, count, Data<float>(src)); break;
            case DType.Float64: IndexAddT(Data<double>(dst), outer, axisSize, inner, idx, count, Data<double>(src)); break;
            default: throw new NotSupportedException($"IndexAdd: not defined for {dst.DType.Name()} tensors");
        }
    }

    private static void IndexAddT<T>(T[] dst, long outer, int axisSize, long inner, long[] idx, int count, T[] src) where T : unmanaged, System.Numerics.INumber<T>
    {
        // Sequential over j so that repeated indices (the same token twice in a batch) accumulate without races.
        for (long o = 0; o < outer; o++)
            for (int j = 0; j < count; j++)
            {
                var row = dst.AsSpan((int)((o * axisSize + idx[j]) * inner), (int)inner);
                System.Numerics.Tensors.TensorPrimitives.Add(row, src.AsSpan((int)((o * count + j) * inner), (int)inner), row);
            }
    }

    /// <inheritdoc/>
    public void ScatterAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src)
    {
        var idx = Data<long>(index);
        switch (dst.DType)
        {
            case DType.Float32: ScatterAddT(Data<float>(dst), outer, axisSize, inner, idx, count, Data<float>(src)); break;
            case DType.Float64: ScatterAddT(Data<double>(dst), outer, axisSize, inner, idx, count, Data<double>(src)); break;
            default: throw new NotSupportedException($"ScatterAdd: not defined for {dst.DType.Name()} tensors");
        }
    }

    private static void ScatterAddT<T>(T[] dst, long outer, int axisSize, long inner, long[] idx, int count, T[] src) where T : unmanaged, System.Numerics.INumber<T>
    {
        long p = 0;
        for (long o = 0; o < outer; o++)
            for (int j = 0; j < count; j++)
                for (long i = 0; i < inner; i++, p++)
                    dst[(o * axisSize + idx[p]) * inner + i] += src[p];
    }

    private static void GatherT<T>(T[] src, long outer, int axisSize, long inner, long[] idx, int count, T[] dst) where T : unmanaged
    {
        long p = 0;
        for (long o = 0; o < outer; o++)
            for (int j = 0; j < count; j++)
                for (long i = 0; i < inner; i++, p++)
                    dst[p] = src[(o * axisSize + idx[p]) * inner + i];
    }
}
