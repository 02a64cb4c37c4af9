using AttnCore.Models.Nn;
using AttnCore.Models.Vision;
using AttnCore.Tests.Reference;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// The vision modules and networks beyond the PyTorch fixture: the fused attention's learned-bias gradient by
/// finite differences (float64 GradCheck), the architectures' parameter counts against torchvision's published ones,
/// the factory's names, Grad-CAM's feature gradient and the captured attention maps against closed forms, BatchNorm2d
/// and AdaptiveAvgPool2d against float64 loops, and the errors bad input gets.
/// </summary>
[TestFixture, Category("Models")]
public class VisionModelTests
{
    static Tensor Rand(Generator g, params int[] shape) => Tensor.Randn(shape, g, DType.Float64).RequiresGrad_();

    [Test]
    public void Fused_attention_learned_bias_gradient_passes_gradcheck()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        // a full [B, H, Tq, Tk] bias
        Tensor[] full = [Rand(g, 2, 2, 3, 4), Rand(g, 2, 2, 5, 4), Rand(g, 2, 2, 5, 4), Rand(g, 2, 2, 3, 5)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], mask: x[3]), full, seed, name: "AttentionBias"), $"seed={seed}");
        // a broadcast [Tq, Tk] bias with the causal mask (its gradient is summed over B and H)
        Tensor[] causal = [Rand(g, 2, 2, 4, 3), Rand(g, 2, 2, 4, 3), Rand(g, 2, 2, 4, 3), Rand(g, 4, 4)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], mask: x[3], causal: true), causal, seed, name: "AttentionBiasCausal"), $"seed={seed}");
        // grouped-query heads, a key padding mask hiding some keys, and a per-head bias [H, 1, Tk]
        using var pad = Tensor.FromArray(new double[] { 0, 0, 1, 0, 0, 0, 0, 1, 1, 0 }, [2, 5]);
        Tensor[] gqa = [Rand(g, 2, 4, 3, 4), Rand(g, 2, 2, 5, 4), Rand(g, 2, 2, 5, 4), Rand(g, 4, 1, 5)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], pad, mask: x[3], scale: 0.7), gqa, seed, name: "AttentionBiasGqa"), $"seed={seed}");
    }

    [Test]
    public void Relative_logits_match_a_loop_over_positions()
    {
        using var block = new BotMhsa2d(8, heads: 2, maxExtent: 4, generator: new Generator(3));
        int h = 3, w = 4, d = 4;
        using var scope = new TensorScope();
        var q = Tensor.Randn([1, 2, h * w, d], new Generator(4));
        var logits = NdArray.From(block.RelativeLogits(q, h, w));
        var qa = NdArray.From(q);
        var rh = NdArray.From(block.RelHeight);
        var rw = NdArray.From(block.RelWidth);
        for (int head = 0; head < 2; head++)
            for (int p = 0; p < h * w; p++)
                for (int k = 0; k < h * w; k++)
                {
                    double expected = 0;
                    int rowOffset = k / w - p / w + 3, colOffset = k % w - p % w + 3;
                    for (int c = 0; c < d; c++)
                        expected += qa.Data[(head * h * w + p) * d + c] * (rh.Data[rowOffset * d + c] + rw.Data[colOffset * d + c]);
                    Assert.That(logits.Data[(head * h * w + p) * h * w + k], Is.EqualTo(expected).Within(1e-5 + 1e-5 * Math.Abs(expected)), $"head {head} query {p} key {k}");
                }
    }

    // torchvision's published parameter counts (ImageNet, 1000 classes): resnet18 11,689,512; resnet34 21,797,672; resnet50 25,557,032.
    [TestCase("resnet18", 11_689_512L)]
    [TestCase("resnet34", 21_797_672L)]
    [TestCase("resnet50", 25_557_032L)]
    public void ImageNet_resnets_have_torchvisions_parameters(string name, long parameters)
    {
        using var model = VisionModels.Create(name, 3, 1000, new Generator(1));
        Assert.That(model.ParameterCount(), Is.EqualTo(parameters));
        var state = model.StateDict();
        Assert.That(state["conv1.weight"].Shape, Is.EqualTo(new[] { 64, 3, 7, 7 }));
        Assert.That(state["bn1.num_batches_tracked"].DType, Is.EqualTo(DType.Int64));
        Assert.That(state["fc.weight"].Shape, Is.EqualTo(new[] { 1000, name == "resnet50" ? 2048 : 512 }));
        Assert.That(state.ContainsKey("layer2.0.downsample.0.weight") && state.ContainsKey("layer2.0.downsample.1.running_var"));
        Assert.That(state.ContainsKey("layer1.0.downsample.0.weight"), Is.EqualTo(name == "resnet50"), "layer1 changes width only in bottlenecks");
        if (name == "resnet50") Assert.That(state["layer4.2.conv3.weight"].Shape, Is.EqualTo(new[] { 2048, 512, 1, 1 }));
    }

    [Test]
    public void Every_cifar_name_builds_a_network_from_images_to_logits()
    {
        foreach (var baseName in new[] { "resnet20", "resnet32", "resnet56" })
            foreach (var suffix in new[] { "", "-se", "-cbam", "-mhsa" })
            {
                using var model = VisionModels.Create(baseName + suffix, 1, 7, new Generator(2));
                using var scope = new TensorScope();
                var y = model.Forward(Tensor.Randn([2, 1, 12, 12], new Generator(3)));
                Assert.That(y.Shape, Is.EqualTo(new[] { 2, 7 }), baseName + suffix);
                Assert.That(y.ToArray<float>().All(float.IsFinite), baseName + suffix);
                int n = (int.Parse(baseName[6..]) - 2) / 6; // depth 6n + 2
                Assert.That(model.Stages.Select(s => s.Count), Is.EqualTo(new[] { n, n, n }), baseName);
            }
        Assert.That(VisionModels.Parse("ResNet50-MHSA"), Is.EqualTo(("resnet50", VisionAttention.Mhsa)));
        var ex = Assert.Throws<ArgumentException>(() => VisionModels.Create("resnet21-se", 3, 10));
        Assert.That(ex!.Message, Does.Contain("resnet21-se").And.Contain("resnet20-cbam").And.Contain("resnet50-mhsa"));
    }

    [Test]
    public void Attention_blocks_sit_where_the_papers_put_them()
    {
        using var se = VisionModels.Create("resnet20-se", 3, 10);
        Assert.That(se.Blocks().All(b => b.AttentionModule is SqueezeExcitation), "an SE block in every residual branch");
        using var mhsa = VisionModels.Create("resnet20-mhsa", 3, 10);
        var blocks = mhsa.Blocks().ToArray();
        Assert.That(blocks.Select(b => b.AttentionModule is BotMhsa2d), Is.EqualTo(Enumerable.Range(0, 9).Select(i => i >= 6)), "MHSA only in the last stage");
        Assert.That(mhsa.StateDict().ContainsKey("layer3.0.mhsa.rel_height") && !mhsa.StateDict().ContainsKey("layer3.0.conv2.weight"));
    }

    [Test]
    public void Features_as_a_leaf_receive_the_grad_cam_gradient()
    {
        using var model = VisionModels.Create("resnet20", 3, 5, new Generator(7));
        using var scope = new TensorScope();
        var (logits, features) = model.ForwardWithFeatures(Tensor.Randn([2, 3, 16, 16], new Generator(8)), featuresAsLeaf: true);
        Assert.That(features.Shape, Is.EqualTo(new[] { 2, 64, 4, 4 }));
        logits.Select(0, 0).Select(0, 3).Backward();
        // y_c = Σ_k W[c, k] · mean_ij A_k,ij + b_c: ∂y_c/∂A_k,ij = W[c, k] / (h·w) for image 0, zero for image 1
        var grad = NdArray.From(features.Grad!);
        var w = NdArray.From(model.Classifier.Weight);
        for (int n = 0; n < 2; n++)
            for (int k = 0; k < 64; k++)
                for (int ij = 0; ij < 16; ij++)
                    Assert.That(grad.Data[(n * 64 + k) * 16 + ij], Is.EqualTo(n == 0 ? w.Data[3 * 64 + k] / 16 : 0).Within(1e-7), $"image {n} channel {k} position {ij}");
        var (inGraph, f2) = model.ForwardWithFeatures(Tensor.Randn([1, 3, 16, 16], new Generator(9)));
        Assert.That(f2.IsLeaf, Is.False, "by default the features stay in the graph");
    }

    [Test]
    public void Captured_attention_maps_are_probabilities_of_the_documented_shapes()
    {
        using var scope = new TensorScope();
        using var cbam = VisionModels.Create("resnet20-cbam", 3, 10, new Generator(1));
        cbam.CaptureAttention = true;
        cbam.Forward(Tensor.Randn([2, 3, 16, 16], new Generator(2)));
        var last = cbam.Blocks().Last().LastAttention!;
        Assert.That(last.Shape, Is.EqualTo(new[] { 2, 1, 4, 4 }));
        Assert.That(last.RequiresGrad || last.GradFn is not null, Is.False, "a detached copy");
        Assert.That(last.ToArray<float>().All(v => v is > 0 and < 1), "a sigmoid map");

        using var mhsa = VisionModels.Create("resnet20-mhsa", 3, 10, new Generator(1));
        mhsa.CaptureAttention = true;
        mhsa.Forward(Tensor.Randn([2, 3, 16, 16], new Generator(2)));
        var weights = NdArray.From(mhsa.Blocks().Last().LastAttention!);
        Assert.That(weights.Shape, Is.EqualTo(new[] { 2, 4, 16, 16 }));
        for (int row = 0; row < 2 * 4 * 16; row++)
            Assert.That(weights.Data.Skip(row * 16).Take(16).Sum(), Is.EqualTo(1).Within(1e-5), $"row {row} sums to 1");
        Assert.That(mhsa.Blocks().First().LastAttention, Is.Null, "blocks without CBAM or MHSA capture nothing");
    }

    [Test]
    public void BatchNorm2d_moves_running_statistics_and_evaluates_with_them()
    {
        using var bn = new BatchNorm2d(3, eps: 1e-5, momentum: 0.2);
        using var scope = new TensorScope();
        var x = Tensor.Randn([4, 3, 2, 5], new Generator(5)) * 2 + 1;
        bn.Forward(x);
        var xa = NdArray.From(x);
        var mean = NdArray.From(bn.RunningMean);
        var variance = NdArray.From(bn.RunningVar);
        for (int c = 0; c < 3; c++)
        {
            var v = Enumerable.Range(0, 4).SelectMany(n => Enumerable.Range(0, 10).Select(i => xa.Data[(n * 3 + c) * 10 + i])).ToArray();
            double m = v.Average(), unbiased = v.Sum(e => (e - m) * (e - m)) / (v.Length - 1);
            Assert.That(mean.Data[c], Is.EqualTo(0.2 * m).Within(1e-5), $"running mean {c}");
            Assert.That(variance.Data[c], Is.EqualTo(0.8 + 0.2 * unbiased).Within(1e-5), $"running var {c} (unbiased)");
        }
        Assert.That(bn.BatchesTracked.ToArray<long>()[0], Is.EqualTo(1));
        bn.Eval();
        var y = NdArray.From(bn.Forward(x));
        for (int i = 0; i < y.Data.Length; i++)
        {
            int c = i / 10 % 3;
            Assert.That(y.Data[i], Is.EqualTo((xa.Data[i] - mean.Data[c]) / Math.Sqrt(variance.Data[c] + 1e-5)).Within(1e-5), $"eval output {i}");
        }
        Assert.That(bn.BatchesTracked.ToArray<long>()[0], Is.EqualTo(1), "evaluation counts no batch");
    }

    [Test]
    public void Adaptive_average_pooling_matches_pytorchs_windows()
    {
        using var scope = new TensorScope();
        var x = Tensor.Randn([1, 2, 5, 7], new Generator(6), DType.Float64).RequiresGrad_();
        var y = new AdaptiveAvgPool2d(3).Forward(x);
        Assert.That(y.Shape, Is.EqualTo(new[] { 1, 2, 3, 3 }));
        var xa = NdArray.From(x);
        var ya = NdArray.From(y);
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                {
                    // PyTorch: start = floor(i·H/out), end = ceil((i+1)·H/out)
                    int r0 = i * 5 / 3, r1 = (int)Math.Ceiling((i + 1) * 5 / 3.0), c0 = j * 7 / 3, c1 = (int)Math.Ceiling((j + 1) * 7 / 3.0);
                    double sum = 0;
                    for (int r = r0; r < r1; r++) for (int q = c0; q < c1; q++) sum += xa.Data[(c * 5 + r) * 7 + q];
                    Assert.That(ya.Data[(c * 3 + i) * 3 + j], Is.EqualTo(sum / ((r1 - r0) * (c1 - c0))).Within(1e-12), $"cell {c},{i},{j}");
                }
        Assert.DoesNotThrow(() => GradCheck.Assert(t => new AdaptiveAvgPool2d(3).Forward(t[0]), [x], 1, name: "AdaptiveAvgPool2d"));
    }

    [Test]
    public void Bad_input_names_the_module_and_the_shapes()
    {
        using var model = VisionModels.Create("resnet20-mhsa", 3, 10);
        using var gray = Tensor.Zeros([1, 1, 32, 32]);
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(gray));
        Assert.That(ex!.Message, Does.Contain("ResNet").And.Contain("[N, 3, H, W]").And.Contain("[1,1,32,32]"));
        using var big = Tensor.Zeros([1, 3, 160, 160]);
        ex = Assert.Throws<ArgumentException>(() => model.Forward(big));
        Assert.That(ex!.Message, Does.Contain("BotMhsa2d").And.Contain("40x40").And.Contain("16x16"));
        ex = Assert.Throws<ArgumentException>(() => new Conv2d(6, 4, 3, groups: 4));
        Assert.That(ex!.Message, Does.Contain("Conv2d").And.Contain("groups 4"));
        ex = Assert.Throws<ArgumentException>(() => new BotMhsa2d(10, heads: 4));
        Assert.That(ex!.Message, Does.Contain("BotMhsa2d").And.Contain("channels 10").And.Contain("heads 4"));
        using var bn = new BatchNorm2d(4);
        using var wrong = Tensor.Zeros([2, 3, 4, 4]);
        ex = Assert.Throws<ArgumentException>(() => bn.Forward(wrong));
        Assert.That(ex!.Message, Does.Contain("BatchNorm2d").And.Contain("[N, 4, H, W]").And.Contain("[2,3,4,4]"));
    }

    [Test]
    public void ResNet50_with_mhsa_trains_forward_and_backward_at_64x64()
    {
        using var model = new ResNet50WithAttention(VisionAttention.Mhsa, 3, 10, new Generator(1));
        using var scope = new TensorScope();
        var x = Tensor.Randn([2, 3, 64, 64], new Generator(2));
        var loss = model.Forward(x).CrossEntropy(Tensor.FromArray(new long[] { 1, 7 }));
        loss.Backward();
        Assert.That(double.IsFinite(loss.Item()));
        foreach (var (name, p) in model.NamedParameters())
            Assert.That(p.Grad is not null && p.Grad.ToArray<float>().All(float.IsFinite), $"{name} has a finite gradient");
        Assert.That(model.StateDict()["layer4.1.mhsa.rel_width"].Grad!.ToArray<float>().Any(v => v != 0), "the relative logits learn");
    }

    [Test, Explicit("ResNet-50 at 224x224 takes tens of seconds on the shared 2-core machine")]
    public void ResNet50_with_attention_trains_forward_and_backward_at_224x224()
    {
        foreach (var attention in new[] { VisionAttention.Mhsa, VisionAttention.SE })
        {
            using var model = new ResNet50WithAttention(attention, 3, 1000, new Generator(1));
            using var scope = new TensorScope();
            var loss = model.Forward(Tensor.Randn([1, 3, 224, 224], new Generator(2))).CrossEntropy(Tensor.FromArray(new long[] { 42 }));
            loss.Backward();
            Assert.That(double.IsFinite(loss.Item()), $"{attention}");
            Assert.That(model.Parameters().All(p => p.Grad is not null), $"{attention}: every parameter has a gradient");
        }
    }
}
