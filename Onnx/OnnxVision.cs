using System.Text.Json;
using AttnCore.Models.Nn;
using AttnCore.Models.Vision;

namespace AttnCore.Onnx;

/// <summary>
/// ONNX export of the vision family (<see cref="ResNet"/>: ResNet-18/34/50, the CIFAR ResNet-20/32/56, each plain,
/// -se, -cbam or -mhsa): image [batch, C, H, W] → logits [batch, classes], batch dynamic, H and W those of the sample
/// (BoTNet's relative-position index tables depend on the map size). BatchNorm is exported in evaluation mode
/// (BatchNormalization with the running statistics), whatever the module's Train/Eval state.
/// <code>
///   Conv2d            Conv (kernel_shape, strides, pads, dilations, group; bias when the layer has one)
///   BatchNorm2d       BatchNormalization (running mean and variance, ε)
///   stem max pool     MaxPool 3x3, stride 2, pad 1
///   SE                ReduceMean over H, W → Conv → Relu → Conv → Sigmoid → Mul
///   CBAM              ReduceMean and ReduceMax over H, W through the shared 1x1 MLP, Add, Sigmoid, Mul; then
///                     ReduceMean and ReduceMax over C, Concat, 7x7 Conv, Sigmoid, Mul
///   BotMhsa2d         1x1 Conv to q, k, v; Reshape, Gather, Transpose to [N, heads, HW, d]; relative logits from
///                     Gather of R_h, R_w by constant offset tables and two MatMuls with q, broadcast Add;
///                     MatMul q·kᵀ, Mul 1/√d, Add the logits, Softmax, MatMul v, back to [N, C, H, W]
///   head              GlobalAveragePool, Flatten, MatMul + Add
/// </code>
/// </summary>
public static class OnnxVision
{
    /// <summary>Registers the vision layers in <see cref="OnnxLayers"/> (called by its static constructor).</summary>
    internal static void RegisterLayers()
    {
        OnnxLayers.Register<Conv2d>(Conv);
        OnnxLayers.Register<BatchNorm2d>((g, bn, path, x) => g.BatchNorm(x, bn.Weight, bn.Bias, bn.RunningMean, bn.RunningVar, bn.Eps, path));
        OnnxLayers.Register<ReLU>((g, _, path, x) => g.Relu(x, path));
        OnnxLayers.Register<SiLU>((g, _, path, x) => g.Mul(x, g.Sigmoid(x, path + ".sigmoid"), path));
        OnnxLayers.Register<Flatten>((g, _, path, x) => g.Node("Flatten", [x], path, OnnxGraph.Attribute.Int("axis", 1)));
        OnnxLayers.Register<AdaptiveAvgPool2d>(GlobalAveragePool);
        OnnxLayers.Register<SqueezeExcitation>(SqueezeExcitation);
        OnnxLayers.Register<Cbam>(Cbam);
    }

    /// <summary>Registers the ResNet graph builders in <see cref="OnnxExport"/> (called by its static constructor).</summary>
    internal static void RegisterModels()
    {
        OnnxExport.RegisterModel<ResNet>(ResNetGraph);
        OnnxExport.RegisterModel<ResNet50WithAttention>(ResNetGraph);
    }

    /// <summary>Conv with the layer's kernel, stride, symmetric padding, dilation and groups.</summary>
    public static string Conv(OnnxGraph g, Conv2d conv, string path, string x)
    {
        var w = g.Weight(conv.Weight, path + ".weight");
        string[] inputs = conv.Bias is null ? [x, w] : [x, w, g.Weight(conv.Bias, path + ".bias")];
        return g.Node("Conv", inputs, path,
            OnnxGraph.Attribute.Ints("kernel_shape", conv.KernelSize, conv.KernelSize), OnnxGraph.Attribute.Ints("strides", conv.Stride, conv.Stride),
            OnnxGraph.Attribute.Ints("pads", conv.Padding, conv.Padding, conv.Padding, conv.Padding),
            OnnxGraph.Attribute.Ints("dilations", conv.Dilation, conv.Dilation), OnnxGraph.Attribute.Int("group", conv.Groups));
    }

