using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore;

/// <summary>
/// One backward rule per <see cref="OpKind"/>: given the recorded node and the gradient of its output,
/// the gradient of each input (null where none flows). Each rule sits under a comment with its forward
/// formula, so an op and its derivative are read together. Rules run under NoGrad (first derivatives).
/// </summary>
public static class DerivativeRules
{
    private delegate Tensor?[] Rule(GradNode n, Tensor g);

    private static readonly Dictionary<OpKind, Rule> Table = Build();

    /// <summary>True when <paramref name="kind"/> has a rule (a test asserts every OpKind does).</summary>
    public static bool HasRule(OpKind kind) => Table.ContainsKey(kind);

    /// <summary>
    /// True when <paramref name="node"/>'s rule can add <paramref name="inputGradient"/>, the gradient its first input
    /// already has, in its own pass: the layer norm's (in a pre-norm block the residual path reaches its input first),
    /// which saves writing its gradient and reading it back in an add. Only a contiguous gradient: another would be
    /// copied first, which is what the fusion saves.
    /// </summary>
    internal static bool AddsInputGradient(GradNode node, Tensor inputGradient) =>
        node.Kind == OpKind.LayerNorm && inputGradient.IsContiguous && inputGradient.Layout.Offset == 0;

    /// <summary>
    /// The rule, given the gradient the first input already has (<paramref name="addend"/>, or null) when
    /// <see cref="AddsInputGradient"/> allowed it: that input's gradient then comes back as addend + the rule's.
    /// </summary>
    internal static Tensor?[] Apply(GradNode node, Tensor gradOutput, Tensor? addend) =>
        addend is null ? Apply(node, gradOutput)
        : AddsInputGradient(node, addend) ? LayerNormRule(node, gradOutput, addend)
        : throw new InvalidOperationException($"Backward: the {node.Name} rule does not take its input's gradient");

    /// <summary>Runs the rule of <paramref name="node"/>.</summary>
    public static Tensor?[] Apply(GradNode node, Tensor gradOutput)
    {
        if (node.Kind == OpKind.Custom)
            return node.Custom?.Backward(node, gradOutput) ?? throw new InvalidOperationException("Backward: a Custom node has no ICustomOp");
        return Table.TryGetValue(node.Kind, out var rule) ? rule(node, gradOutput)
            : throw new NotSupportedException($"Backward: no derivative rule for {node.Name}");
    }

    /// <summary>Sums a broadcast gradient back to <paramref name="shape"/> (the input's shape before broadcasting).</summary>
    public static Tensor SumTo(Tensor g, int[] shape)
    {
        if (g.Shape.SequenceEqual(shape)) return g;
        int lead = g.Rank - shape.Length;
        var dims = new List<int>();
        for (int i = 0; i < g.Rank; i++)
            if (i < lead || (shape[i - lead] == 1 && g.Size(i) != 1)) dims.Add(i);
        using var s = g.Sum([.. dims], keepDim: true);
        return s.Reshape(shape);
    }

    // The output gradient of a reduction, reshaped so it broadcasts against the input again.
    private static Tensor Unreduce(Tensor g, int[] reducedDims, int[] inputShape)
    {
        var shape = (int[])inputShape.Clone();
        foreach (int d in reducedDims) shape[d] = 1;
        return g.Reshape(shape);
    }

    // What each rule reads of its op's tensors is declared in GradNode.SavesOf; the accessors throw if a rule
    // reads more than its op saved.
    private static Tensor X(GradNode n) => n.SavedInput(0);     // the input, for unary ops
    private static Tensor Y(GradNode n) => n.SavedOutput;       // the output

    private static readonly Rule[] UnaryRules = Enum.GetValues<UnaryOp>().Select(UnaryRuleOf).ToArray();
    private static readonly Rule[] BinaryRules = Enum.GetValues<BinaryOp>().Select(BinaryRuleOf).ToArray();

