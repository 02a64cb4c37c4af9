using AttnCore.Backends;

namespace AttnCore;

// MatMul with batch broadcasting, and the row-wise neural-network kernels (softmax, layer norm).
public sealed partial class Tensor
{
    /// <summary>
    /// Matrix product with torch.matmul's rules: 1-d operands are promoted (and the added dim removed),
    /// leading batch dims broadcast. Transposed and batch-broadcast views reach the GEMM without copies.
    /// </summary>
    public Tensor MatMul(Tensor other)
    {
        SameDevice("MatMul", this, other);
        SameDType("MatMul", this, other);
        RequireFloat("MatMul");
        if (Rank == 0 || other.Rank == 0)
            throw new ArgumentException($"MatMul: both operands need at least 1 dim, got {Describe()} @ {other.Describe()}");
        // 1-d operands become matrices through recorded views, so the MatMul rule only sees matrices.
        var a = Rank == 1 ? Unsqueeze(0) : this;
        var b = other.Rank == 1 ? other.Unsqueeze(-1) : other;
        try
        {
            int m = a.Layout.Shape[^2], k = a.Layout.Shape[^1], k2 = b.Layout.Shape[^2], n = b.Layout.Shape[^1];
            if (k != k2) throw new ArgumentException($"MatMul: inner dimensions differ: {Describe()} @ {other.Describe()}");
            var batch = AttnCore.Shape.Broadcast("MatMul", a.Layout.Shape[..^2], b.Layout.Shape[..^2]);
            var outShape = batch.Concat(new[] { m, n }).ToArray();
            var c = Empty(outShape, DType, Device);
            if (c.Numel > 0 && k == 0) c.Backend.Fill(c.Storage, c.Layout, 0);   // an empty sum
            else if (c.Numel > 0) MatMulInto(a, b, c, batch, m, n, k);
            c.Record(OpKind.MatMul, [a, b]);
            // Remove the dims that 1-d operands were promoted with.
            if (Rank == 1 && other.Rank == 1) { using (c) return c.View([]); }
            if (Rank == 1) { using (c) return c.Squeeze(-2); }
            if (other.Rank == 1) { using (c) return c.Squeeze(-1); }
            return c;
        }
        finally
        {
            if (!ReferenceEquals(a, this)) a.Dispose();
            if (!ReferenceEquals(b, other)) b.Dispose();
        }
    }