    private static string GlobalAveragePool(OnnxGraph g, AdaptiveAvgPool2d pool, string path, string x) =>
        pool.OutputSize == 1 ? g.Node("GlobalAveragePool", [x], path)
            : throw new NotSupportedException($"ONNX export: module '{path}' AdaptiveAvgPool2d to {pool.OutputSize}x{pool.OutputSize} has no ONNX mapping; only output size 1 (GlobalAveragePool) is exported");

    /// <summary>s = σ(fc2(ReLU(fc1(mean over H, W)))), y = x · s.</summary>
    public static string SqueezeExcitation(OnnxGraph g, SqueezeExcitation se, string path, string x)
    {
        var z = g.ReduceMean(x, path + ".squeeze", true, 2, 3);
        var s = g.Sigmoid(Conv(g, OnnxLayers.Child<Conv2d>(se, "fc2"), path + ".fc2", g.Relu(Conv(g, OnnxLayers.Child<Conv2d>(se, "fc1"), path + ".fc1", z), path + ".relu")), path + ".scale");
        return g.Mul(x, s, path);
    }

    /// <summary>Channel attention σ(MLP(avg) + MLP(max)), then spatial attention σ(conv7x7([mean_c; max_c])).</summary>
    public static string Cbam(OnnxGraph g, Cbam cbam, string path, string x)
    {
        var fc1 = OnnxLayers.Child<Conv2d>(cbam, "fc1");
        var fc2 = OnnxLayers.Child<Conv2d>(cbam, "fc2");
        string Mlp(string z, string name) => Conv(g, fc2, path + ".fc2", g.Relu(Conv(g, fc1, path + ".fc1", z), $"{path}.{name}_relu"));
        var channel = g.Sigmoid(g.Add(Mlp(g.ReduceMean(x, path + ".avg", true, 2, 3), "avg"), Mlp(g.ReduceMax(x, path + ".max", true, 2, 3), "max"), path + ".channel_logits"), path + ".channel");
        var refined = g.Mul(x, channel, path + ".refined");
        var pooled = g.Concat([g.ReduceMean(refined, path + ".channel_mean", true, 1), g.ReduceMax(refined, path + ".channel_max", true, 1)], path + ".pooled", 1);
        var spatial = g.Sigmoid(Conv(g, OnnxLayers.Child<Conv2d>(cbam, "spatial"), path + ".spatial", pooled), path + ".spatial_map");
        return g.Mul(refined, spatial, path);
    }