    // The unary element-wise ops, one rule each under its forward formula. A switch expression with no discard arm:
    // a UnaryOp added without its derivative fails to compile (CS8509, warnings are errors).
#pragma warning disable CS8524 // a value outside the enum throws SwitchExpressionException
    private static Rule UnaryRuleOf(UnaryOp op) => op switch
    {
        // y = -x
        UnaryOp.Neg => (n, g) => [-g],
        // y = |x|
        UnaryOp.Abs => (n, g) => [Times(g, X(n).Sign())],
        // y = e^x
        UnaryOp.Exp => (n, g) => [g * Y(n)],
        // y = ln x
        UnaryOp.Log => (n, g) => [g / X(n)],
        // y = sqrt x          dy/dx = 1 / (2y)
        UnaryOp.Sqrt => (n, g) => [Times(g, Y(n).Reciprocal(), 0.5)],
        // y = x^-1/2          dy/dx = -y^3 / 2
        UnaryOp.Rsqrt => (n, g) => [Times(g, Y(n).Pow(3), -0.5)],
        // y = tanh x          dy/dx = 1 - y^2
        UnaryOp.Tanh => (n, g) => [Times(g, 1.0 - Y(n).Square())],
        // y = sigmoid x       dy/dx = y (1 - y)
        UnaryOp.Sigmoid => (n, g) => [Times(g, Y(n) * (1.0 - Y(n)))],
        // y = max(x, 0)
        // y = max(x, 0)      dy/dx = [y > 0], read from the output in one pass
        UnaryOp.Relu => (n, g) => [Tensor.ReluBackward(g, Y(n))],
        // y = x Phi(x)        dy/dx = Phi(x) + x phi(x)
        UnaryOp.Gelu => (n, g) => [Tensor.GeluBackward(g, X(n))],
        UnaryOp.GeluTanh => (n, g) => [Tensor.GeluBackward(g, X(n), tanhApproximation: true)],
        // y = x sigmoid(x)    dy/dx = s (1 + x (1 - s))
        UnaryOp.Silu => (n, g) => { using var s = X(n).Sigmoid(); using var oneMinus = 1.0 - s; using var xs = X(n) * oneMinus; using var inner = xs + 1.0; return [Times(g, s * inner)]; },
        // y = ln(1 + e^x)     dy/dx = sigmoid(x)
        UnaryOp.Softplus => (n, g) => [Times(g, X(n).Sigmoid())],
        // y = x tanh(sp(x))   dy/dx = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = softplus(x)
        UnaryOp.Mish => (n, g) =>
        {
            using var sp = X(n).Softplus(); using var t = sp.Tanh(); using var t2 = t.Square(); using var sech2 = 1.0 - t2;
            using var s = X(n).Sigmoid(); using var xs = X(n) * s; using var tail = xs * sech2;
            return [Times(g, t + tail)];
        },
        // y = -softplus(-x)   dy/dx = sigmoid(-x) = 1 - sigmoid(x)
        UnaryOp.LogSigmoid => (n, g) => { using var s = X(n).Sigmoid(); return [Times(g, 1.0 - s)]; },
        // y = sin x, y = cos x
        UnaryOp.Sin => (n, g) => [Times(g, X(n).Cos())],
        UnaryOp.Cos => (n, g) => [Times(g, X(n).Sin(), -1)],
        // y = x^2
        UnaryOp.Square => (n, g) => [Times(g, X(n), 2)],
        // y = 1/x             dy/dx = -y^2
        UnaryOp.Reciprocal => (n, g) => [Times(g, Y(n).Square(), -1)],
        // y = sign x: zero almost everywhere
        UnaryOp.Sign => (n, g) => [g.ZerosLike()],
        // y = x + s, y = x * s
        UnaryOp.AddScalar => (n, g) => [g],
        UnaryOp.MulScalar => (n, g) => [g * n.Scalar],
        // y = x^s             dy/dx = s x^(s-1)
        UnaryOp.PowScalar => (n, g) => [Times(g, X(n).Pow(n.Scalar - 1), n.Scalar)],
        // y = s - x, y = s / x (dy/dx = -s / x^2, from the input alone)
        UnaryOp.RSubScalar => (n, g) => [-g],
        UnaryOp.RDivScalar => (n, g) => { using var x2 = X(n).Square(); return [Times(g, x2.Reciprocal(), -n.Scalar)]; },
        // y = max(x, s), y = min(x, s): the gradient passes where x is the one kept
        UnaryOp.ClampMin => (n, g) => [Times(g, X(n).Ge(n.Scalar))],
        UnaryOp.ClampMax => (n, g) => [Times(g, X(n).Le(n.Scalar))],
        // derivative helpers of GELU's rule: never recorded ([Elementwise(Differentiable = false)])
        UnaryOp.GeluGrad or UnaryOp.GeluTanhGrad => NotDifferentiable,
    };

