using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The ILGPU kernels on ILGPU's CPU accelerator against the SIMD CPU backend: same ops, same inputs, small
/// shapes (every emulated GPU thread is an OS thread).
/// </summary>
[TestFixture, Category("Gpu"), NonParallelizable]
public class IlgpuBackendTests
{
    static Device Gpu => Device.IlgpuCpu;

    static void SameOnBoth(Func<Tensor[], Tensor> op, Tensor[] cpuInputs, double tol, string what)
    {
        using var cpu = op(cpuInputs);
        var moved = cpuInputs.Select(t => t.To(Gpu)).ToArray();
        try
        {
            using var gpu = op(moved);
            Assert.That(gpu.Device, Is.EqualTo(Gpu), what);
            Close(gpu, NdArray.From(cpu), tol, tol, what);
        }
        finally { foreach (var t in moved) t.Dispose(); }
    }

    [Test]
    public void Unary_ops_on_strided_views_match_the_cpu_backend()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        using var x = Make([3, 5, 4], Layouts.Transposed, g);
        using var pos = (x.Abs() + 0.1).Contiguous();
        (string, Func<Tensor[], Tensor>)[] ops =
        [
            ("Neg", t => -t[0]), ("Abs", t => t[0].Abs()), ("Exp", t => t[0].Exp()), ("Tanh", t => t[0].Tanh()), ("Sigmoid", t => t[0].Sigmoid()),
            ("Relu", t => t[0].Relu()), ("Gelu", t => t[0].Gelu()), ("GeluTanh", t => t[0].Gelu(true)), ("Silu", t => t[0].Silu()),
            ("Sin", t => t[0].Sin()), ("Cos", t => t[0].Cos()), ("Square", t => t[0].Square()), ("Sign", t => t[0].Sign()),
            ("Scalars", t => (2.0 - t[0] * 3.0 + 1) / 4.0), ("Clamp", t => t[0].Clamp(-0.5, 0.5)), ("GeluGrad", t => t[0].GeluDerivative()),
        ];
        foreach (var (name, f) in ops) SameOnBoth(f, [x], 2e-6, $"{name} seed={seed}");
        (string, Func<Tensor[], Tensor>)[] positive = [("Log", t => t[0].Log()), ("Sqrt", t => t[0].Sqrt()), ("Rsqrt", t => t[0].Rsqrt()), ("Reciprocal", t => t[0].Reciprocal()), ("Pow", t => t[0].Pow(1.5))];
        foreach (var (name, f) in positive) SameOnBoth(f, [pos], 5e-6, $"{name} seed={seed}");
    }

    [Test]
    public void Binary_ops_broadcast_like_the_cpu_backend()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        using var a = Make([2, 3, 4], Layouts.Strided, g);
        using var b = Make([3, 1], Layouts.Contiguous, g);
        (string, Func<Tensor[], Tensor>)[] ops =
        [
            ("Add", t => t[0] + t[1]), ("Sub", t => t[0] - t[1]), ("Mul", t => t[0] * t[1]), ("Div", t => t[0] / t[1]),
            ("Maximum", t => t[0].Maximum(t[1])), ("Minimum", t => t[0].Minimum(t[1])), ("Lt", t => t[0].Lt(t[1])), ("Eq", t => t[0].Eq(t[0])),
            ("Where", t => Tensor.Where(t[0].Gt(0), t[0], t[1])), ("MaskedFill", t => t[0].MaskedFill(t[1].Gt(0), -1)),
        ];
        foreach (var (name, f) in ops) SameOnBoth(f, [a, b], 2e-6, $"{name} seed={seed}");
    }

    [Test]
    public void Reductions_and_argmax_match_the_cpu_backend()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        using var x = Make([4, 3, 5], Layouts.Transposed, g);
        SameOnBoth(t => t[0].Sum(), [x], 1e-5, $"Sum seed={seed}");
        SameOnBoth(t => t[0].Sum([0, 2], keepDim: true), [x], 1e-5, $"SumDims seed={seed}");
        SameOnBoth(t => t[0].Max(1), [x], 0, $"Max seed={seed}");
        SameOnBoth(t => t[0].Min([0]), [x], 0, $"Min seed={seed}");
        SameOnBoth(t => t[0].Mean(-1), [x], 1e-6, $"Mean seed={seed}");
        using var cpuArg = x.ArgMax(1);
        using var gx = x.To(Gpu);
        using var gpuArg = gx.ArgMax(1);
        Assert.That(gpuArg.ToArray<long>(), Is.EqualTo(cpuArg.ToArray<long>()));
    }

    [Test]
    public void Tiled_matmul_matches_the_cpu_gemm_with_transposes_and_batch_broadcast()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        foreach (var (sa, sb, la, lb) in new[]
        {
            (new[] { 5, 7 }, new[] { 7, 9 }, Layouts.Contiguous, Layouts.Contiguous),
            (new[] { 6, 5 }, new[] { 5, 3 }, Layouts.Transposed, Layouts.Transposed),
            (new[] { 2, 3, 4 }, new[] { 4, 5 }, Layouts.Contiguous, Layouts.Strided),
            (new[] { 1, 9 }, new[] { 9, 1 }, Layouts.Contiguous, Layouts.Contiguous),
        })
        {
            using var a = Make(sa, la, g);
            using var b = Make(sb, lb, g);
            SameOnBoth(t => t[0].MatMul(t[1]), [a, b], 1e-5, $"{Shape.Format(sa)}@{Shape.Format(sb)} {la}/{lb} seed={seed}");
        }
    }

    [Test]
    public void Gpu_op_codes_line_up_with_the_engine_enums()
    {
        Assert.That(Enum.GetNames<AttnCore.Kernels.Gpu.Elementwise.Unary>(), Is.EqualTo(Enum.GetNames<AttnCore.Backends.UnaryOp>()));
        Assert.That(Enum.GetNames<AttnCore.Kernels.Gpu.Elementwise.Binary>(), Is.EqualTo(Enum.GetNames<AttnCore.Backends.BinaryOp>()));
    }

    [Test]
    public void Tensors_round_trip_and_print_from_the_device()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2.5f, -3 }, null, Gpu);
        Assert.That(x.ToArray<float>(), Is.EqualTo(new float[] { 1, 2.5f, -3 }));
        Assert.That(x.ToString(), Is.EqualTo("tensor([ 1.0000,  2.5000, -3.0000], device='ilgpu-cpu')"));
        using var i = Tensor.FromArray(new long[] { 4, 5 }, null, Gpu);
        Assert.That(i.ToArray<long>(), Is.EqualTo(new long[] { 4, 5 }));
        using var back = x.To(Device.Cpu);
        Assert.That(back.Device, Is.EqualTo(Device.Cpu));
    }

    [Test]
    public void Mixing_devices_or_unsupported_ops_give_clear_errors()
    {
        using var c = Tensor.Zeros([2, 3]);
        using var d = Tensor.Zeros([2, 3], DType.Float32, Gpu);
        var ex = Assert.Throws<ArgumentException>(() => _ = c + d);
        Assert.That(ex!.Message, Is.EqualTo("Add: tensors are on different devices: cpu [2,3] and ilgpu-cpu [2,3]; move one with To(device)"));
        var ns = Assert.Throws<NotSupportedException>(() => d.Softmax());
        Assert.That(ns!.Message, Does.Contain("Softmax").And.Contain("ilgpu-cpu"));
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros([2], DType.Float64, Gpu));
    }

    [Test]
    public void Freed_device_buffers_are_reused_by_the_caching_allocator()
    {
        var backend = (AttnCore.Backends.IlgpuBackend)Gpu.Backend;
        using (var warm = Tensor.Ones([100], DType.Float32, Gpu)) { }
        long before = backend.DriverAllocations;
        for (int i = 0; i < 20; i++) { using var t = Tensor.Ones([100], DType.Float32, Gpu); using var u = t * 2.0; }
        Assert.That(backend.DriverAllocations, Is.LessThanOrEqualTo(before + 1));
    }
}
