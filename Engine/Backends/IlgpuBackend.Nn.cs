using AttnCore.Kernels.Cpu;
using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// Matrix product, softmax, layer norm, cross-entropy, dropout masks and the index ops on ILGPU devices (the kernels:
// Kernels/Gpu/Gemm.cs, Softmax.cs, LayerNorm.cs, RowKernels.cs, CrossEntropy.cs, Random.cs, Index.cs).
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void MatMul(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage c, int batch, int m, int n, int k)
    {
        var (sa, sb, sc) = (Float(a, "MatMul"), Float(b, "MatMul"), Float(c, "MatMul"));
        if (batch < 0 || m < 0 || n < 0 || k < 0) throw new ArgumentException($"IlgpuBackend.MatMul: negative size batch={batch} m={m} n={n} k={k}");
        CheckOutput("MatMul", c, (long)batch * m * n);
        if (batch == 0 || m == 0 || n == 0) return;
        CheckOperand("a", a, aOp, batch, m, k);
        CheckOperand("b", b, bOp, batch, k, n);
        var args = new GemmArgs
        {
            M = m, N = n, K = k, Lda = aOp.Ld, Ldb = bOp.Ld, TransA = aOp.Transposed ? 1 : 0, TransB = bOp.Transposed ? 1 : 0,
            OffsetA = aOp.Offset, OffsetB = bOp.Offset, BatchStrideA = aOp.BatchStride, BatchStrideB = bOp.BatchStride,
        };
        // Grid z carries the batch: at most 65535 on CUDA.
        if (batch > 65535) throw new NotSupportedException($"IlgpuBackend.MatMul: batch {batch} exceeds one launch (65535) for {m}x{k} @ {k}x{n}");
        int t = _k.GemmTile;
        if (RegisterTiled(batch, m, n))
        {
            int block = _k.GemmBlock;
            var config = new KernelConfig(new Index3D((n + block - 1) / block, (m + block - 1) / block, batch), new Index3D(t, t, 1));
            _k.GemmRegisterTiled.Value(config, sa.Floats, sb.Floats, sc.Floats, args);
        }
        else
        {
            var config = new KernelConfig(new Index3D((n + t - 1) / t, (m + t - 1) / t, batch), new Index3D(t, t, 1));
            _k.Gemm.Value(config, sa.Floats, sb.Floats, sc.Floats, args);
        }
    }

    /// <inheritdoc/>
    public void MatMulBias(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage bias, long biasOffset, Storage c, int m, int n, int k)
    {
        // The product, then the bias as a broadcast add in place (one more pass over C; the GPU GEMMs have no epilogue).
        MatMul(a, aOp, b, bOp, c, 1, m, n, k);
        this.AddBiasRows(c, m, n, bias, biasOffset);
    }

    // The last element operand op touches must lie inside its storage (a GPU would read out of bounds silently).
    private static void CheckOperand(string name, Storage s, MatrixOperand op, int batch, int rows, int cols)
    {
        if (rows == 0 || cols == 0) return;
        long storedRows = op.Transposed ? cols : rows, storedCols = op.Transposed ? rows : cols;
        if (op.Ld < storedCols && storedRows > 1)
            throw new ArgumentException($"IlgpuBackend.MatMul: {name} has ld={op.Ld} < {storedCols} columns as stored ({rows}x{cols}, transposed={op.Transposed})");
        long last = op.Offset + (batch - 1) * op.BatchStride + (storedRows - 1) * op.Ld + storedCols - 1;
        long first = op.Offset + Math.Min(0, (batch - 1) * op.BatchStride);
        if (first < 0 || last >= s.Length)
            throw new ArgumentException($"IlgpuBackend.MatMul: {name} ({rows}x{cols}, batch={batch}, {op}) reaches elements [{first}, {last}] of a storage of {s.Length}");
    }

    /// <inheritdoc/>
    public void Softmax(Storage src, Storage dst, int rows, int cols, bool log)
    {
        string name = log ? "LogSoftmax" : "Softmax";
        var (s, d) = (Float(src, name), Float(dst, name));
        if (rows < 0 || cols < 0) throw new ArgumentException($"IlgpuBackend.{name}: negative size rows={rows} cols={cols}");
        long n = (long)rows * cols;
        if (src.Length < n || dst.Length < n) throw new ArgumentException($"IlgpuBackend.{name}: {rows}x{cols} needs {n} elements, src has {src.Length}, dst {dst.Length}");
        if (n == 0) return;
        bool warp = WarpRows(cols);
        _k.SoftmaxRows.For(warp)(RowLaunch(name, rows, warp), s.Floats, d.Floats, rows, cols, log ? 1 : 0);
    }

    // ---- Layer norm, cross-entropy ----------------------------------------------------------------------

    /// <inheritdoc/>
    public void LayerNorm(Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage rstd, int rows, int cols, double eps, Storage? residual = null, Storage? sum = null)
    {
        if (x.DType != DType.Float32) throw WrongType("LayerNorm", x.DType);
        if ((residual is null) != (sum is null)) throw new ArgumentException("LayerNorm: a residual needs a sum to write, and a sum a residual");
        var xv = S(x, "LayerNorm").Floats;
        if (rows == 0) return;
        bool warp = WarpRows(cols);
        // Absent gamma/beta/residual/sum: any valid view stands in; the kernel does not touch it.
        _k.LayerNormForward.For(warp)(RowLaunch("LayerNorm", rows, warp), xv, residual is null ? xv : S(residual, "LayerNorm").Floats, sum is null ? xv : S(sum, "LayerNorm").Floats,
            gamma is null ? xv : S(gamma, "LayerNorm").Floats, beta is null ? xv : S(beta, "LayerNorm").Floats,
            S(y, "LayerNorm").Floats, S(mean, "LayerNorm").Floats, S(rstd, "LayerNorm").Floats,
            new LayerNormArgs { Rows = rows, Cols = cols, Eps = (float)eps, HasGamma = gamma is null ? 0 : 1, HasBeta = beta is null ? 0 : 1, HasResidual = residual is null ? 0 : 1 });
    }
    /// <inheritdoc/>
    public void LayerNormBackward(Storage dy, Storage x, Storage mean, Storage rstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int rows, int cols, Storage? addend = null)
    {
        if (x.DType != DType.Float32) throw WrongType("LayerNormBackward", x.DType);
        const string op = "LayerNormBackward";
        var (dyv, xv, mv, rv) = (S(dy, op).Floats, S(x, op).Floats, S(mean, op).Floats, S(rstd, op).Floats);
        bool warp = WarpRows(cols);
        if (rows > 0)
            _k.LayerNormBackward.For(warp)(RowLaunch(op, rows, warp), dyv, xv, mv, rv, gamma is null ? xv : S(gamma, op).Floats, addend is null ? xv : S(addend, op).Floats, S(dx, op).Floats,
                new LayerNormArgs { Rows = rows, Cols = cols, HasGamma = gamma is null ? 0 : 1, HasAddend = addend is null ? 0 : 1 });
        if ((dgamma is null && dbeta is null) || cols == 0) return;
        // About 64K threads in stage 1 (enough to fill a GPU), at least 32 rows per chunk; chosen from the shape
        // alone, so every device adds in the same order.
        int chunks = (int)Math.Clamp(65536L / cols, 1, Math.Max(1, (rows + 31) / 32));
        int chunk = Math.Max(1, (rows + chunks - 1) / chunks);
        chunks = rows == 0 ? 1 : (rows + chunk - 1) / chunk;
        var partial = Allocate(DType.Float32, 2L * chunks * cols);
        try
        {
            var pv = S(partial, op).Floats;
            if (rows == 0) _k.Fill.Value(Threads(op, 2L * cols), pv, StridedIndex.Create([2 * cols], [1L], 0), 0f);
            else _k.LayerNormParamsPartial.Value(Threads(op, (long)chunks * cols), dyv, xv, mv, rv, pv, rows, cols, chunk);
            _k.LayerNormParamsFinish.Value(Threads(op, cols), pv, dgamma is null ? xv : S(dgamma, op).Floats, dbeta is null ? xv : S(dbeta, op).Floats,
                chunks, cols, dgamma is null ? 0 : 1, dbeta is null ? 0 : 1);
        }
        finally { partial.Release(); }
    }
    /// <inheritdoc/>
    public void CrossEntropyForward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage loss, Storage denominator,
        CrossEntropyProblem problem, Reduction reduction)
    {
        const string op = "CrossEntropy";
        var args = CrossEntropyKernelArgs(op, problem, weight, reduction);
        int positions = (int)problem.Positions;
        CheckOutput(op, loss, reduction == Reduction.None ? positions : 1);
        CheckOutput(op, lse, positions);
        CheckOutput(op, rowScale, positions);
        CheckOutput(op, denominator, 1);
        var (classTargets, probTargets, w, placeholder) = CrossEntropyInputs(op, logits, targets, weight, problem);
        // 'none' writes the losses straight into the output; the reductions sum a scratch buffer on the device.
        var rowLoss = reduction == Reduction.None ? null : Allocate(DType.Float32, Math.Max(positions, 1));
        var rowWeight = Allocate(DType.Float32, Math.Max(positions, 1));
        try
        {
            var lossView = rowLoss is null ? Float(loss, op).Floats : S(rowLoss, op).Floats;
            if (positions > 0)
            {
                bool warp = WarpRows(problem.Classes);
                _k.CrossEntropyForward.For(warp)(RowLaunch(op, positions, warp), Float(logits, op).Floats, classTargets, probTargets, w,
                    Float(lse, op).Floats, lossView, S(rowWeight, op).Floats, Float(rowScale, op).Floats, args);
            }
            int mode = reduction switch { Reduction.Mean => Kernels.Gpu.CrossEntropy.Mean, Reduction.Sum => Kernels.Gpu.CrossEntropy.Sum, _ => Kernels.Gpu.CrossEntropy.DenominatorOnly };
            _k.CrossEntropyReduce.Value(new KernelConfig(new Index1D(1), new Index1D(_k.GroupSize)), lossView, S(rowWeight, op).Floats, positions,
                Float(loss, op).Floats, Float(denominator, op).Floats, mode);
        }
        finally { rowLoss?.Release(); rowWeight.Release(); placeholder?.Release(); } // the pool hands buffers out again only to later launches on this stream
    }

    /// <inheritdoc/>
    public void CrossEntropyBackward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage gradOutput, Storage denominator,
        Storage dlogits, CrossEntropyProblem problem, Reduction reduction)
    {
        const string op = "CrossEntropyBackward";
        var args = CrossEntropyKernelArgs(op, problem, weight, reduction);
        CheckOutput(op, dlogits, problem.Logits);
        CheckOutput(op, gradOutput, reduction == Reduction.None ? problem.Positions : 1);
        if (problem.Logits == 0) return;
        var (classTargets, probTargets, w, placeholder) = CrossEntropyInputs(op, logits, targets, weight, problem);
        try
        {
            _k.CrossEntropyBackward.Value(Threads(op, problem.Logits), Float(logits, op).Floats, classTargets, probTargets, w, Float(lse, op).Floats,
                Float(rowScale, op).Floats, Float(gradOutput, op).Floats, Float(denominator, op).Floats, Float(dlogits, op).Floats, args);
        }
        finally { placeholder?.Release(); }
    }

    private CrossEntropyArgs CrossEntropyKernelArgs(string op, CrossEntropyProblem p, Storage? weight, Reduction reduction)
    {
        if (p.Positions > int.MaxValue) throw new NotSupportedException($"IlgpuBackend.{op}: {p.Positions} positions exceed one launch ({int.MaxValue})");
        return new CrossEntropyArgs
        {
            Outer = p.Outer, Classes = p.Classes, Inner = p.Inner, IgnoreIndex = p.IgnoreIndex, Smoothing = (float)p.LabelSmoothing,
            Probabilities = p.ProbabilityTargets ? 1 : 0, Weighted = weight is null ? 0 : 1,
            PerPosition = reduction == Reduction.None ? 1 : 0, Divide = reduction == Reduction.Mean ? 1 : 0,
        };
    }

    // The kernels take both kinds of target and a weight view: the unused ones are stood in for by the logits, or by
    // a one-element int64 placeholder (released by the caller) when there are no class targets.
    private (ArrayView<long> Classes, ArrayView<float> Probabilities, ArrayView<float> Weight, Storage? Placeholder) CrossEntropyInputs(
        string op, Storage logits, Storage targets, Storage? weight, CrossEntropyProblem p)
    {
        void Need(string op, string name, Storage s, long n)
        {
            if (s.Length < n) throw new ArgumentException($"IlgpuBackend.{op}: {name} has {s.Length} elements, [{p.Outer}, {p.Classes}, {p.Inner}] needs {n}");
        }
        Need(op, "logits", logits, p.Logits);
        var x = Float(logits, op).Floats;
        if (weight is not null) Need(op, "weight", weight, p.Classes);
        var w = weight is null ? x : Float(weight, op).Floats;
        if (p.ProbabilityTargets)
        {
            Need(op, "probability targets", targets, p.Logits);
            var placeholder = Allocate(DType.Int64, 1);
            return (S(placeholder, op).Longs, Float(targets, op).Floats, w, placeholder);
        }
        if (targets.DType != DType.Int64) throw WrongType(op, targets.DType);
        Need(op, "class targets", targets, p.Positions);
        return (S(targets, op).Longs, x, w, null);
    }

    // ---- Dropout masks and index ops ------------------------------------------------------------------

    /// <inheritdoc/>
    public void DropoutMask(Storage dst, long length, double p, ulong seed)
    {
        var d = Float(dst, "DropoutMask");
        CheckOutput("DropoutMask", dst, length);
        if (length == 0) return;
        _k.DropoutMask.Value(Threads("DropoutMask", length), d.Floats, seed, (float)p, (float)(1 / (1 - p)));
    }

    /// <inheritdoc/>
    public void CheckIndexRange(Storage index, long count, long size, long? ignoreIndex, string op, string what)
    {
        var s = S(index, op);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        if (count == 0) return;
        int id = FaultSite($"{op}: index {{0}} is out of range for {what} of size {size}");
        _k.CheckRange.Value(Threads(op, count), s.Longs, size, ignoreIndex ?? 0, ignoreIndex is null ? 0 : 1, _fault!.View, id);
    }

    /// <inheritdoc/>
    public void IndexSelect(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) =>
        LaunchIndex("IndexSelect", _k.IndexSelect, src, index, dst, outer * count * inner, axisSize, inner, count);
    /// <inheritdoc/>
    public void Gather(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) =>
        LaunchIndex("Gather", _k.Gather, src, index, dst, outer * count * inner, axisSize, inner, count);
    /// <inheritdoc/>
    public void IndexAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src)
    {
        // Few indices: every destination scans them all. Many: sort them once, then each destination reads its own run.
        if (count <= SortedIndexAddThreshold)
        {
            LaunchIndex("IndexAdd", _k.IndexAdd, src, index, dst, outer * axisSize * inner, axisSize, inner, count);
            return;
        }
        const string op = "IndexAdd";
        if (src.DType != DType.Float32 || dst.DType != DType.Float32) throw WrongType(op, src.DType != DType.Float32 ? src.DType : dst.DType);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        long n = outer * axisSize * inner;
        if (n == 0) return;
        int padded = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)count);
        var keys = Allocate(DType.Int64, padded);
        try
        {
            var kv = S(keys, op).Longs;
            _k.SortKeys.Value(new Index1D(padded), S(index, op).Longs, kv, count);
            for (int k = 2; k <= padded; k <<= 1)
                for (int j = k >> 1; j > 0; j >>= 1)
                    _k.BitonicStep.Value(new Index1D(padded / 2), kv, j, k);
            _k.IndexAddSorted.Value(Threads(op, n), S(src, op).Floats, kv, S(dst, op).Floats, axisSize, inner, count);
        }
        finally { keys.Release(); }
    }

    /// <summary>IndexAdd (the embedding adjoint) sorts its indices above this many (a setting for tests and benchmarks).</summary>
    public int SortedIndexAddThreshold { get; set; } = 64;
    /// <inheritdoc/>
    public void ScatterAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src) =>
        LaunchIndex("ScatterAdd", _k.ScatterAdd, src, index, dst, outer * axisSize * inner, axisSize, inner, count);

    // The Engine has checked the indices and sizes; float32 data and int64 indices only.
    private void LaunchIndex(string op, Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> kernel,
        Storage src, Storage index, Storage dst, long n, int axisSize, long inner, int count)
    {
        if (src.DType != DType.Float32 || dst.DType != DType.Float32) throw WrongType(op, src.DType != DType.Float32 ? src.DType : dst.DType);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        if (n == 0) return;
        kernel.Value(Threads(op, n), S(src, op).Floats, S(index, op).Longs, S(dst, op).Floats, axisSize, inner, count);
    }
}