    // The binary element-wise ops; comparisons and logical ops are never recorded.
    private static Rule BinaryRuleOf(BinaryOp op) => op switch
    {
        // c = a + b, a - b (broadcast: gradients summed back to each input's shape)
        BinaryOp.Add => (n, g) => [SumTo(g, n.Inputs[0].Shape), SumTo(g, n.Inputs[1].Shape)],
        BinaryOp.Sub => (n, g) => { using var ng = -g; return [SumTo(g, n.Inputs[0].Shape), SumTo(ng, n.Inputs[1].Shape).Clone()]; },
        // c = a * b (each input saved only if the other needs a gradient: Saves.ForOtherInput)
        BinaryOp.Mul => (n, g) =>
        [
            n.Inputs[0].RequiresGrad ? Reduced(g * n.SavedInput(1), n.Inputs[0].Shape) : null,
            n.Inputs[1].RequiresGrad ? Reduced(g * n.SavedInput(0), n.Inputs[1].Shape) : null,
        ],
        // c = a / b           dc/db = -c / b
        BinaryOp.Div => (n, g) => { var b = n.SavedInput(1); using var q = n.SavedOutput / b; return [Reduced(g / b, n.Inputs[0].Shape), Reduced(Times(g, q, -1), n.Inputs[1].Shape)]; },
        // c = a^b             dc/da = b a^(b-1), dc/db = c ln a
        BinaryOp.Pow => (n, g) =>
        {
            var (a, b, c) = (n.SavedInput(0), n.SavedInput(1), n.SavedOutput);
            using var bm1 = b - 1.0; using var p = a.Pow(bm1); using var da = p * b;
            using var la = a.Log(); using var db = c * la;
            return [Reduced(g * da, n.Inputs[0].Shape), Reduced(g * db, n.Inputs[1].Shape)];
        },
        // c = max(a, b), min(a, b): the gradient goes to the larger (smaller); ties split it evenly, as PyTorch
        BinaryOp.Maximum => (n, g) => ExtremumRule(n, g, max: true),
        BinaryOp.Minimum => (n, g) => ExtremumRule(n, g, max: false),
        BinaryOp.Eq or BinaryOp.Ne or BinaryOp.Lt or BinaryOp.Le or BinaryOp.Gt or BinaryOp.Ge
            or BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor or BinaryOp.GeluBackward or BinaryOp.GeluTanhBackward => NotDifferentiable,
    };
#pragma warning restore CS8524

    private static Tensor?[] NotDifferentiable(GradNode n, Tensor g) => throw new NotSupportedException($"Backward: {n.Name} is not differentiable");