    /// <summary>
    /// y = input Wᵀ + bias, torch.nn.functional.linear: <paramref name="input"/> [..., in], <paramref name="weight"/>
    /// [out, in], <paramref name="bias"/> [out] or null; y is [..., out]. With a bias and an input whose rows lie
    /// contiguously, the product and the bias are one GEMM that adds the bias as it writes each tile (no second pass
    /// over y, no temporary), and one autograd node: dx = g W, dW = gᵀ x over the flattened rows, db = Σ g.
    /// </summary>
    public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias = null)
    {
        SameDevice("Linear", input, weight);
        SameDType("Linear", input, weight);
        input.RequireFloat("Linear");
        if (weight.Rank != 2 || input.Rank == 0 || input.Size(-1) != weight.Size(1))
            throw new ArgumentException($"Linear: input {input.Describe()} does not fit weight {weight.Describe()} (input [..., in], weight [out, in])");
        if (bias is not null)
        {
            SameDevice("Linear", input, bias);
            SameDType("Linear", input, bias);
            if (bias.Rank != 1 || bias.Size(0) != weight.Size(0))
                throw new ArgumentException($"Linear: bias {bias.Describe()} does not fit weight {weight.Describe()} (bias [out])");
        }
        int k = weight.Size(1), n = weight.Size(0);
        long rows = input.Numel / Math.Max(1, k);
        var wl = weight.Layout;
        bool fused = bias is not null && input.IsContiguous && bias.Layout.Strides[0] == 1 && wl.Strides[1] == 1 && wl.Strides[0] >= Math.Max(1, k)
            && wl.Strides[0] <= int.MaxValue && rows <= int.MaxValue && k > 0 && n > 0 && rows > 0;
        if (!fused)
        {
            // x·Wᵀ through a transposed view, recorded as one Linear node: its rule computes the weight's gradient
            // in W's own layout (gᵀ·x), which the weight can keep as its Grad, where a MatMul through a Transpose
            // node would give (xᵀ·g)ᵀ, a transposed view copied into a new tensor every step.
            Tensor product;
            using (new NoGrad()) { using var wt = weight.T; product = input.MatMul(wt); }
            product.Record(OpKind.Linear, [input, weight]);
            if (bias is null) return product;
            using (product) return product + bias;
        }
        var y = Empty([.. input.Layout.Shape[..^1], n], input.DType, input.Device);
        input.Backend.MatMulBias(input.Storage, new MatrixOperand(input.Layout.Offset, 0, k, false), weight.Storage, new MatrixOperand(wl.Offset, 0, (int)wl.Strides[0], true),
            bias!.Storage, bias.Layout.Offset, y.Storage, (int)rows, n, k);
        return y.Record(OpKind.Linear, [input, weight, bias]);
    }

    private static void MatMulInto(Tensor a, Tensor b, Tensor c, int[] batch, int m, int n, int k)
    {
        var la = a.Layout.BroadcastTo(batch.Concat(new[] { m, k }).ToArray());
        var lb = b.Layout.BroadcastTo(batch.Concat(new[] { k, n }).ToArray());
        Tensor? ca = null, cb = null;
        try
        {
            if (!TryMatrix(m, k, la, out int lda, out bool ta))
            {
                ca = a.Contiguous();
                la = ca.Layout.BroadcastTo(la.Shape);
                TryMatrix(m, k, la, out lda, out ta);
            }
            if (!TryMatrix(k, n, lb, out int ldb, out bool tb))
            {
                cb = b.Contiguous();
                lb = cb.Layout.BroadcastTo(lb.Shape);
                TryMatrix(k, n, lb, out ldb, out tb);
            }
            var sa = (ca ?? a).Storage; var sb = (cb ?? b).Storage;
            // Collapse the longest suffix of batch dims that both operands step through with one stride;
            // the remaining prefix (rare: mixed broadcasting like [2,1]x[1,3]) is looped here.
            int rank = batch.Length, split = rank;
            long strideA = 0, strideB = 0;
            long inner = 1;
            while (split > 0)
            {
                int d = split - 1;
                long sA = la.Strides[d], sB = lb.Strides[d];
                if (batch[d] != 1 && inner > 1 && (sA != strideA * inner || sB != strideB * inner)) break;
                if (batch[d] != 1 && inner == 1) { strideA = sA; strideB = sB; }
                inner *= batch[d];
                split--;
            }
            int innerCount = (int)inner;
            var outerShape = batch[..split];
            long outerCount = AttnCore.Shape.Numel(outerShape);
            // One shared B against a batch of row-major A blocks stacked without gaps (a Linear layer on
            // [B, T, C]) is a single tall GEMM: fold the batch into M so B is packed once, not per matrix.
            if (outerCount == 1 && innerCount > 1 && strideB == 0 && !ta && strideA == (long)m * lda && lda == k)
            {
                a.Backend.MatMul(sa, new MatrixOperand(la.Offset, 0, lda, false), sb, new MatrixOperand(lb.Offset, 0, ldb, tb), c.Storage, 1, innerCount * m, n, k);
                return;
            }
            var idx = new int[split];
            for (long o = 0; o < outerCount; o++)
            {
                long offA = la.Offset, offB = lb.Offset;
                for (int d = 0; d < split; d++) { offA += idx[d] * la.Strides[d]; offB += idx[d] * lb.Strides[d]; }
                long offC = o * innerCount * (long)m * n;
                if (offC == 0)
                    a.Backend.MatMul(sa, new MatrixOperand(offA, strideA, lda, ta), sb, new MatrixOperand(offB, strideB, ldb, tb), c.Storage, innerCount, m, n, k);
                else
                {
                    // The backend writes C from element 0: compute into a temporary and copy into place.
                    using var tmp = Empty([innerCount, m, n], a.DType, a.Device);
                    a.Backend.MatMul(sa, new MatrixOperand(offA, strideA, lda, ta), sb, new MatrixOperand(offB, strideB, ldb, tb), tmp.Storage, innerCount, m, n, k);
                    a.Backend.Copy(tmp.Storage, tmp.Layout, c.Storage, new Layout([innerCount, m, n], [(long)m * n, n, 1], offC));
                }
                for (int d = split - 1; d >= 0; d--) { if (++idx[d] < batch[d]) break; idx[d] = 0; }
            }
        }
        finally { ca?.Dispose(); cb?.Dispose(); }
    }

    // A [r, c] matrix view is GEMM-ready when one of its dims has unit stride: row-major with
    // leading dimension ld, or stored transposed (a .T view) with leading dimension ld.
    private static bool TryMatrix(int r, int c, Layout l, out int ld, out bool transposed)
    {
        long sr = l.Strides[^2], sc = l.Strides[^1];
        ld = 0; transposed = false;
        if ((sc == 1 || c == 1) && (r == 1 || sr >= Math.Max(1, c)) && sr <= int.MaxValue)
        {
            ld = r == 1 ? Math.Max(1, c) : (int)sr;
            return true;
        }
        if ((sr == 1 || r == 1) && (c == 1 || sc >= Math.Max(1, r)) && sc <= int.MaxValue)
        {
            ld = c == 1 ? Math.Max(1, r) : (int)sc;
            transposed = true;
            return true;
        }
        return false;
    }

    private Tensor RowWise(string op, int dim, bool log)
    {
        RequireFloat(op);
        if (Rank == 0) { using var v = View(1); using var r = v.RowWise(op, 0, log); return r.View([]); }
        int d = AttnCore.Shape.NormalizeAxis(op, dim, Rank);
        if (d != Rank - 1)
        {
            using var moved = Transpose(d, -1);
            using var r = moved.RowWise(op, -1, log);
            return r.Transpose(d, -1);
        }
        using var x = Dense();
        var y = EmptyLike();
        int cols = Layout.Shape[^1];
        int rows = cols == 0 ? 0 : (int)(Numel / cols);
        if (Numel > 0) Backend.Softmax(x.Storage, y.Storage, rows, cols, log);
        return y.Record(log ? OpKind.LogSoftmax : OpKind.Softmax, [this]);
    }

    /// <summary>Numerically stable softmax along <paramref name="dim"/>.</summary>
    public Tensor Softmax(int dim = -1) => RowWise("Softmax", dim, log: false);

    /// <summary>Numerically stable log-softmax along <paramref name="dim"/>.</summary>
    public Tensor LogSoftmax(int dim = -1) => RowWise("LogSoftmax", dim, log: true);

    /// <summary>
    /// Layer normalisation over the trailing dims given by <paramref name="normalizedShape"/> (as torch's
    /// layer_norm), with optional affine <paramref name="weight"/> and <paramref name="bias"/> of that shape.
    /// </summary>
    public Tensor LayerNorm(int[] normalizedShape, Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        var (y, mean, rstd) = LayerNormWithStats(normalizedShape, weight, bias, eps);
        mean.Dispose(); rstd.Dispose();
        return y;
    }

    /// <summary>Layer normalisation that also returns the per-row mean and 1/std (what the backward pass needs).</summary>
    public (Tensor Output, Tensor Mean, Tensor Rstd) LayerNormWithStats(int[] normalizedShape, Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        var (_, y, mean, rstd) = LayerNormCore("LayerNorm", null, normalizedShape, weight, bias, eps);
        return (y, mean, rstd);
    }

    /// <summary>
    /// sum = this + <paramref name="residual"/> and the layer norm of sum, in one pass over each row: a pre-norm
    /// Transformer block's residual add and the layer norm that follows it (Kernels/Cpu/LayerNorm.cs). Records the sum
    /// as an Add and the output as a LayerNorm of the sum, so the gradients are exactly those of the two ops (and
    /// Backward fuses the layer norm's input gradient with the residual's). Inputs of different shapes broadcast
    /// through the unfused add.
    /// </summary>
    public (Tensor Sum, Tensor Output) AddLayerNorm(Tensor residual, int[] normalizedShape, Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        const string op = "AddLayerNorm";
        SameDevice(op, this, residual); SameDType(op, this, residual);
        if (!Layout.Shape.AsSpan().SequenceEqual(residual.Layout.Shape))
        {
            var sum = this + residual;
            return (sum, sum.LayerNorm(normalizedShape, weight, bias, eps));
        }
        var (s, y, mean, rstd) = LayerNormCore(op, residual, normalizedShape, weight, bias, eps);
        mean.Dispose(); rstd.Dispose();
        return (s!, y);
    }

    // The layer norm of this, or of this + residual (then also returned, as Sum, and recorded as an Add).
    private (Tensor? Sum, Tensor Output, Tensor Mean, Tensor Rstd) LayerNormCore(string op, Tensor? residual, int[] normalizedShape, Tensor? weight, Tensor? bias, double eps)
    {
        RequireFloat(op);
        int nd = normalizedShape.Length;
        if (nd == 0 || nd > Rank || !Layout.Shape.AsSpan(Rank - nd).SequenceEqual(normalizedShape))
            throw new ArgumentException($"{op}: normalized shape {AttnCore.Shape.Format(normalizedShape)} does not match the trailing dims of {Describe()}");
        if (eps < 0) throw new ArgumentException($"{op}: eps must be non-negative, got {eps}");
        foreach (var (p, name) in new[] { (weight, "weight"), (bias, "bias") })
        {
            if (p is null) continue;
            SameDevice(op, this, p); SameDType(op, this, p);
            if (!p.Layout.Shape.AsSpan().SequenceEqual(normalizedShape))
                throw new ArgumentException($"{op}: {name} has shape {p.Describe()}, expected {AttnCore.Shape.Format(normalizedShape)}");
        }
        int cols = (int)AttnCore.Shape.Numel(normalizedShape);
        int rows = cols == 0 ? 0 : (int)(Numel / cols);
        var statsShape = Layout.Shape[..(Rank - nd)];
        using var input = Dense();
        using var r = residual?.Dense();
        using var w = weight?.Dense();
        using var b = bias?.Dense();
        var sum = r is null ? null : EmptyLike();
        var y = EmptyLike();
        var mean = EmptyLike(statsShape);
        var rstd = EmptyLike(statsShape);
        if (Numel > 0) Backend.LayerNorm(input.Storage, w?.Storage, b?.Storage, y.Storage, mean.Storage, rstd.Storage, rows, cols, eps, r?.Storage, sum?.Storage);
        var x = sum ?? input;
        sum?.Record(Kernels.BinaryOp.Add, this, residual!);
        var normalized = sum ?? this;
        // Inputs are always [x, weight, bias] (absent ones as x, flagged in Ints) so the rule can index them.
        y.Record(OpKind.LayerNorm, [normalized, weight ?? normalized, bias ?? normalized], w is null ? [x, mean, rstd] : [x, mean, rstd, w], eps, [nd, weight is null ? 0 : 1, bias is null ? 0 : 1]);
        return (sum, y, mean, rstd);
    }

    /// <summary>
    /// The layer-norm backward pass (one fused kernel): gradients of x, and of weight and bias when asked,
    /// from the output gradient, the input and the saved per-row mean and 1/std.
    /// </summary>
    /// <remarks>
    /// With an <paramref name="addend"/> (the gradient x already has from another consumer, shaped like x), the input
    /// gradient returned is addend + the layer norm's, added in the same pass.
    /// </remarks>
    public static (Tensor Dx, Tensor? DWeight, Tensor? DBias) LayerNormBackward(Tensor gradOutput, Tensor x, Tensor? weight, Tensor mean, Tensor rstd, int normalizedDims, bool wantBias,
        Tensor? addend = null)
    {
        SameDevice("LayerNormBackward", gradOutput, x);
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(x.Layout.Shape))
            throw new ArgumentException($"LayerNormBackward: gradient {gradOutput.Describe()} and input {x.Describe()} differ in shape");
        if (addend is not null)
        {
            SameDevice("LayerNormBackward", addend, x); SameDType("LayerNormBackward", addend, x);
            if (!addend.Layout.Shape.AsSpan().SequenceEqual(x.Layout.Shape))
                throw new ArgumentException($"LayerNormBackward: addend {addend.Describe()} and input {x.Describe()} differ in shape");
        }
        int cols = (int)AttnCore.Shape.Numel(x.Layout.Shape.AsSpan(x.Rank - normalizedDims));
        int rows = cols == 0 ? 0 : (int)(x.Numel / cols);
        var normShape = x.Layout.Shape[(x.Rank - normalizedDims)..];
        using var dy = gradOutput.Dense();
        using var xd = x.Dense();
        using var w = weight?.Dense();
        using var m = mean.Dense();
        using var r = rstd.Dense();
        using var add = addend?.Dense();
        var dx = x.EmptyLike();
        var dw = weight is null ? null : x.EmptyLike(normShape);
        var db = wantBias ? x.EmptyLike(normShape) : null;
        if (x.Numel > 0) x.Backend.LayerNormBackward(dy.Storage, xd.Storage, m.Storage, r.Storage, w?.Storage, dx.Storage, dw?.Storage, db?.Storage, rows, cols, add?.Storage);
        else { dw?.Fill_(0); db?.Fill_(0); }
        return (dx, dw, db);
    }
}
