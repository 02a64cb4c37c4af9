using AttnCore.Kernels;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Tensor.BatchNorm2dRelu and its backward op against the unfused BatchNorm2d followed by Relu (values, gradients,
/// running statistics), the op kind it records, Tensor.ReluBackward, and the argument checks of both backward ops.
/// </summary>
[TestFixture, Category("Engine")]
public class BatchNormReluOpTests
{
    static (double[] Y, double[] Dx, double[] Dw, double[] Db, double[] Rm, double[] Rv) Step(bool fused, bool training, DType dtype)
    {
        using var scope = new TensorScope();
        var gen = new Generator(21);
        var x = (Tensor.Randn([3, 4, 5, 3], gen, DType.Float64) * 2 + 1).To(dtype).RequiresGrad_();
        var w = (Tensor.Randn([4], gen, DType.Float64) * 0.5 + 1).To(dtype).RequiresGrad_();
        var b = Tensor.Randn([4], gen, DType.Float64).To(dtype).RequiresGrad_();
        var rm = Tensor.Zeros([4], dtype);
        var rv = Tensor.Ones([4], dtype);
        var r = Tensor.Randn([3, 4, 5, 3], gen, DType.Float64).To(dtype);
        var y = fused ? x.BatchNorm2dRelu(rm, rv, w, b, training, 0.2) : x.BatchNorm2d(rm, rv, w, b, training, 0.2).Relu();
        (y * r).Sum().Backward();
        return (y.ToArray<double>(), x.Grad!.ToArray<double>(), w.Grad!.ToArray<double>(), b.Grad!.ToArray<double>(), rm.ToArray<double>(), rv.ToArray<double>());
    }

    [TestCase(true, DType.Float64, 1e-12), TestCase(true, DType.Float32, 2e-5), TestCase(false, DType.Float64, 1e-12)]
    public void Fused_op_matches_batch_norm_then_relu(bool training, DType dtype, double tol)
    {
        var want = Step(false, training, dtype);
        var got = Step(true, training, dtype);
        Assert.That(got.Y, Is.EqualTo(want.Y).Within(tol), "y");
        Assert.That(got.Y.Count(v => v == 0), Is.GreaterThan(10), "the ReLU clamps part of the output");
        Assert.That(got.Dx, Is.EqualTo(want.Dx).Within(tol), "dx");
        Assert.That(got.Dw, Is.EqualTo(want.Dw).Within(tol * 10), "dweight");
        Assert.That(got.Db, Is.EqualTo(want.Db).Within(tol * 10), "dbias");
        Assert.That(got.Rm, Is.EqualTo(want.Rm).Within(tol), "running mean");
        Assert.That(got.Rv, Is.EqualTo(want.Rv).Within(tol), "running var");
    }

    [Test]
    public void Training_records_the_fused_kind_which_saves_input_and_output()
    {
        using var x = Tensor.Randn([2, 3, 2, 2], 1, DType.Float64).RequiresGrad_();
        using var w = Tensor.Ones([3], DType.Float64).RequiresGrad_();
        using var y = x.BatchNorm2dRelu(null, null, w, null, training: true);
        Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.BatchNorm2dRelu));
        Assert.That(y.GradFn.Custom, Is.Null);
        Assert.That(y.GradFn.Saves, Is.EqualTo(Saves.Input0 | Saves.Output));
        Assert.That(y.GradFn.Inputs, Has.Length.EqualTo(2));
    }

    [Test]
    public void Evaluation_without_gradients_is_one_kernel_and_equals_the_unfused_result()
    {
        using var ng = new NoGrad();
        var gen = new Generator(22);
        using var x = Tensor.Randn([2, 3, 4, 4], gen, DType.Float64);
        using var rm = Tensor.Randn([3], gen, DType.Float64);
        using var rv = Tensor.FromArray(new double[] { 0.5, 2, 1 });
        using var w = Tensor.Randn([3], gen, DType.Float64);
        using var fused = x.BatchNorm2dRelu(rm, rv, w, null, training: false);
        using var bn = x.BatchNorm2d(rm, rv, w, null, training: false);
        using var plain = bn.Relu();
        Assert.That(fused.ToArray<double>(), Is.EqualTo(plain.ToArray<double>()).Within(1e-12));
    }

    [Test]
    public void Relu_backward_op_masks_by_the_output_and_is_the_relu_rule()
    {
        using var x = Tensor.FromArray(new double[] { -1, 0, 2, double.NaN, 3, -0.5 }, [2, 3]).RequiresGrad_();
        using var y = x.Relu();
        Assert.That(y.GradFn!.Saves, Is.EqualTo(Saves.Output), "ReLU keeps its output, not its input");
        using var g = Tensor.FromArray(new double[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        using var dx = Tensor.ReluBackward(g, y);
        Assert.That(dx.ToArray<double>(), Is.EqualTo(new double[] { 0, 0, 3, 0, 5, 0 }));
        // A strided gradient (transposed view) is read at its strides.
        using var gt = Tensor.FromArray(new double[] { 1, 4, 2, 5, 3, 6 }, [3, 2]).Transpose(0, 1);
        using var dxt = Tensor.ReluBackward(gt, y);
        Assert.That(dxt.ToArray<double>(), Is.EqualTo(new double[] { 0, 0, 3, 0, 5, 0 }));
        using var loss = (y * g).Sum();
        loss.Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 0, 0, 3, 0, 5, 0 }));
    }

    [Test]
    public void Scale_add_relu_matches_the_unfused_ops_and_records_its_kind()
    {
        double[][] Run(bool fused)
        {
            using var scope = new TensorScope();
            var g = new Generator(25);
            var x = Tensor.Randn([3, 4, 5, 6], g, DType.Float64).RequiresGrad_();
            var s = Tensor.Randn([3, 4, 1, 1], g, DType.Float64).RequiresGrad_();
            var r = Tensor.Randn([3, 4, 5, 6], g, DType.Float64).RequiresGrad_();
            var w = Tensor.Randn([3, 4, 5, 6], g, DType.Float64);
            var y = fused ? x.ScaleAddRelu(s, r) : (x * s).AddRelu(r);
            if (fused) Assert.That((y.GradFn!.Kind, y.GradFn.Saves), Is.EqualTo((OpKind.ScaleAddRelu, Saves.Input0 | Saves.Input1 | Saves.Output)));
            (y * w).Sum().Backward();
            return [y.ToArray<double>(), x.Grad!.ToArray<double>(), s.Grad!.ToArray<double>(), r.Grad!.ToArray<double>()];
        }
        var want = Run(false);
        var got = Run(true);
        Assert.That(got[0], Is.EqualTo(want[0]), "y");
        Assert.That(got[0].Count(v => v == 0), Is.GreaterThan(30), "some outputs clamped");
        Assert.That(got[1], Is.EqualTo(want[1]), "dx");
        Assert.That(got[2], Is.EqualTo(want[2]).Within(1e-12), "dscale (summed in another order)");
        Assert.That(got[3], Is.EqualTo(want[3]), "dresidual");
        // A scale that is not [N, C, 1, 1] runs the unfused ops.
        using var a = Tensor.Randn([2, 3, 2, 2], 1, DType.Float64);
        using var v = Tensor.Randn([1, 3, 1, 1], 2, DType.Float64);
        using var yv = a.ScaleAddRelu(v, a);
        using var av = a * v;
        using var plain = av.AddRelu(a);
        Assert.That(yv.ToArray<double>(), Is.EqualTo(plain.ToArray<double>()));
        var e = Assert.Throws<ArgumentException>(() => Tensor.ScaleAddReluBackward(a, a, a, v));
        Assert.That(e!.Message, Does.StartWith("ScaleAddReluBackward").And.Contain("[1,3,1,1]"));
    }

    [TestCase(2, 3, 0, 4), TestCase(0, 3, 2, 2)]
    public void Scale_add_relu_backward_on_empty_images_gives_a_zero_scale_gradient(int n, int c, int h, int w)
    {
        // Runs of length 0 sum nothing, so ds is 0 (the backend writes it over the uninitialised buffer); no runs give empty tensors.
        using var x = Tensor.Zeros([n, c, h, w], DType.Float32);
        using var s = Tensor.Ones([n, c, 1, 1], DType.Float32);
        var (dx, ds, dr) = Tensor.ScaleAddReluBackward(x, x, x, s);
        using (dx) using (ds) using (dr)
        {
            Assert.That(dx!.Shape, Is.EqualTo(new[] { n, c, h, w }));
            Assert.That(dr!.Shape, Is.EqualTo(new[] { n, c, h, w }));
            Assert.That(ds!.Shape, Is.EqualTo(new[] { n, c, 1, 1 }));
            Assert.That(ds.ToArray<float>(), Is.EqualTo(new float[n * c]));
        }
    }

    [Test]
    public void Add_relu_matches_add_then_relu_and_records_its_kind()
    {
        var gen = new Generator(23);
        double[] Run(bool fused, out double[] da, out double[] db)
        {
            using var scope = new TensorScope();
            var g2 = new Generator(24);
            var a = Tensor.Randn([2, 3, 4], g2, DType.Float64).RequiresGrad_();
            var b = Tensor.Randn([2, 3, 4], g2, DType.Float64).RequiresGrad_();
            var r = Tensor.Randn([2, 3, 4], g2, DType.Float64);
            var y = fused ? a.AddRelu(b) : (a + b).Relu();
            if (fused) Assert.That((y.GradFn!.Kind, y.GradFn.Saves), Is.EqualTo((OpKind.AddRelu, Saves.Output)));
            (y * r).Sum().Backward();
            da = a.Grad!.ToArray<double>(); db = b.Grad!.ToArray<double>();
            return y.ToArray<double>();
        }
        var want = Run(false, out var wa, out var wb);
        var got = Run(true, out var ga, out var gb);
        Assert.That(got, Is.EqualTo(want));
        Assert.That(got.Count(v => v == 0), Is.GreaterThan(3));
        Assert.That(ga, Is.EqualTo(wa)); Assert.That(gb, Is.EqualTo(wb));
        // Broadcast shapes take the unfused path and still give max(0, a + b).
        using var m = Tensor.Randn([2, 3], gen, DType.Float64);
        using var v = Tensor.Randn([3], gen, DType.Float64);
        using var yb = m.AddRelu(v);
        using var sum = m + v;
        using var plain = sum.Relu();
        Assert.That(yb.ToArray<double>(), Is.EqualTo(plain.ToArray<double>()));
    }

    [Test]
    public void Bad_arguments_name_the_op_and_the_shapes()
    {
        using var x = Tensor.Randn([2, 3, 2, 2], 1);
        using var dy = Tensor.Randn([2, 3, 2, 2], 2);
        using var y = Tensor.Randn([2, 3, 2, 2], 3);
        using var stat = Tensor.Ones([3]);
        using var wrongY = Tensor.Randn([2, 3, 1, 2], 4);
        using var y64 = Tensor.Randn([2, 3, 2, 2], 5, DType.Float64);
        using var flat = Tensor.Randn([6, 4], 6);

        var e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dReluBackward(dy, x, wrongY, stat, stat, null, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dReluBackward: output").And.Contain("[2,3,1,2]").And.Contain("[2,3,2,2]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dReluBackward(dy, x, y64, stat, stat, null, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dReluBackward").And.Contain("float64"));
        e = Assert.Throws<ArgumentException>(() => x.BatchNorm2dRelu(null, null, stat, Tensor.Ones([4]), training: true));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dRelu: bias must be [3]").And.Contain("[4]"));
        e = Assert.Throws<ArgumentException>(() => flat.BatchNorm2dRelu(null, null, null, null, training: true));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dRelu: input must be [N, C, H, W]"));
        e = Assert.Throws<ArgumentException>(() => x.BatchNorm2dRelu(null, null, null, null, training: false));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dRelu: evaluation mode needs the running mean and variance"));
        e = Assert.Throws<ArgumentException>(() => Tensor.ReluBackward(dy, wrongY));
        Assert.That(e!.Message, Does.StartWith("ReluBackward: gradient").And.Contain("[2,3,1,2]"));
        e = Assert.Throws<ArgumentException>(() => dy.AddRelu(y64));
        Assert.That(e!.Message, Does.StartWith("AddRelu").And.Contain("float64"));
        e = Assert.Throws<ArgumentException>(() => Tensor.ReluBackward(dy, y64));
        Assert.That(e!.Message, Does.StartWith("ReluBackward").And.Contain("float64"));
    }
}