    private static Dictionary<OpKind, Rule> Build() => new()
    {
        // The element-wise ops: one rule per op code, from the switches below.
        [OpKind.Unary] = (n, g) => UnaryRules[(int)n.Unary!.Value](n, g),
        [OpKind.Binary] = (n, g) => BinaryRules[(int)n.Binary!.Value](n, g),

        // y = cond ? a : b
        [OpKind.Where] = (n, g) =>
        {
            using var zero = g.ZerosLike();
            var condition = n.SavedExtra(0);
            return [Reduced(Tensor.Where(condition, g, zero), n.Inputs[0].Shape), Reduced(Tensor.Where(condition, zero, g), n.Inputs[1].Shape)];
        },

        // y = sum over dims   dy/dx = 1 broadcast back
        // (a broadcast view, not a copy: whoever consumes it, an accumulation or the next rule, reads it as it is; a copy
        // here wrote a full activation per SE block that was read once)
        [OpKind.Sum] = (n, g) => { using var u = Unreduce(g, n.Ints, n.Inputs[0].Shape); return [u.Expand(n.Inputs[0].Shape)]; },
        // y = max/min over dims: the gradient is shared by the elements equal to the extremum
        [OpKind.Max] = ReduceExtremumRule,
        [OpKind.Min] = ReduceExtremumRule,

        // C = A @ B (batched, broadcast)   dA = dC @ B^T, dB = A^T @ dC, summed over broadcast batch dims
        [OpKind.MatMul] = MatMulRule,
        // y = x Wᵀ + b (one GEMM)                  dx = g W, dW = gᵀ x over the flattened rows, db = Σ g
        [OpKind.Linear] = LinearRule,
        // y = softmax(x) along the last dim      dx = y (g - sum(g y))
        [OpKind.Softmax] = (n, g) =>
        {
            var y = n.SavedOutput;
            using var gy = g * y; using var s = gy.Sum(-1, keepDim: true); using var d = g - s;
            return [d * y];
        },
        // y = log_softmax(x)                      dx = g - softmax(x) sum(g)
        [OpKind.LogSoftmax] = (n, g) =>
        {
            using var p = n.SavedOutput.Exp(); using var s = g.Sum(-1, keepDim: true); using var ps = p * s;
            return [g - ps];
        },
        // y = (x - mean) rstd * w + b over the trailing Ints[0] dims
        [OpKind.LayerNorm] = LayerNormRule,
        // O = softmax(scale·Q Kᵀ + mask) V, fused: dQ, dK, dV by the fused backward kernels (P recomputed from the
        // saved lse; dS = P ∘ (dP - rowsum(dO ∘ O)); grouped-query dK, dV summed over each group's query heads)
        [OpKind.Attention] = AttentionRule,
        // the same from a packed projection [B, T, (H + 2·Hkv)·Dh]: one gradient of qkv's shape
        [OpKind.PackedAttention] = (n, g) => [Tensor.PackedSelfAttentionBackward(g, n.Saved[0], n.Saved[1], n.Saved[2], n.Saved.Length > 3 ? n.Saved[3] : null, AttentionShape.FromInts(n.Ints))],
        // y = conv2d(x, w) + b                     dx = conv_transpose2d(g, w), dw = g ⋆ x, db = Σ g (fused kernels)
        [OpKind.Conv2d] = Conv2dRule,
        // y = max of each window (indices saved)  dx = zeros with g added at each window's winner
        [OpKind.MaxPool2d] = (n, g) =>
        {
            var i = n.Ints;
            return [Tensor.MaxPool2dBackward(g, n.Saved[0], n.Inputs[0].Shape, (i[0], i[1]), (i[2], i[3]), (i[4], i[5]), (i[6], i[7]), i[8] == 1)];
        },
        // y = window sum / divisor                dx = zeros with g / divisor added over each window
        [OpKind.AvgPool2d] = (n, g) =>
        {
            var i = n.Ints;
            return [Tensor.AvgPool2dBackward(g, n.Inputs[0].Shape, (i[0], i[1]), (i[2], i[3]), (i[4], i[5]), i[6] == 1, i[7] == 1)];
        },
        // y = x̂·w + b, x̂ = (x − mean_c)·invstd_c over N, H, W    dx = w·invstd·(g − mean(g) − x̂·mean(g·x̂)),
        //                                                        dw = Σ g·x̂, db = Σ g   (fused kernel)
        [OpKind.BatchNorm2d] = BatchNorm2dRule,
        // loss = Σ_p −Σ_c y_pc log softmax(x_p)_c, y = weighted smoothed target    dx = (softmax·Σ_c y − y)·g   (fused kernel)
        //                                                                          dq_c = −(1−ε) w_c log softmax_c · g
        [OpKind.CrossEntropy] = CrossEntropyRule,
        // y = x.IndexSelect(d, idx)               dx = zeros.IndexAdd(d, idx, g)
        [OpKind.IndexSelect] = (n, g) => { using var z = Tensor.Zeros(n.Inputs[0].Shape, g.DType, g.Device); return [z.IndexAdd(n.Ints[0], n.SavedExtra(0), g)]; },
        // y = x.Gather(d, idx)                    dx = zeros.ScatterAdd(d, idx, g)
        [OpKind.Gather] = GatherRule,
        // y = cat(xs, d)                          dx_i = the slice of g that came from x_i
        [OpKind.Cat] = (n, g) =>
        {
            var grads = new Tensor?[n.Inputs.Length];
            int at = 0;
            for (int i = 0; i < grads.Length; i++) { grads[i] = g.Narrow(n.Ints[0], at, n.Ints[i + 1]).Contiguous(); at += n.Ints[i + 1]; }
            return grads;
        },

        // Views: the gradient is the inverse view (or a scatter into zeros for slices)
        [OpKind.View] = (n, g) => [g.Reshape(n.Inputs[0].Shape)],
        [OpKind.Permute] = (n, g) =>
        {
            var inverse = new int[n.Ints.Length];
            for (int i = 0; i < inverse.Length; i++) inverse[n.Ints[i]] = i;
            return [g.Permute(inverse)];
        },
        [OpKind.Narrow] = (n, g) =>
        {
            int d = n.Ints[0], start = n.Ints[1], step = n.Ints[2], len = g.Size(d);
            var z = Tensor.Zeros(n.Inputs[0].Shape, g.DType, g.Device);
            if (len > 0) { using var slot = z.Slice(d, start, start + (len - 1) * step + 1, step); slot.CopyFrom(g); }
            return [z];
        },
        [OpKind.Select] = (n, g) =>
        {
            var z = Tensor.Zeros(n.Inputs[0].Shape, g.DType, g.Device);
            using var slot = z.Select(n.Ints[0], n.Ints[1]);
            slot.CopyFrom(g);
            return [z];
        },
        [OpKind.Expand] = (n, g) => [SumTo(g, n.Inputs[0].Shape)],
        [OpKind.Copy] = (n, g) => [g],
        [OpKind.ToDType] = (n, g) => [g.To(n.Inputs[0].DType)],
        // vision-models: O = softmax(scale·Q Kᵀ + B) V with a learned bias B (BoTNet's relative logits):
        // dQ, dK, dV by the fused backward kernels, dB = dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O)) (the softmax-backward output)
        [OpKind.AttentionBias] = AttentionBiasRule,

        // recommend: loss = w·((1 − y)·x − ln σ(x))    dx = w·(σ(x) − y)·g, dy = −w·x·g   ('mean': g / numel)
        // Saved: logits, targets, then the weight when Ints[1] = 1; Ints[0]: the reduction.
        [OpKind.BinaryCrossEntropyWithLogits] = (n, g) =>
        {
            var (dx, dy) = Tensor.BinaryCrossEntropyWithLogitsBackward(g, n.SavedExtra(0), n.SavedExtra(1), n.Ints[1] == 1 ? n.SavedExtra(2) : null,
                (Reduction)n.Ints[0], n.Inputs[0].RequiresGrad, n.Inputs[1].RequiresGrad);
            return [dx, dy];
        },

        // bnrelu: y = max(0, BN(x)), fused       the BatchNorm2d rule on dz = g·[y > 0] (mask from the saved output,
        // applied inside the batch-norm backward's passes: Tensor.BatchNorm2dReluBackward)
        [OpKind.BatchNorm2dRelu] = BatchNorm2dRule,
        // bnrelu: y = max(0, a + b), fused         da = db = g·[y > 0] (one pass from the saved output, shared by both)
        [OpKind.AddRelu] = (n, g) => { var d = Tensor.ReluBackward(g, n.SavedOutput); return [d, d]; },
        // y = max(0, x·s + r): d = g·[y > 0]; dx = d·s, ds = Σ_hw d·x, dr = d (one pass: Tensor.ScaleAddReluBackward)
        [OpKind.ScaleAddRelu] = (n, g) =>
        {
            var (dx, ds, dr) = Tensor.ScaleAddReluBackward(g, n.SavedOutput, n.SavedInput(0), n.SavedInput(1),
                n.Inputs[0].RequiresGrad, n.Inputs[1].RequiresGrad, n.Inputs[2].RequiresGrad);
            return [dx, ds, dr];
        },
    };