    /// <summary>
    /// BoTNet's self-attention on an <paramref name="h"/> x <paramref name="w"/> map: the content logits q·kᵀ/√d plus
    /// the relative logits q·(R_h[j_h - i_h] + R_w[j_w - i_w]), computed as the engine's RelativeLogits (the offset
    /// tables M-1+j-i are int64 constants for this map size).
    /// </summary>
    public static string BotMhsa(OnnxGraph g, BotMhsa2d m, string path, string x, int h, int w)
    {
        if (h > m.MaxExtent || w > m.MaxExtent)
            throw new ArgumentException($"ONNX export: module '{path}' BotMhsa2d gets a {h}x{w} map, more than its relative tables' {m.MaxExtent}x{m.MaxExtent}; export with a smaller sample image");
        int heads = m.Heads, c = m.Channels, d = c / heads, hw = h * w;
        var qkv = g.Reshape(Conv(g, m.Qkv, path + ".qkv", x), path + ".qkv_heads", 0, 3, heads, d, hw);
        // [N, 3, heads, d, HW] -> q, k, v [N, heads, HW, d]
        string Part(int i, string name) => g.Transpose(g.Gather(qkv, g.IntScalar($"{path}.{name}_index", i), $"{path}.{name}_t", axis: 1), $"{path}.{name}", 0, 1, 3, 2);
        var (q, k, v) = (Part(0, "query"), Part(1, "key"), Part(2, "value"));

        var q5 = g.Reshape(q, path + ".query_map", 0, heads, h, w, d);
        // R[M-1 + j - i] for i, j < size as [size_i, d, size_j]
        string Relative(Tensor table, string name, int size)
        {
            var offsets = new long[size * size];
            for (int i = 0; i < size; i++)
                for (int j = 0; j < size; j++) offsets[i * size + j] = m.MaxExtent - 1 + j - i;
            var rows = g.Gather(g.Weight(table, $"{path}.{name}"), g.Ints($"{path}.{name}_offsets", offsets), $"{path}.{name}_rows");
            return g.Transpose(g.Reshape(rows, $"{path}.{name}_grid", size, size, d), $"{path}.{name}_t", 0, 2, 1);
        }
        var byRow = g.MatMul(q5, Relative(m.RelHeight, "rel_height", h), path + ".by_row");                       // [N, n, H_i, W_i, H_j]
        var qByCol = g.Transpose(q5, path + ".query_cols", 0, 1, 3, 2, 4);
        var byCol = g.Transpose(g.MatMul(qByCol, Relative(m.RelWidth, "rel_width", w), path + ".by_col_t"), path + ".by_col", 0, 1, 3, 2, 4); // [N, n, H_i, W_i, W_j]
        var relative = g.Add(g.Unsqueeze(byRow, path + ".by_row_u", 5), g.Unsqueeze(byCol, path + ".by_col_u", 4), path + ".relative_grid");
        var bias = g.Reshape(relative, path + ".relative", 0, heads, hw, hw);

        var scores = g.Mul(g.MatMul(q, g.Transpose(k, path + ".key_t", 0, 1, 3, 2), path + ".qk"), g.Scalar(path + ".scale", (float)(1 / Math.Sqrt(d))), path + ".content");
        var weights = g.Softmax(g.Add(scores, bias, path + ".scores"), path + ".weights");
        var o = g.MatMul(weights, v, path + ".context");
        return g.Reshape(g.Transpose(o, path + ".context_t", 0, 1, 3, 2), path, 0, c, h, w);
    }

    private static int ConvOut(Conv2d c, int size) => (size + 2 * c.Padding - c.Dilation * (c.KernelSize - 1) - 1) / c.Stride + 1;

    // One residual block on an h x w map; returns the output and its size. The structure is read from the block's
    // children (conv1, bn1, conv2 or mhsa, bn2, conv3 and bn3 for a bottleneck, se or cbam, downsample).
    private static (string Y, int H, int W) Block(OnnxGraph g, ResidualBlock block, string p, string x, int h, int w)
    {
        var children = block.NamedChildren().ToDictionary(c => c.Name, c => c.Module);
        string Bn(string name, string v) => OnnxLayers.Emit(g, OnnxLayers.Child<BatchNorm2d>(block, name), $"{p}.{name}", v);
        var conv1 = OnnxLayers.Child<Conv2d>(block, "conv1");
        var y = g.Relu(Bn("bn1", OnnxLayers.Emit(g, conv1, p + ".conv1", x)), p + ".relu1");
        int bh = ConvOut(conv1, h), bw = ConvOut(conv1, w);
        var downsample = children.GetValueOrDefault("downsample") as Sequential;
        if (block is Bottleneck)
        {
            if (children.TryGetValue("mhsa", out var mhsa))
            {
                y = BotMhsa(g, (BotMhsa2d)mhsa, p + ".mhsa", y, bh, bw);
                // A strided BoTNet block pools 2x2 after the attention (the stride its downsample shortcut carries).
                if (downsample is not null && ((Conv2d)downsample[0]).Stride == 2)
                {
                    y = g.Node("AveragePool", [y], p + ".pool", OnnxGraph.Attribute.Ints("kernel_shape", 2, 2), OnnxGraph.Attribute.Ints("strides", 2, 2));
                    (bh, bw) = (bh / 2, bw / 2);
                }
            }
            else
            {
                var conv2 = OnnxLayers.Child<Conv2d>(block, "conv2");
                y = OnnxLayers.Emit(g, conv2, p + ".conv2", y);
                (bh, bw) = (ConvOut(conv2, bh), ConvOut(conv2, bw));
            }
            y = g.Relu(Bn("bn2", y), p + ".relu2");
            y = Bn("bn3", OnnxLayers.Emit(g, OnnxLayers.Child<Conv2d>(block, "conv3"), p + ".conv3", y));
        }
        else if (block is BasicBlock)
        {
            y = children.TryGetValue("mhsa", out var mhsa)
                ? BotMhsa(g, (BotMhsa2d)mhsa, p + ".mhsa", y, bh, bw)
                : OnnxLayers.Emit(g, OnnxLayers.Child<Conv2d>(block, "conv2"), p + ".conv2", y);
            y = Bn("bn2", y);
        }
        else throw new NotSupportedException($"ONNX export: block '{p}' of type {block.GetType().Name} has no ONNX mapping (BasicBlock and Bottleneck are mapped)");
        if (children.TryGetValue("se", out var se)) y = OnnxLayers.Emit(g, se, p + ".se", y);
        if (children.TryGetValue("cbam", out var cbam)) y = OnnxLayers.Emit(g, cbam, p + ".cbam", y);
        string shortcut = x;
        if (downsample is not null)
            for (int i = 0; i < downsample.Count; i++) shortcut = OnnxLayers.Emit(g, downsample[i], $"{p}.downsample.{i}", shortcut);
        return (g.Relu(g.Add(y, shortcut, p + ".residual"), p), bh, bw);
    }

