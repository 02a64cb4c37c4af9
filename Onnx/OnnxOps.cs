namespace AttnCore.Onnx;

/// <summary>
/// The operators the vision, forecasting and recommendation exports add to <see cref="OnnxGraph"/>'s helpers,
/// one node each (opset 17 semantics: ReduceMean and ReduceMax take their axes as an attribute, ReduceSum,
/// Squeeze and Slice as inputs).
/// </summary>
public static class OnnxOps
{
    /// <summary>Mean over <paramref name="axes"/> (ReduceMean).</summary>
    public static string ReduceMean(this OnnxGraph g, string x, string hint, bool keepDims, params long[] axes) =>
        g.Node("ReduceMean", [x], hint, OnnxGraph.Attribute.Ints("axes", axes), OnnxGraph.Attribute.Int("keepdims", keepDims ? 1 : 0));

    /// <summary>Maximum over <paramref name="axes"/> (ReduceMax).</summary>
    public static string ReduceMax(this OnnxGraph g, string x, string hint, bool keepDims, params long[] axes) =>
        g.Node("ReduceMax", [x], hint, OnnxGraph.Attribute.Ints("axes", axes), OnnxGraph.Attribute.Int("keepdims", keepDims ? 1 : 0));

    /// <summary>Sum over <paramref name="axes"/> (ReduceSum, axes as an input since opset 13).</summary>
    public static string ReduceSum(this OnnxGraph g, string x, string hint, bool keepDims, params long[] axes) =>
        g.Node("ReduceSum", [x, g.Ints(hint + ".axes", axes)], hint, OnnxGraph.Attribute.Int("keepdims", keepDims ? 1 : 0));

    /// <summary>Removes the size-1 dims at <paramref name="axes"/>.</summary>
    public static string Squeeze(this OnnxGraph g, string x, string hint, params long[] axes) => g.Node("Squeeze", [x, g.Ints(hint + ".axes", axes)], hint);

    /// <summary>Elements start..end-1 of <paramref name="axis"/> (a view in the engine, Narrow).</summary>
    public static string Slice(this OnnxGraph g, string x, string hint, long axis, long start, long end) =>
        g.Node("Slice", [x, g.Ints(hint + ".starts", start), g.Ints(hint + ".ends", end), g.Ints(hint + ".axes", axis)], hint);

    /// <summary>max(x, 0).</summary>
    public static string Relu(this OnnxGraph g, string x, string hint) => g.Node("Relu", [x], hint);

    /// <summary>1 / (1 + e^-x).</summary>
    public static string Sigmoid(this OnnxGraph g, string x, string hint) => g.Node("Sigmoid", [x], hint);

    /// <summary>√x.</summary>
    public static string Sqrt(this OnnxGraph g, string x, string hint) => g.Node("Sqrt", [x], hint);

    /// <summary>
    /// A tensor of <paramref name="x"/>'s leading (dynamic) dim followed by <paramref name="rest"/>, filled from a
    /// constant broadcast by Expand: how a graph makes a [batch, ...] tensor of zeros without knowing the batch size.
    /// </summary>
    public static string BatchOf(this OnnxGraph g, string x, string constant, string hint, params long[] rest)
    {
        var batch = g.Unsqueeze(g.Dim(x, 0, hint + ".batch"), hint + ".batch1", 0);
        var shape = g.Concat([batch, g.Ints(hint + ".rest", rest)], hint + ".shape", 0);
        return g.Node("Expand", [constant, shape], hint);
    }

    /// <summary>
    /// Population mean and standard deviation over <paramref name="axis"/> (kept as a size-1 dim):
    /// μ = mean x, σ = √(mean (x - μ)² + ε), the statistics of RevIN and of iTransformer's normalisation.
    /// Returns μ, x - μ and σ.
    /// </summary>
    public static (string Mean, string Centered, string Std) MeanAndStd(this OnnxGraph g, string x, long axis, double eps, string hint)
    {
        var mean = g.ReduceMean(x, hint + ".mean", true, axis);
        var centered = g.Sub(x, mean, hint + ".centered");
        var variance = g.ReduceMean(g.Mul(centered, centered, hint + ".squares"), hint + ".variance", true, axis);
        var std = g.Sqrt(g.Add(variance, g.Scalar(hint + ".eps", (float)eps), hint + ".variance_eps"), hint + ".std");
        return (mean, centered, std);
    }

    /// <summary>
    /// BatchNormalization in inference mode (training_mode 0): (x - running_mean) / √(running_var + ε) · γ + β over
    /// dim 1 of x [N, C, ...], the running statistics as initializers under their state-dict names.
    /// </summary>
    public static string BatchNorm(this OnnxGraph g, string x, Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar, double eps, string path) =>
        g.Node("BatchNormalization",
            [x, g.Weight(weight, path + ".weight"), g.Weight(bias, path + ".bias"), g.Weight(runningMean, path + ".running_mean"), g.Weight(runningVar, path + ".running_var")],
            path, OnnxGraph.Attribute.Float("epsilon", (float)eps));
}