    // vision-models: saved as for Attention (q, k, v, O, lse, the [B, H, Tq, Tk] bias view); the bias is input 3.
    private static Tensor?[] AttentionBiasRule(GradNode n, Tensor g)
    {
        var shape = AttentionShape.FromInts(n.Ints);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(g, n.Saved[0], n.Saved[1], n.Saved[2], n.Saved[3], n.Saved[4], n.Saved[5], shape);
        var dBias = Tensor.ScaledDotProductAttentionBiasBackward(g, n.Saved[0], n.Saved[1], n.Saved[2], n.Saved[3], n.Saved[4], n.Saved[5], shape);
        return [dq, dk, dv, dBias];
    }

    // g * factor (* scale), disposing the factor: most unary rules are "gradient times a local derivative".
    private static Tensor Times(Tensor g, Tensor factor, double scale = 1)
    {
        using (factor)
        {
            if (scale == 1) return g * factor;
            using var p = g * factor;
            return p * scale;
        }
    }

    // SumTo for a freshly computed gradient that may be returned as is (then it is not disposed).
    private static Tensor Reduced(Tensor full, int[] shape)
    {
        var r = SumTo(full, shape);
        if (!ReferenceEquals(r, full)) full.Dispose();
        return r;
    }

    // C = A @ B. A shared 2-d weight used by a batched input (a Linear layer on [B, T, C]) gets its gradient
    // as one GEMM over the flattened batch, dB = A_flatᵀ @ dC_flat, instead of a batch of products summed.
    private static Tensor?[] MatMulRule(GradNode n, Tensor g)
    {
        Tensor? ga = null, gb = null;
        if (n.Inputs[0].RequiresGrad)
        {
            using var bt = n.SavedInput(1).Transpose(-1, -2);
            ga = Reduced(g.MatMul(bt), n.Inputs[0].Shape);
        }
        if (n.Inputs[1].RequiresGrad)
        {
            var a = n.SavedInput(0);
            if (n.Inputs[1].Rank == 2 && a.Rank > 2)
            {
                // Rows counted, not inferred: Reshape(-1, 0) is ambiguous when the inner dim is 0.
                int rows = (int)Shape.Numel(a.Shape[..^1]);
                using var af = a.Reshape(rows, a.Size(-1));
                using var gf = g.Reshape(rows, g.Size(-1));
                using var aft = af.T;
                gb = aft.MatMul(gf);
            }
            else
            {
                using var at = a.Transpose(-1, -2);
                gb = Reduced(at.MatMul(g), n.Inputs[1].Shape);
            }
        }
        return [ga, gb];
    }