    /// <summary>
    /// A ResNet: image [batch, C, H, W] → logits [batch, classes]. Stem (conv1, bn1, ReLU, the max pool of the
    /// ImageNet stem), the stages block by block, global average pool, flatten, fc.
    /// </summary>
    private static OnnxGraph ResNetGraph(ResNet model, IReadOnlyList<Tensor> samples, OnnxExportOptions options)
    {
        string name = model.GetType().Name;
        if (options.KeyValueCache || options.PaddingMasks) throw new NotSupportedException($"ONNX export: {name} takes no key/value cache or padding masks");
        if (samples.Count != 1) throw new ArgumentException($"ONNX export: {name} takes one input (image [batch, {model.InChannels}, H, W]), got {samples.Count} sample inputs");
        var sample = samples[0];
        if (sample.DType != DType.Float32 || sample.Rank != 4 || sample.Size(1) != model.InChannels || sample.Size(0) < 1 || sample.Size(2) < 1 || sample.Size(3) < 1)
            throw new ArgumentException($"ONNX export: {name}: image must be Float32 [batch, {model.InChannels}, H, W], got {sample.DType} {Shape.Format(sample.Shape)}");
        int h = sample.Size(2), w = sample.Size(3);
        var g = new OnnxGraph("resnet");
        g.Metadata("attncore.vision", JsonSerializer.Serialize(new { attention = model.Attention.ToString(), channels = model.InChannels, height = h, width = w, classes = model.NumClasses }));
        var image = g.Input("image", OnnxGraph.ElementType.Float, "batch", model.InChannels, h, w);
        var conv1 = OnnxLayers.Child<Conv2d>(model, "conv1");
        var x = g.Relu(OnnxLayers.Emit(g, OnnxLayers.Child<BatchNorm2d>(model, "bn1"), "bn1", OnnxLayers.Emit(g, conv1, "conv1", image)), "relu");
        (h, w) = (ConvOut(conv1, h), ConvOut(conv1, w));
        // The ImageNet stem (its 7x7 convolution) is followed by ResNet's 3x3/2 max pool, padding 1.
        if (conv1.KernelSize == 7)
        {
            x = g.Node("MaxPool", [x], "maxpool", OnnxGraph.Attribute.Ints("kernel_shape", 3, 3), OnnxGraph.Attribute.Ints("strides", 2, 2), OnnxGraph.Attribute.Ints("pads", 1, 1, 1, 1));
            (h, w) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        }
        for (int s = 0; s < model.Stages.Count; s++)
            for (int b = 0; b < model.Stages[s].Count; b++)
                (x, h, w) = Block(g, (ResidualBlock)model.Stages[s][b], $"layer{s + 1}.{b}", x, h, w);
        var pooled = g.Node("Flatten", [g.Node("GlobalAveragePool", [x], "avgpool")], "flatten", OnnxGraph.Attribute.Int("axis", 1));
        g.Output(OnnxLayers.Emit(g, model.Classifier, "fc", pooled), "logits", OnnxGraph.ElementType.Float, "batch", model.NumClasses);
        return g;
    }
}
