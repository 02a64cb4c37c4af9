using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore;

// Convolution, pooling and batch normalisation on NCHW tensors. Each records an OpKind whose
// rule (Autograd/DerivativeRules.cs) calls the public backward op here (Conv2dBackward, MaxPool2dBackward,
// AvgPool2dBackward, BatchNorm2dBackward, BatchNorm2dReluBackward), which runs the matching fused kernel.
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
        if (bias is not null) { SameDevice("Conv2d", this, bias); SameDType("Conv2d", this, bias); }
        var shape = ConvShape("Conv2d", Layout.Shape, weight, stride, padding, dilation, groups);
        if (bias is not null && (bias.Rank != 1 || bias.Size(0) != weight.Size(0)))
            throw new ArgumentException($"Conv2d: bias must be [{weight.Size(0)}], got {bias.Describe()}");
        using var x = Dense();
        using var w = weight.Dense();
        using var b = bias?.Dense();
        var y = Empty([shape.N, shape.K, shape.P, shape.Q], DType, Device);
        if (y.Numel > 0) Backend.Conv2dForward(x.Storage, w.Storage, b?.Storage, y.Storage, shape);
        Tensor[] inputs = bias is null ? [this, weight] : [this, weight, bias];
        // Ints: stride, padding, dilation (H, W each), groups; a third input is the bias.
        return y.Record(OpKind.Conv2d, inputs, [x, w], 0, [stride.H, stride.W, padding.H, padding.W, dilation.H, dilation.W, groups]);
    }

    private static Conv2dShape ConvShape(string op, int[] input, Tensor weight, (int H, int W) stride, (int H, int W) padding, (int H, int W) dilation, int groups)
    {
        string x = AttnCore.Shape.Format(input);
        if (input.Length != 4) throw new ArgumentException($"{op}: input must be [N, C, H, W], got {x}");
        if (weight.Rank != 4) throw new ArgumentException($"{op}: weight must be [K, C/groups, R, S], got {weight.Describe()}");
        if (groups <= 0 || weight.Size(1) * groups != input[1])
            throw new ArgumentException($"{op}: input {x} has {input[1]} channels but weight {weight.Describe()} expects {weight.Size(1)} x groups={groups}");
        var shape = new Conv2dShape(input[0], input[1], input[2], input[3], weight.Size(0), weight.Size(2), weight.Size(3), stride.H, stride.W, padding.H, padding.W, dilation.H, dilation.W, groups);
        shape.Validate(op);
        return shape;
    }

    /// <summary>
    /// The convolution backward pass (torch's convolution_backward): from the output gradient [N, K, P, Q], the
    /// input and the weight, the gradients of the input, the weight and the bias, each only when asked (null otherwise).
    /// </summary>
    public static (Tensor? Dx, Tensor? DWeight, Tensor? DBias) Conv2dBackward(Tensor gradOutput, Tensor input, Tensor weight,
        (int H, int W) stride, (int H, int W) padding, (int H, int W) dilation, int groups = 1, bool wantInput = true, bool wantWeight = true, bool wantBias = false)
    {
        const string op = "Conv2dBackward";
        input.RequireNchw(op);
        SameDevice(op, gradOutput, input); SameDType(op, gradOutput, input);
        SameDevice(op, input, weight); SameDType(op, input, weight);
        var shape = ConvShape(op, input.Layout.Shape, weight, stride, padding, dilation, groups);
        int[] yShape = [shape.N, shape.K, shape.P, shape.Q];
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(yShape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} does not match the output {AttnCore.Shape.Format(yShape)} of input {input.Describe()} and weight {weight.Describe()}");
        using var dy = gradOutput.Dense();
        using var x = input.Dense();
        using var w = weight.Dense();
        var dx = wantInput ? x.EmptyLike() : null;
        var dw = wantWeight ? w.EmptyLike() : null;
        var db = wantBias ? x.EmptyLike([shape.K]) : null;
        if (dy.Numel > 0) x.Backend.Conv2dBackward(dy.Storage, x.Storage, w.Storage, dx?.Storage, dw?.Storage, db?.Storage, shape);
        else { dx?.Fill_(0); dw?.Fill_(0); db?.Fill_(0); }
        return (dx, dw, db);
    }

    // ---- pooling ----

    private static Pool2dShape PoolShape(string op, int[] input, (int H, int W) kernel, (int H, int W)? stride, (int H, int W) padding, (int H, int W) dilation,
        bool ceilMode, bool countIncludePad)
    {
        if (input.Length != 4) throw new ArgumentException($"{op}: input must be [N, C, H, W], got {AttnCore.Shape.Format(input)}");
        var st = stride ?? kernel;
        var shape = new Pool2dShape(input[0], input[1], input[2], input[3], kernel.H, kernel.W, st.H, st.W, padding.H, padding.W, dilation.H, dilation.W, ceilMode, countIncludePad);
        shape.Validate(op);
        return shape;
    }

    // The output-shaped gradient (and indices) a pooling backward op receives, checked against the forward shape.
    private static void CheckPoolGradient(string op, Tensor gradOutput, Tensor? indices, in Pool2dShape s, int[] inputShape)
    {
        gradOutput.RequireFloat(op);
        int[] yShape = [s.N, s.C, s.P, s.Q];
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(yShape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} does not match the output {AttnCore.Shape.Format(yShape)} of input {AttnCore.Shape.Format(inputShape)}");
        if (indices is null) return;
        SameDevice(op, gradOutput, indices);
        if (indices.DType != DType.Int64 || !indices.Layout.Shape.AsSpan().SequenceEqual(yShape))
            throw new ArgumentException($"{op}: indices must be int64 {AttnCore.Shape.Format(yShape)}, got {indices.DType.Name()} {indices.Describe()}");
    }

    /// <summary>
    /// Max pooling over kernel x kernel windows (torch.nn.functional.max_pool2d); stride defaults to the kernel size.
    /// Padding may be at most half the kernel; padded cells never win.
    /// </summary>
    public Tensor MaxPool2d(int kernel, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false)
        => MaxPool2d((kernel, kernel), stride is int s ? (s, s) : null, (padding, padding), (dilation, dilation), ceilMode);

    /// <summary>Max pooling with separate height/width kernel, stride (default: the kernel), padding and dilation.</summary>
    public Tensor MaxPool2d((int H, int W) kernel, (int H, int W)? stride = null, (int H, int W) padding = default, (int H, int W)? dilation = null, bool ceilMode = false)
    {
        var (y, indices) = MaxPool2dWithIndices(kernel, stride, padding, dilation, ceilMode);
        indices.Dispose();
        return y;
    }

    /// <summary>
    /// Max pooling that also returns, per output, the flat index h·W + w of the winning input cell in its H x W plane
    /// (int64, as max_pool2d's return_indices; −1 for a window with no cell inside the input, where the output is −∞).
    /// Ties go to the first cell in row-major window order; a NaN always wins.
    /// </summary>
    public (Tensor Output, Tensor Indices) MaxPool2dWithIndices((int H, int W) kernel, (int H, int W)? stride = null, (int H, int W) padding = default,
        (int H, int W)? dilation = null, bool ceilMode = false)
    {
        const string op = "MaxPool2d";
        RequireNchw(op);
        var dil = dilation ?? (1, 1);
        var shape = PoolShape(op, Layout.Shape, kernel, stride, padding, dil, ceilMode, true);
        using var x = Dense();
        var y = Empty([shape.N, shape.C, shape.P, shape.Q], DType, Device);
        var indices = Empty([shape.N, shape.C, shape.P, shape.Q], DType.Int64, Device);
        if (y.Numel > 0) Backend.Pool2dForward(true, x.Storage, y.Storage, indices.Storage, shape);
        // Ints: kernel, stride, padding, dilation (H, W each), ceil mode.
        y.Record(OpKind.MaxPool2d, [this], [indices], 0, [shape.R, shape.S, shape.StrideH, shape.StrideW, shape.PadH, shape.PadW, dil.H, dil.W, ceilMode ? 1 : 0]);
        return (y, indices);
    }

    /// <summary>
    /// The max-pooling backward pass (torch's max_pool2d_with_indices_backward): a zero tensor of
    /// <paramref name="inputShape"/> with each output gradient added at the input cell its index names (−1 adds nothing).
    /// An index outside the H·W plane throws: at once on the CPU, at the next synchronisation on a device.
    /// </summary>
    public static Tensor MaxPool2dBackward(Tensor gradOutput, Tensor indices, int[] inputShape, (int H, int W) kernel, (int H, int W) stride, (int H, int W) padding,
        (int H, int W) dilation, bool ceilMode = false)
    {
        const string op = "MaxPool2dBackward";
        var shape = PoolShape(op, inputShape, kernel, stride, padding, dilation, ceilMode, true);
        CheckPoolGradient(op, gradOutput, indices, shape, inputShape);
        using var dy = gradOutput.Dense();
        using var arg = indices.Dense();
        var dx = Empty(inputShape, gradOutput.DType, gradOutput.Device);
        // The CPU kernel rejects an index outside the plane itself (ArgumentException); a device's gather skips it and
        // the device-side check reports it at the next synchronisation (IBackend.CheckIndexRange).
        if (dx.Device != Device.Cpu && arg.Numel > 0)
            dx.Backend.CheckIndexRange(arg.Storage, arg.Numel, (long)shape.H * shape.W, -1, op, $"an {shape.H}x{shape.W} input plane");
        if (dx.Numel > 0) dx.Backend.Pool2dBackward(true, dy.Storage, arg.Storage, dx.Storage, shape);
        return dx;
    }

    /// <summary>
    /// Average pooling over kernel x kernel windows (torch.nn.functional.avg_pool2d); stride defaults to the kernel
    /// size. With <paramref name="countIncludePad"/> (PyTorch's default) zero padding counts in the divisor.
    /// </summary>
    public Tensor AvgPool2d(int kernel, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true)
        => AvgPool2d((kernel, kernel), stride is int s ? (s, s) : null, (padding, padding), ceilMode, countIncludePad);

    /// <summary>Average pooling with separate height/width kernel, stride (default: the kernel) and padding.</summary>
    public Tensor AvgPool2d((int H, int W) kernel, (int H, int W)? stride = null, (int H, int W) padding = default, bool ceilMode = false, bool countIncludePad = true)
    {
        const string op = "AvgPool2d";
        RequireNchw(op);
        var shape = PoolShape(op, Layout.Shape, kernel, stride, padding, (1, 1), ceilMode, countIncludePad);
        using var x = Dense();
        var y = Empty([shape.N, shape.C, shape.P, shape.Q], DType, Device);
        if (y.Numel > 0) Backend.Pool2dForward(false, x.Storage, y.Storage, null, shape);
        // Ints: kernel, stride, padding (H, W each), ceil mode, count_include_pad.
        return y.Record(OpKind.AvgPool2d, [this], [], 0, [shape.R, shape.S, shape.StrideH, shape.StrideW, shape.PadH, shape.PadW, ceilMode ? 1 : 0, countIncludePad ? 1 : 0]);
    }

    /// <summary>
    /// The average-pooling backward pass (torch's avg_pool2d_backward): each output gradient divided by its window's
    /// divisor and added over the window, into a zero tensor of <paramref name="inputShape"/>.
    /// </summary>
    public static Tensor AvgPool2dBackward(Tensor gradOutput, int[] inputShape, (int H, int W) kernel, (int H, int W) stride, (int H, int W) padding,
        bool ceilMode = false, bool countIncludePad = true)
    {
        const string op = "AvgPool2dBackward";
        var shape = PoolShape(op, inputShape, kernel, stride, padding, (1, 1), ceilMode, countIncludePad);
        CheckPoolGradient(op, gradOutput, null, shape, inputShape);
        using var dy = gradOutput.Dense();
        var dx = Empty(inputShape, gradOutput.DType, gradOutput.Device);
        if (dx.Numel > 0) dx.Backend.Pool2dBackward(false, dy.Storage, null, dx.Storage, shape);
        return dx;
    }

    /// <summary>
    /// Batch normalisation over the channels of [N, C, H, W] (torch.nn.functional.batch_norm). In training mode
    /// the batch statistics normalise and the running ones (when given) move by <paramref name="momentum"/>;
    /// otherwise the running statistics are used. Weight and bias are [C] or null.
    /// </summary>
    public Tensor BatchNorm2d(Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias, bool training, double momentum = 0.1, double eps = 1e-5)
        => BatchNorm2dCore("BatchNorm2d", false, runningMean, runningVar, weight, bias, training, momentum, eps);

    /// <summary>
    /// Batch normalisation followed by ReLU, max(0, BatchNorm2d(x)), in one fused pass after the statistics (the
    /// same arguments and running-statistics update as <see cref="BatchNorm2d"/>). Training mode records
    /// <see cref="OpKind.BatchNorm2dRelu"/>, which saves the output for the ReLU's mask; its gradient is
    /// <see cref="BatchNorm2dReluBackward"/>.
    /// </summary>
    public Tensor BatchNorm2dRelu(Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias, bool training, double momentum = 0.1, double eps = 1e-5)
        => BatchNorm2dCore("BatchNorm2dRelu", true, runningMean, runningVar, weight, bias, training, momentum, eps);

    private Tensor BatchNorm2dCore(string op, bool relu, Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias, bool training, double momentum, double eps)
    {
        RequireNchw(op);
        int n = Size(0), c = Size(1), hw = Size(2) * Size(3);
        foreach (var (t, name) in new[] { (runningMean, "running mean"), (runningVar, "running var"), (weight, "weight"), (bias, "bias") })
        {
            if (t is null) continue;
            SameDevice(op, this, t); SameDType(op, this, t);
            if (t.Rank != 1 || t.Size(0) != c) throw new ArgumentException($"{op}: {name} must be [{c}] for input {Describe()}, got {t.Describe()}");
            if (name.StartsWith("running", StringComparison.Ordinal) && (!t.IsContiguous || t.Layout.Offset != 0))
                throw new ArgumentException($"{op}: {name} must be a contiguous tensor (it is updated in place)");
        }
        if (!training && (runningMean is null || runningVar is null)) throw new ArgumentException($"{op}: evaluation mode needs the running mean and variance");
        bool evalGrad = !training && GradMode.IsEnabled && (RequiresGrad || weight?.RequiresGrad == true || bias?.RequiresGrad == true);
        if (relu && evalGrad)
        {
            // Evaluation with gradients wanted (rare: fine-tuning through frozen statistics): the recorded ops below, then ReLU.
            using var affine = BatchNorm2dCore("BatchNorm2d", false, runningMean, runningVar, weight, bias, training, momentum, eps);
            return affine.Relu();
        }
        using var x = Dense();
        using var w = weight?.Dense();
        using var b = bias?.Dense();
        var y = EmptyLike();
        using var mean = Empty([c], DType, Device);
        using var invstd = Empty([c], DType, Device);
        if (Numel > 0)
        {
            Backend.BatchNormForward(training, x.Storage, w?.Storage, b?.Storage, y.Storage, mean.Storage, invstd.Storage, runningMean?.Storage, runningVar?.Storage, n, c, hw, momentum, eps, relu);
            if (training) { runningMean?.Storage.BumpVersion(); runningVar?.Storage.BumpVersion(); }
        }
        if (!training && relu) return y;
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
        Tensor[] inputs = (weight, bias) switch
        {
            (null, null) => [this],
            (not null, null) => [this, weight],
            (null, not null) => [this, bias],
            _ => [this, weight, bias],
        };
        // x is declared saved (GradNode.SavesOf); extras: the batch mean and 1/std, then the weight when there is one.
        // Ints: has weight, has bias (which inputs after x are which).
        // The fused op saves its output as well (declared): the ReLU's mask is y > 0.
        // The fused op also keeps the bias (last extra), from which the CPU backward recomputes that mask.
        var extras = new List<Tensor> { mean, invstd };
        if (w is not null) extras.Add(w);
        if (relu && b is not null) extras.Add(b);
        return y.Record(relu ? OpKind.BatchNorm2dRelu : OpKind.BatchNorm2d, inputs, [.. extras], 0, [weight is null ? 0 : 1, bias is null ? 0 : 1]);
    }

    /// <summary>
    /// The training-mode batch-norm backward pass (torch's native_batch_norm_backward with batch statistics): from the
    /// output gradient and the input [N, C, H, W], the batch mean and 1/sqrt(var + eps) the forward computed ([C] each)
    /// and the weight ([C] or null), dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) with x̂ = (x − mean)·invstd,
    /// dweight = Σ dy·x̂ and dbias = Σ dy over N, H, W; dweight and dbias only when asked (null otherwise).
    /// </summary>
    public static (Tensor Dx, Tensor? DWeight, Tensor? DBias) BatchNorm2dBackward(Tensor gradOutput, Tensor input, Tensor mean, Tensor invstd, Tensor? weight,
        bool wantWeight = true, bool wantBias = true)
        => BatchNorm2dBackwardCore("BatchNorm2dBackward", gradOutput, input, null, mean, invstd, weight, null, wantWeight, wantBias);

    /// <summary>
    /// The training-mode backward pass of <see cref="BatchNorm2dRelu"/>: <see cref="BatchNorm2dBackward"/> applied to
    /// dz = dy·[output &gt; 0], with <paramref name="output"/> the fused op's result max(0, BN(x)), in the same two
    /// passes (dz is never stored). <paramref name="bias"/> is the forward's (null if it had none): the CPU recomputes
    /// the mask from x, the statistics, the weight and the bias, the forward's own arithmetic, rather than read the output.
    /// </summary>
    public static (Tensor Dx, Tensor? DWeight, Tensor? DBias) BatchNorm2dReluBackward(Tensor gradOutput, Tensor input, Tensor output, Tensor mean, Tensor invstd, Tensor? weight,
        Tensor? bias, bool wantWeight = true, bool wantBias = true)
        => BatchNorm2dBackwardCore("BatchNorm2dReluBackward", gradOutput, input, output, mean, invstd, weight, bias, wantWeight, wantBias);

    private static (Tensor Dx, Tensor? DWeight, Tensor? DBias) BatchNorm2dBackwardCore(string op, Tensor gradOutput, Tensor input, Tensor? output, Tensor mean, Tensor invstd, Tensor? weight,
        Tensor? bias, bool wantWeight, bool wantBias)
    {
        input.RequireNchw(op);
        int n = input.Size(0), c = input.Size(1), hw = input.Size(2) * input.Size(3);
        SameDevice(op, gradOutput, input); SameDType(op, gradOutput, input);
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(input.Layout.Shape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} and input {input.Describe()} differ in shape");
        if (output is not null)
        {
            SameDevice(op, output, input); SameDType(op, output, input);
            if (!output.Layout.Shape.AsSpan().SequenceEqual(input.Layout.Shape))
                throw new ArgumentException($"{op}: output {output.Describe()} and input {input.Describe()} differ in shape");
        }
        foreach (var (t, name) in new[] { (mean, "mean"), (invstd, "invstd"), (weight, "weight"), (bias, "bias") })
        {
            if (t is null) continue;
            SameDevice(op, input, t); SameDType(op, input, t);
            if (t.Rank != 1 || t.Size(0) != c) throw new ArgumentException($"{op}: {name} must be [{c}] for input {input.Describe()}, got {t.Describe()}");
        }
        using var dy = gradOutput.Dense();
        using var x = input.Dense();
        using var m = mean.Dense();
        using var r = invstd.Dense();
        using var w = weight?.Dense();
        using var yy = output?.Dense();
        using var b = output is null ? null : bias?.Dense();
        var dx = x.EmptyLike();
        var dw = wantWeight ? x.EmptyLike([c]) : null;
        var db = wantBias ? x.EmptyLike([c]) : null;
        if (x.Numel > 0) x.Backend.BatchNormBackward(dy.Storage, x.Storage, m.Storage, r.Storage, w?.Storage, dx.Storage, dw?.Storage, db?.Storage, n, c, hw, yy?.Storage, b?.Storage);
        else { dw?.Fill_(0); db?.Fill_(0); }
        return (dx, dw, db);
    }
}