    private static Tensor?[] LinearRule(GradNode n, Tensor g)
    {
        Tensor? gx = null, gw = null;
        if (n.Inputs[0].RequiresGrad) gx = g.MatMul(n.SavedInput(1));
        if (n.Inputs[1].RequiresGrad)
        {
            var x = n.SavedInput(0);
            int rows = (int)Shape.Numel(x.Shape[..^1]);
            using var xf = x.Reshape(rows, x.Size(-1));
            using var gf = g.Reshape(rows, g.Size(-1));
            using var gft = gf.T;
            gw = gft.MatMul(xf);
        }
        if (n.Inputs.Length == 2) return [gx, gw];   // without a bias (Tensor.Linear's unfused path)
        var gb = n.Inputs[2].RequiresGrad ? SumTo(g, n.Inputs[2].Shape) : null;
        return [gx, gw, gb];
    }

    private static Tensor?[] ExtremumRule(GradNode n, Tensor g, bool max)
    {
        var (a, b) = (n.SavedInput(0), n.SavedInput(1));
        using var winMask = max ? a.Gt(b) : a.Lt(b);
        using var tieMask = a.Eq(b);
        using var wins = winMask.To(g.DType);
        using var ties = tieMask.To(g.DType);
        using var halfTies = ties * 0.5;
        using var wa = wins + halfTies;
        using var wb = 1.0 - wa;
        return [Reduced(g * wa, n.Inputs[0].Shape), Reduced(g * wb, n.Inputs[1].Shape)];
    }

