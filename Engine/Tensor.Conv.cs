using AttnCore.Kernels.Cpu;

namespace AttnCore;

// Convolution, pooling and batch normalisation on NCHW tensors; each is a custom autograd op whose
// backward calls the matching fused kernel.
public sealed partial class Tensor
{
    private void RequireNchw(string op)
    {
        RequireFloat(op);
        if (Rank != 4) throw new ArgumentException($"{op}: input must be [N, C, H, W], got {Describe()}");
    }

    /// <summary>
    /// 2-d convolution (torch.nn.functional.conv2d): this [N, C, H, W], weight [K, C/groups, R, S], bias [K] or null.
    /// </summary>
    public Tensor Conv2d(Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0, int dilation = 1, int groups = 1)
        => Conv2d(weight, bias, (stride, stride), (padding, padding), (dilation, dilation), groups);

    /// <summary>2-d convolution with separate height/width stride, padding and dilation.</summary>
    public Tensor Conv2d(Tensor weight, Tensor? bias, (int H, int W) stride, (int H, int W) padding, (int H, int W) dilation, int groups = 1)
    {
        RequireNchw("Conv2d");
        SameDevice("Conv2d", this, weight); SameDType("Conv2d", this, weight);
        if (weight.Rank != 4) throw new ArgumentException($"Conv2d: weight must be [K, C/groups, R, S], got {weight.Describe()}");
        if (groups <= 0 || weight.Size(1) * groups != Size(1))
            throw new ArgumentException($"Conv2d: input {Describe()} has {Size(1)} channels but weight {weight.Describe()} expects {weight.Size(1)} x groups={groups}");
        if (bias is not null && (bias.Rank != 1 || bias.Size(0) != weight.Size(0)))
            throw new ArgumentException($"Conv2d: bias must be [{weight.Size(0)}], got {bias.Describe()}");
        var shape = new Conv2dShape(Size(0), Size(1), Size(2), Size(3), weight.Size(0), weight.Size(2), weight.Size(3), stride.H, stride.W, padding.H, padding.W, dilation.H, dilation.W, groups);
        shape.Validate("Conv2d");
        using var x = Dense();
        using var w = weight.Dense();
        using var b = bias?.Dense();
        var y = Empty([shape.N, shape.K, shape.P, shape.Q], DType, Device);
        if (y.Numel > 0) Backend.Conv2dForward(x.Storage, w.Storage, b?.Storage, y.Storage, shape);
        Tensor[] inputs = bias is null ? [this, weight] : [this, weight, bias];
        return y.RecordCustom(new ConvOp(shape, bias is not null), inputs, [x, w]);
    }

    private sealed class ConvOp(Conv2dShape shape, bool hasBias) : ICustomOp
    {
        public string Name => "Conv2d";
        public Tensor?[] Backward(GradNode node, Tensor g)
        {
            var (x, w) = (node.Saved[0], node.Saved[1]);
            using var dy = g.Dense();
            var dx = node.Inputs[0].RequiresGrad ? x.EmptyLike() : null;
            bool wantW = node.Inputs[1].RequiresGrad, wantB = hasBias && node.Inputs[2].RequiresGrad;
            var dw = wantW ? w.EmptyLike() : null;
            var db = wantB ? x.EmptyLike([shape.K]) : null;
            if (dy.Numel > 0) x.Backend.Conv2dBackward(dy.Storage, x.Storage, w.Storage, dx?.Storage, dw?.Storage, db?.Storage, shape);
            else { dx?.Fill_(0); dw?.Fill_(0); db?.Fill_(0); }
            return hasBias ? [dx, dw, db] : [dx, dw];
        }
    }

    private Tensor Pool(bool max, int kernel, int? stride, int padding)
    {
        string op = max ? "MaxPool2d" : "AvgPool2d";
        RequireNchw(op);
        var shape = new Pool2dShape(Size(0), Size(1), Size(2), Size(3), kernel, kernel, stride ?? kernel, stride ?? kernel, padding, padding);
        shape.Validate(op);
        using var x = Dense();
        var y = Empty([shape.N, shape.C, shape.P, shape.Q], DType, Device);
        using var argmax = max ? Empty([shape.N, shape.C, shape.P, shape.Q], DType.Int64, Device) : null;
        if (y.Numel > 0) Backend.Pool2dForward(max, x.Storage, y.Storage, argmax?.Storage, shape);
        return y.RecordCustom(new PoolOp(max, shape), [this], argmax is null ? [] : [argmax]);
    }

    /// <summary>Max pooling over kernel x kernel windows (stride defaults to the kernel size).</summary>
    public Tensor MaxPool2d(int kernel, int? stride = null, int padding = 0) => Pool(true, kernel, stride, padding);

