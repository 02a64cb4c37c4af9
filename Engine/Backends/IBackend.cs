using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

/// <summary>Reductions over axes.</summary>
public enum ReduceOp
{
    /// <summary>Sum of the elements.</summary>
    Sum,
    /// <summary>Largest element (NaN propagates).</summary>
    Max,
    /// <summary>Smallest element (NaN propagates).</summary>
    Min,
}

/// <summary>
/// One operand of a batched matrix product as the GEMM kernels see it: matrix <c>i</c> of the batch starts
/// at <c>Offset + i*BatchStride</c> (0 broadcasts one matrix), rows are <c>Ld</c> apart, and
/// <c>Transposed</c> says the matrix is stored as its transpose (a transposed view, no copy).
/// </summary>
public readonly record struct MatrixOperand(long Offset, long BatchStride, int Ld, bool Transposed);

/// <summary>
/// What a device must implement. Engine resolves shapes, broadcasting, axes and views, then calls
/// one of these with storages and <see cref="Layout"/>s; a backend never sees a Tensor. Outputs
/// (<c>dst</c>) are contiguous storages of the op's result shape unless a layout is given.
/// One implementation per device family: <see cref="CpuBackend"/> (SIMD kernels) and IlgpuBackend.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>The device this backend computes on.</summary>
    Device Device { get; }

    /// <summary>Waits until every op queued on the device has finished (a no-op on the CPU, where ops are synchronous).</summary>
    void Synchronize();

    /// <summary>Uninitialised storage of <paramref name="length"/> elements.</summary>
    Storage Allocate(DType dtype, long length);

    /// <summary>Copies host data into the first <c>src.Length</c> elements of <paramref name="dst"/>.</summary>
    void Upload<T>(ReadOnlySpan<T> src, Storage dst) where T : unmanaged;

    /// <summary>Copies <c>dst.Length</c> elements starting at <paramref name="offset"/> of <paramref name="src"/> to the host.</summary>
    void Download<T>(Storage src, long offset, Span<T> dst) where T : unmanaged;

    /// <summary>Sets every element of a strided view to <paramref name="value"/>.</summary>
    void Fill(Storage dst, Layout layout, double value);

    /// <summary>Copies a strided view into another of the same shape, converting the dtype if they differ.</summary>
    void Copy(Storage src, Layout srcLayout, Storage dst, Layout dstLayout);

    /// <summary>dst = op(src, scalar) element-wise; dst is contiguous with src's shape and dtype.</summary>
    void Unary(UnaryOp op, double scalar, Storage src, Layout srcLayout, Storage dst);

    /// <summary>
    /// dst = op(a, b); both layouts are already broadcast to the output shape (stride 0 on expanded dims). A bool dst
    /// receives comparisons of a and b (same dtype) or the logical ops of two bool operands.
    /// </summary>
    void Binary(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst);

    /// <summary>dst = cond != 0 ? a : b (cond bool, float32, float64 or int64); all three layouts broadcast to the output shape.</summary>
    void Where(Storage cond, Layout condLayout, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst);

    /// <summary>Reduces the trailing dims of <paramref name="layout"/> after the first <paramref name="keptRank"/>; dst has shape Shape[..keptRank].</summary>
    void Reduce(ReduceOp op, Storage src, Layout layout, int keptRank, Storage dst);

    /// <summary>Index (int64) of the max (or min) along the last dim of <paramref name="layout"/>; first index wins ties.</summary>
    void ArgReduce(ReduceOp op, Storage src, Layout layout, Storage dst);

    /// <summary>
    /// Indices (int64) of the <paramref name="k"/> largest (or smallest, when <paramref name="largest"/> is false)
    /// elements along the last dim of <paramref name="layout"/>, in order: largest (smallest) first, ties by lower
    /// index, NaN counted as larger than every number. dst is contiguous with shape Shape[..^1] + [k]; 0 &lt; k &lt;= Shape[^1].
    /// </summary>
    void TopK(Storage src, Layout layout, int k, bool largest, Storage dst);

    /// <summary>C[i] = A[i] @ B[i] for i &lt; batch; C is contiguous [batch, m, n] starting at element 0.</summary>
    void MatMul(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage c, int batch, int m, int n, int k);

    /// <summary>
    /// C = A @ B + bias, the n values of <paramref name="bias"/> (from element <paramref name="biasOffset"/>) added to
    /// every row; C is contiguous [m, n] from element 0. A Linear layer's forward: where the backend can, the bias is
    /// added as the product is written, with no second pass over C.
    /// </summary>
    void MatMulBias(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage bias, long biasOffset, Storage c, int m, int n, int k);

    /// <summary>Softmax (or log-softmax) of each contiguous row of length cols.</summary>
    void Softmax(Storage src, Storage dst, int rows, int cols, bool log);

    /// <summary>
    /// Layer normalisation of each contiguous row; gamma/beta may be null; writes mean and 1/std per row. With a
    /// <paramref name="residual"/>, the rows normalised are those of x + residual, written to <paramref name="sum"/>
    /// in the same pass (a pre-norm block's residual add fused with the next layer norm).
    /// </summary>
    void LayerNorm(Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage rstd, int rows, int cols, double eps, Storage? residual = null, Storage? sum = null);

    /// <summary>
    /// Layer-norm backward over contiguous rows: dx from dy, x and the saved mean/rstd and gamma (null for none);
    /// dgamma and dbeta (when given) are overwritten with the parameter gradients. With an <paramref name="addend"/>
    /// (the gradient x already has from another consumer), dx = addend + the layer-norm gradient, in the same pass.
    /// </summary>
    void LayerNormBackward(Storage dy, Storage x, Storage mean, Storage rstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int rows, int cols, Storage? addend = null);

    /// <summary>
    /// Cross-entropy forward over contiguous logits [outer, classes, inner] (layout and formulas in
    /// Kernels/Cpu/CrossEntropy.cs): int64 class targets [outer·inner] or probabilities shaped like the logits, and
    /// optional class weights [classes]. Writes lse and rowScale per position (kept for the backward pass), the
    /// per-position losses to <paramref name="loss"/> for <see cref="Reduction.None"/> or their mean or sum to
    /// <c>loss[0]</c>, and the 'mean' denominator (total weight of the kept targets) to <c>denominator[0]</c>.
    /// Everything stays on the device: a training step never waits for the host.
    /// </summary>
    void CrossEntropyForward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage loss, Storage denominator,
        CrossEntropyProblem problem, Reduction reduction);

    /// <summary>
    /// dlogits of the cross-entropy from the saved lse and rowScale: <paramref name="gradOutput"/> holds one value per
    /// position for <see cref="Reduction.None"/>, else one, divided by <c>denominator[0]</c> for <see cref="Reduction.Mean"/>
    /// (read on the device).
    /// </summary>
    void CrossEntropyBackward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage gradOutput, Storage denominator,
        Storage dlogits, CrossEntropyProblem problem, Reduction reduction);

    /// <summary>
    /// dst[o, j, i] = src[o, index[j], i] for a contiguous src viewed as [outer, axisSize, inner] and a contiguous
    /// int64 index of length <paramref name="count"/>; the caller has checked the indices are in range.
    /// </summary>
    void IndexSelect(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst);

    /// <summary>
    /// PyTorch's gather along the middle dim: dst[o, j, i] = src[o, index[o, j, i], i], with src contiguous
    /// [outer, axisSize, inner] and index/dst contiguous [outer, count, inner].
    /// </summary>
    void Gather(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst);

    /// <summary>In place, fused: one Adam/AdamW step over <paramref name="length"/> contiguous elements of param, grad and both moments.</summary>
    void AdamUpdate(Storage param, Storage grad, Storage expAvg, Storage expAvgSq, long length, AdamHyper hyper);

    /// <summary>In place, fused: one SGD step (momentum buffer may be null when Momentum is 0).</summary>
    void SgdUpdate(Storage param, Storage grad, Storage? momentumBuffer, long length, SgdHyper hyper);

    /// <summary>Largest head dimension the fused attention kernels of this backend take (larger heads take the composite path).</summary>
    int AttentionMaxDim { get; }

    /// <summary>The most elements one storage of <paramref name="dtype"/> can hold on this backend's device.</summary>
    long MaxElements(DType dtype);

    /// <summary>
    /// Fused attention forward: O and the per-row log-sum-exp for q/k/v/o described by their operands
    /// (d contiguous; k and v have shape.KeyValueHeads heads). <paramref name="mask"/> is null or a storage of
    /// this device and of q's dtype holding an additive mask placed by <paramref name="maskOperand"/> (broadcast
    /// dims have stride 0; -inf hides a key), so no mask crosses to the host or is expanded.
    /// </summary>
    void AttentionForward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand);

    /// <summary>Fused attention backward: dQ, dK, dV (overwritten) from dO and the forward's inputs, mask, output and lse.</summary>
    void AttentionBackward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage dout, in AttentionOperand doo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand,
        Storage dq, in AttentionOperand dqo, Storage dk, in AttentionOperand dko, Storage dv, in AttentionOperand dvo);

    /// <summary>y = conv2d(x, w) + bias over contiguous NCHW storages (bias may be null).</summary>
    void Conv2dForward(Storage x, Storage w, Storage? bias, Storage y, in Conv2dShape shape);

    /// <summary>Convolution backward: dx (when not null) and dw, dbias (when not null), all overwritten.</summary>
    void Conv2dBackward(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in Conv2dShape shape);

    /// <summary>Max (with int64 argmax per output) or average pooling forward.</summary>
    void Pool2dForward(bool max, Storage x, Storage y, Storage? argmax, in Pool2dShape shape);

    /// <summary>Pooling backward (dx overwritten).</summary>
    void Pool2dBackward(bool max, Storage dy, Storage? argmax, Storage dx, in Pool2dShape shape);

    /// <summary>
    /// BatchNorm2d forward over [n, c, hw]: in training, batch statistics (written to mean/invstd, running
    /// stats updated when given); otherwise the running statistics. With <paramref name="relu"/> the output is
    /// max(0, BN(x)) in the same pass (fused BatchNorm + ReLU).
    /// </summary>
    void BatchNormForward(bool training, Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage invstd, Storage? runningMean, Storage? runningVar,
        int n, int c, int hw, double momentum, double eps, bool relu = false);

    /// <summary>
    /// BatchNorm2d training-mode backward (outputs overwritten; dgamma/dbeta may be null). With
    /// <paramref name="reluOutput"/> (the fused BatchNorm + ReLU's output) dy is taken where that output is &gt; 0, 0 elsewhere;
    /// a backend may instead recompute that mask from x, the statistics, gamma and <paramref name="beta"/> (the CPU does).
    /// </summary>
    void BatchNormBackward(Storage dy, Storage x, Storage mean, Storage invstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int n, int c, int hw,
        Storage? reluOutput = null, Storage? beta = null);

    /// <summary>ReLU backward from its output: dx = dy where y &gt; 0, else 0, over <paramref name="count"/> contiguous elements.</summary>
    void ReluBackward(Storage dy, Storage y, Storage dx, long count);

    /// <summary>The fused residual add and ReLU: y = max(0, a + b) over <paramref name="count"/> contiguous elements.</summary>
    void AddRelu(Storage a, Storage b, Storage y, long count);

    /// <summary>
    /// Squeeze-and-Excitation's recalibration, the residual add and the ReLU in one pass: y = max(0, x·s[i] + r) over
    /// <paramref name="runs"/> runs of <paramref name="runLength"/> contiguous values, one scale s[i] per run.
    /// </summary>
    void ScaleAddRelu(Storage x, Storage s, Storage r, Storage y, int runs, int runLength);

    /// <summary>
    /// The gradient of <see cref="ScaleAddRelu"/> from the output gradient and the saved output y: with d = dy·[y &gt; 0],
    /// dr = d, dx = d·s[run] and ds[run] = Σ_run d·x, each written only when its storage is given (x is read only for ds).
    /// </summary>
    void ScaleAddReluBackward(Storage dy, Storage y, Storage x, Storage s, Storage? dx, Storage? ds, Storage? dr, int runs, int runLength);

    /// <summary>
    /// dst[i] = 1/(1-p) or 0 for the first <paramref name="length"/> elements: the dropout keep-mask drawn from
    /// <paramref name="seed"/> by the counter-based hash of Kernels.RandomMask, identical on every backend.
    /// </summary>
    void DropoutMask(Storage dst, long length, double p, ulong seed);

    /// <summary>
    /// Checks that each of the first <paramref name="count"/> int64 values of <paramref name="index"/> lies in
    /// [0, <paramref name="size"/>) or equals <paramref name="ignoreIndex"/> when one is given; a violation throws
    /// ArgumentOutOfRangeException("{op}: index v is out of range for {what} of size {size}"). The CPU checks at once.
    /// A device checks on the device and reports at its next <see cref="Synchronize"/> or <see cref="Download{T}"/>,
    /// as CUDA's device-side asserts do, so a training step never waits for the host; until then the index kernels
    /// read nothing outside their input (an out-of-range index yields 0).
    /// </summary>
    void CheckIndexRange(Storage index, long count, long size, long? ignoreIndex, string op, string what);

    /// <summary>The adjoint of <see cref="IndexSelect"/>: dst[o, index[j], i] += src[o, j, i] (repeated indices accumulate).</summary>
    void IndexAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src);

    /// <summary>The adjoint of <see cref="Gather"/>: dst[o, index[o, j, i], i] += src[o, j, i].</summary>
    void ScatterAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src);
}

/// <summary>Steps that every backend composes from its own primitives in the same way.</summary>
internal static class BackendComposites
{
    /// <summary>
    /// C [m, n] (contiguous from element 0) += the n values of <paramref name="bias"/> from <paramref name="biasOffset"/>
    /// on every row, in place: the second half of <see cref="IBackend.MatMulBias"/> where the product cannot add it.
    /// </summary>
    public static void AddBiasRows(this IBackend backend, Storage c, int m, int n, Storage bias, long biasOffset)
        => backend.Binary(BinaryOp.Add, c, new Layout([m, n], [n, 1], 0), bias, new Layout([m, n], [0, 1], biasOffset), c);
}