    private static Tensor?[] ReduceExtremumRule(GradNode n, Tensor g)
    {
        // Max and Min pass [input, output] as extras (Engine/Tensor.Reduce.cs)
        var (x, y) = (n.SavedExtra(0), n.SavedExtra(1));
        using var yu = Unreduce(y, n.Ints, x.Shape);
        using var gu = Unreduce(g, n.Ints, x.Shape);
        using var isExtremum = x.Eq(yu);
        using var mask = isExtremum.To(g.DType);
        using var count = mask.Sum(n.Ints, keepDim: true);
        using var share = gu / count;
        return [mask * share];
    }

    // The fused layer-norm backward kernel: dx, dgamma, dbeta in two passes over each row.
    // Extras: [x, mean, rstd] and the weight when there is one (Ints[1] == 1).
    private static Tensor?[] LayerNormRule(GradNode n, Tensor g) => LayerNormRule(n, g, null);

    // With the gradient its input already has (addend, or null; AddsInputGradient), added in the kernel's pass.
    private static Tensor?[] LayerNormRule(GradNode n, Tensor g, Tensor? addend)
    {
        var grads = Tensor.LayerNormBackward(g, n.SavedExtra(0), n.Ints[1] == 1 ? n.SavedExtra(3) : null, n.SavedExtra(1), n.SavedExtra(2), n.Ints[0], n.Ints[2] == 1, addend);
        return [grads.Dx, grads.DWeight, grads.DBias];
    }

    // Saved: q, k, v, O, lse and the additive mask view when there was one; Ints: the AttentionShape.
    private static Tensor?[] AttentionRule(GradNode n, Tensor g)
    {
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(g, n.Saved[0], n.Saved[1], n.Saved[2], n.Saved[3], n.Saved[4],
            n.Saved.Length > 5 ? n.Saved[5] : null, AttentionShape.FromInts(n.Ints));
        return [dq, dk, dv];
    }

    // The fused convolution backward: dx by col2im of Wᵀ·dy, dw by dy·colᵀ, db by summing dy; each only when wanted.
    private static Tensor?[] Conv2dRule(GradNode n, Tensor g)
    {
        var i = n.Ints;
        bool hasBias = n.Inputs.Length == 3;
        var (dx, dw, db) = Tensor.Conv2dBackward(g, n.Saved[0], n.Saved[1], (i[0], i[1]), (i[2], i[3]), (i[4], i[5]), i[6],
            n.Inputs[0].RequiresGrad, n.Inputs[1].RequiresGrad, hasBias && n.Inputs[2].RequiresGrad);
        return hasBias ? [dx, dw, db] : [dx, dw];
    }