    /// <summary>Average pooling over kernel x kernel windows, zero padding counted (PyTorch's default).</summary>
    public Tensor AvgPool2d(int kernel, int? stride = null, int padding = 0) => Pool(false, kernel, stride, padding);

    private sealed class PoolOp(bool max, Pool2dShape shape) : ICustomOp
    {
        public string Name => max ? "MaxPool2d" : "AvgPool2d";
        public Tensor?[] Backward(GradNode node, Tensor g)
        {
            using var dy = g.Dense();
            var dx = Empty(node.Inputs[0].Shape, g.DType, g.Device);
            g.Backend.Pool2dBackward(max, dy.Storage, max ? node.Saved[0].Storage : null, dx.Storage, shape);
            return [dx];
        }
    }

    /// <summary>
    /// Batch normalisation over the channels of [N, C, H, W] (torch.nn.functional.batch_norm). In training mode
    /// the batch statistics normalise and the running ones (when given) move by <paramref name="momentum"/>;
    /// otherwise the running statistics are used. Weight and bias are [C] or null.
    /// </summary>
    public Tensor BatchNorm2d(Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias, bool training, double momentum = 0.1, double eps = 1e-5)
    {
        RequireNchw("BatchNorm2d");
        int n = Size(0), c = Size(1), hw = Size(2) * Size(3);
        foreach (var (t, name) in new[] { (runningMean, "running mean"), (runningVar, "running var"), (weight, "weight"), (bias, "bias") })
        {
            if (t is null) continue;
            SameDevice("BatchNorm2d", this, t); SameDType("BatchNorm2d", this, t);
            if (t.Rank != 1 || t.Size(0) != c) throw new ArgumentException($"BatchNorm2d: {name} must be [{c}], got {t.Describe()}");
            if (name.StartsWith("running", StringComparison.Ordinal) && (!t.IsContiguous || t.Layout.Offset != 0))
                throw new ArgumentException($"BatchNorm2d: {name} must be a contiguous tensor (it is updated in place)");
        }
        if (!training && (runningMean is null || runningVar is null)) throw new ArgumentException("BatchNorm2d: evaluation mode needs the running mean and variance");
        using var x = Dense();
        using var w = weight?.Dense();
        using var b = bias?.Dense();
        var y = EmptyLike();
        using var mean = Empty([c], DType, Device);
        using var invstd = Empty([c], DType, Device);
        if (Numel > 0)
        {
            Backend.BatchNormForward(training, x.Storage, w?.Storage, b?.Storage, y.Storage, mean.Storage, invstd.Storage, runningMean?.Storage, runningVar?.Storage, n, c, hw, momentum, eps);
            if (training) { runningMean?.Storage.BumpVersion(); runningVar?.Storage.BumpVersion(); }
        }
        if (!training)
        {
            // Evaluation is an affine map with fixed statistics: record it through ordinary ops for gradients.
            y.Dispose();
            using var rm = runningMean!.View(1, c, 1, 1);
            using var rv = runningVar!.View(1, c, 1, 1);
            using var centered = this - rm;
            using var denom = (rv + eps).Rsqrt();
            var yy = centered * denom;
            if (weight is not null) { using var ww = weight.View(1, c, 1, 1); var t = yy * ww; yy.Dispose(); yy = t; }
            if (bias is not null) { using var bb = bias.View(1, c, 1, 1); var t = yy + bb; yy.Dispose(); yy = t; }
            return yy;
        }
        Tensor[] inputs = [this, weight ?? this, bias ?? this];
        return y.RecordCustom(new BatchNormOp(n, c, hw, weight is not null, bias is not null), inputs, w is null ? [x, mean, invstd] : [x, mean, invstd, w]);
    }

    private sealed class BatchNormOp(int n, int c, int hw, bool hasWeight, bool hasBias) : ICustomOp
    {
        public string Name => "BatchNorm2d";
        public Tensor?[] Backward(GradNode node, Tensor g)
        {
            var (x, mean, invstd) = (node.Saved[0], node.Saved[1], node.Saved[2]);
            var w = hasWeight ? node.Saved[3] : null;
            using var dy = g.Dense();
            var dx = x.EmptyLike();
            var dw = hasWeight ? x.EmptyLike([c]) : null;
            var db = hasBias ? x.EmptyLike([c]) : null;
            x.Backend.BatchNormBackward(dy.Storage, x.Storage, mean.Storage, invstd.Storage, w?.Storage, dx.Storage, dw?.Storage, db?.Storage, n, c, hw);
            return [dx, dw, db];
        }
    }
}