    // Saved: x (declared; BatchNorm2dRelu also its output), then the extras mean, invstd and the weight when there is
    // one (BatchNorm2dRelu: then the bias when there is one); Ints: has weight, has bias. Inputs: x, then the weight and
    // the bias that exist.
    private static Tensor?[] BatchNorm2dRule(GradNode n, Tensor g)
    {
        bool hasWeight = n.Ints[0] == 1, hasBias = n.Ints[1] == 1;
        var weight = hasWeight ? n.Inputs[1] : null;
        var bias = hasBias ? n.Inputs[hasWeight ? 2 : 1] : null;
        var (dx, dw, db) = n.Kind == OpKind.BatchNorm2dRelu
            ? Tensor.BatchNorm2dReluBackward(g, n.SavedInput(0), n.SavedOutput, n.SavedExtra(0), n.SavedExtra(1), hasWeight ? n.SavedExtra(2) : null,
                hasBias ? n.SavedExtra(hasWeight ? 3 : 2) : null, weight?.RequiresGrad == true, bias?.RequiresGrad == true)
            : Tensor.BatchNorm2dBackward(g, n.SavedInput(0), n.SavedExtra(0), n.SavedExtra(1), hasWeight ? n.SavedExtra(2) : null,
                weight?.RequiresGrad == true, bias?.RequiresGrad == true);
        // The kernel always writes dx (its sums serve dw and db too); Backward ignores it when x wants no gradient.
        return (hasWeight, hasBias) switch { (true, true) => [dx, dw, db], (true, false) => [dx, dw], (false, true) => [dx, db], _ => [dx] };
    }

    // Saved: logits, targets, lse, rowScale, denominator, then the weight when there is one (Ints[0] = 1);
    // Ints: has weight, reduction, ignore index (low and high 32 bits); Scalar: label smoothing.
    private static Tensor?[] CrossEntropyRule(GradNode n, Tensor g)
    {
        var s = n.Saved;
        var (x, targets, lse, rowScale, denominator) = (s[0], s[1], s[2], s[3], s[4]);
        var weight = n.Ints[0] == 1 ? s[5] : null;
        var reduction = (Reduction)n.Ints[1];
        long ignoreIndex = (uint)n.Ints[2] | ((long)n.Ints[3] << 32);
        var dx = n.Inputs[0].RequiresGrad ? Tensor.CrossEntropyBackward(g, x, targets, weight, lse, rowScale, denominator, ignoreIndex, n.Scalar, reduction) : null;
        if (n.Inputs.Length == 1 || !n.Inputs[1].RequiresGrad) return [dx];
        // Probability targets: loss_p = −Σ_c w_c ((1−ε) q_c + ε/C) log p_c is linear in q.
        int classDim = x.Rank == 1 ? 0 : 1;
        var broadcast = Enumerable.Repeat(1, x.Rank).ToArray();
        broadcast[classDim] = x.Size(classDim);
        using var lseC = lse.Unsqueeze(classDim);
        using var logp = x - lseC;
        using var perPosition = reduction == Reduction.None ? g.Unsqueeze(classDim) : reduction == Reduction.Mean ? g / denominator : g.Detach();
        using var scaled = logp * perPosition;
        using var w = weight?.Reshape(broadcast);
        using var weighted = w is null ? scaled.Detach() : scaled * w;
        return [dx, weighted * -(1 - n.Scalar)];
    }

    private static Tensor?[] GatherRule(GradNode n, Tensor g)
    {
        int d = n.Ints[0];
        var inShape = n.Inputs[0].Shape;
        var idx = n.SavedExtra(0);
        // Gather may read a prefix of the input outside dim d: scatter into that extent, then pad with zeros.
        var extent = (int[])idx.Shape.Clone();
        extent[d] = inShape[d];
        using var z = Tensor.Zeros(extent, g.DType, g.Device);
        var scattered = z.ScatterAdd(d, idx, g);
        if (extent.SequenceEqual(inShape)) return [scattered];
        using (scattered)
        {
            var full = Tensor.Zeros(inShape, g.DType, g.Device);
            Tensor view = full;
            for (int i = 0; i < inShape.Length; i++)
                if (extent[i] != inShape[i]) { var next = view.Narrow(i, 0, extent[i]); if (!ReferenceEquals(view, full)) view.Dispose(); view = next; }
            view.CopyFrom(scattered);
            if (!ReferenceEquals(view, full)) view.Dispose();
            return [full];
        }
    }
}
