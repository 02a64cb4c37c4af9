using AttnCore.Backends;
using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using AttnCore.Tests.Reference;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using NUnit.Framework;
using Mask = AttnCore.Tests.Kernels.AttentionMasks.Kind;
using AttentionMasks = AttnCore.Tests.Kernels.AttentionMasks;
using CpuAttention = AttnCore.Kernels.Cpu.Attention;
using GpuAttention = AttnCore.Kernels.Gpu.Attention;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The fused attention kernels of ILGPU devices (Kernels/Gpu/Attention.cs) against the float64 reference and
/// the CPU's fused kernel: raw storages through <see cref="IBackend"/> (offsets, [B, L, H, D] views, masks,
/// dropout, lengths that are not multiples of the tiles), then through Tensor and autograd, then against the
/// composite matmul-softmax-matmul on the same device. Shapes stay small: every emulated thread is an OS thread.
/// </summary>
public class AttentionGpuTests(string deviceName) : DeviceFixture<AttentionGpuTests>(deviceName)
{
    static Device Gpu => TestDevice;
    static IBackend B => TestDevice.Backend;

    // The device's caching allocator is shared by every fixture of the process: hand back what these tests
    // left cached, so fixtures that count driver allocations start from the state they would without this one.
    [OneTimeTearDown]
    public void ReturnCachedBuffers() => ((IlgpuBackend)TestDevice.Backend).Memory.Trim();

    public record Case(string Name, int B, int H, int Lq, int Lk, int D, bool Causal, Mask Mask, float Dropout, bool Strided, int KvHeads = 0)
    {
        public override string ToString() => Name;
    }

    public static readonly Case[] Cases =
    [
        new("plain_d8", 2, 2, 7, 11, 8, false, Mask.None, 0, false),
        new("causal_fewer_queries_than_keys_d16", 1, 2, 5, 13, 16, true, Mask.None, 0, false),
        new("causal_more_queries_than_keys_rows_see_nothing", 1, 1, 9, 5, 8, true, Mask.None, 0, false),
        new("per_batch_mask_with_a_fully_hidden_row_d12", 2, 1, 6, 9, 12, false, Mask.PerBatchWithHiddenRow, 0, false),
        new("dropout_causal_d20", 1, 2, 10, 10, 20, true, Mask.None, 0.3f, false),
        new("strided_BLHD_views_causal_padding", 2, 3, 9, 9, 8, true, Mask.KeyPadding, 0, true),
        new("several_key_tiles_padding_dropout", 1, 1, 20, 45, 16, true, Mask.KeyPadding, 0.2f, false),
        new("dim_128_the_device_maximum", 1, 1, 3, 37, 128, false, Mask.None, 0, false),
        new("bias_2d_mask_lq_ne_lk_d12", 2, 2, 5, 11, 12, false, Mask.Bias2d, 0, false),
        new("per_row_mask_key_stride_0", 1, 2, 6, 7, 8, false, Mask.PerRow, 0, false),
        new("gqa_2_query_heads_per_kv_head_mask_dropout", 2, 4, 6, 9, 8, true, Mask.Bias2d, 0.2f, false, 2),
        new("multi_query_strided_padding", 1, 3, 7, 10, 8, false, Mask.KeyPadding, 0, true, 1),
    ];

    const float Sentinel = 7f; // outside the views: the kernels must leave it alone

    static float[] Rand(Generator g, long n) { var x = new float[n]; for (long i = 0; i < n; i++) x[i] = (float)g.NextNormal(); return x; }
    static double[] D(float[] x) => Array.ConvertAll(x, f => (double)f);

    static Storage Upload(float[] data) => DeviceStorage.Upload(B, data);
    static float[] Download(Storage s, long n) => DeviceStorage.Download(B, s, n);

    static void Near(float[] got, double[] want, double tol, string what)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < got.Length; i++)
        {
            if (double.IsNegativeInfinity(want[i]) && float.IsNegativeInfinity(got[i])) continue;
            if (!(Math.Abs(got[i] - want[i]) <= tol * (1 + Math.Abs(want[i]))))
                Assert.Fail($"{what}: element {i} is {got[i]:R}, expected {want[i]:R}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Forward_and_backward_on_raw_storages_match_the_float64_reference_and_the_cpu_kernel(Case c)
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        int hkv = c.KvHeads == 0 ? c.H : c.KvHeads;
        var shape = new AttentionShape(c.B, c.H, c.Lq, c.Lk, c.D, 1f / MathF.Sqrt(c.D), c.Causal, c.Dropout, seed, c.KvHeads);
        // Contiguous operands start at element 3; strided ones are [B, L, H, D] in memory, read as [B, H, L, D].
        AttentionOperand Op(int heads, int l) => c.Strided ? new AttentionOperand(0, (long)l * heads * c.D, c.D, (long)heads * c.D) : new AttentionOperand(3, (long)heads * l * c.D, (long)l * c.D, c.D);
        var (qo, ko) = (Op(c.H, c.Lq), Op(hkv, c.Lk));
        long qn = 3 + (long)c.B * c.H * c.Lq * c.D, kn = 3 + (long)c.B * hkv * c.Lk * c.D;
        float[] q = Rand(g, qn), k = Rand(g, kn), v = Rand(g, kn), dO = Rand(g, qn);
        var (mask, mo) = AttentionMasks.Make(c.Mask, c.B, c.H, c.Lq, c.Lk, g);

        // float64 reference, and the CPU's fused float32 kernel (for dropout: the same entries must drop).
        double[] Filled(long n) { var a = new double[n]; Array.Fill(a, Sentinel); return a; }
        var ro = Filled(qn); var rl = new double[c.B * c.H * c.Lq];
        AttentionReference.Forward(shape, D(q), qo, D(k), ko, D(v), ko, ro, qo, rl, D(mask), mo);
        var co = new float[qn]; Array.Fill(co, Sentinel); var cl = new float[rl.Length];
        CpuAttention.Forward(shape, q, qo, k, ko, v, ko, co, qo, cl, mask, mo);

        var o = new float[qn]; Array.Fill(o, Sentinel);
        var dq0 = new float[qn]; Array.Fill(dq0, Sentinel);
        var dk0 = new float[kn]; Array.Fill(dk0, Sentinel);
        using var sq = new Owned(Upload(q)); using var sk = new Owned(Upload(k)); using var sv = new Owned(Upload(v)); using var sg = new Owned(Upload(dO));
        using var so = new Owned(Upload(o)); using var sl = new Owned(B.Allocate(DType.Float32, rl.Length));
        using var sp = new Owned(mask.Length > 0 ? Upload(mask) : null);
        using var sdq = new Owned(Upload(dq0)); using var sdk = new Owned(Upload(dk0)); using var sdv = new Owned(Upload(dk0));

        B.AttentionForward(shape, sq.S!, qo, sk.S!, ko, sv.S!, ko, so.S!, qo, sl.S!, sp.S, mo);
        var go = Download(so.S!, qn); var gl = Download(sl.S!, rl.Length);
        string ctx = $"{c.Name} on {Gpu} seed={seed}";
        Near(go, ro, 2e-5, $"O {ctx}");
        Near(gl, rl, 2e-5, $"lse {ctx}");
        Near(go, D(co), 2e-5, $"O vs the CPU kernel {ctx}");
        if (c.Mask == Mask.PerBatchWithHiddenRow)
            for (int h = 0; h < c.H; h++) Assert.That(gl[((c.B - 1) * c.H + h) * c.Lq + 2], Is.EqualTo(float.NegativeInfinity), $"a query that sees no key has lse -inf, {ctx}");

        B.AttentionBackward(shape, sq.S!, qo, sk.S!, ko, sv.S!, ko, so.S!, qo, sg.S!, qo, sl.S!, sp.S, mo, sdq.S!, qo, sdk.S!, ko, sdv.S!, ko);
        var rdq = Filled(qn); var rdk = Filled(kn); var rdv = Filled(kn);
        AttentionReference.Backward(shape, D(q), qo, D(k), ko, D(v), ko, D(dO), qo, D(mask), mo, rdq, qo, rdk, ko, rdv, ko);
        void Same(Storage s, double[] want, string name)
        {
            double scale = want.Where(x => x != Sentinel).Select(Math.Abs).DefaultIfEmpty(0).Max();
            var got = Download(s, want.Length);
            for (int i = 0; i < got.Length; i++)
                if (!(Math.Abs(got[i] - want[i]) <= 1e-4 * (1 + scale)))
                    Assert.Fail($"{name}[{i}] is {got[i]:R}, float64 reference {want[i]:R}, {ctx}");
        }
        Same(sdq.S!, rdq, "dQ"); Same(sdk.S!, rdk, "dK"); Same(sdv.S!, rdv, "dV");
    }

    /// <summary>Releases a storage at the end of a test (null allowed: an absent mask).</summary>
    sealed class Owned(Storage? s) : IDisposable
    {
        public Storage? S { get; } = s;
        public void Dispose() => S?.Release();
    }

    /// <summary>
    /// The GPU build of each attention kernel compiles to PTX and declares at most 48 KB of shared memory (the
    /// most a CUDA block gets from ILGPU, which never raises the limit), read from the PTX itself.
    /// </summary>
    [Test]
    public void Gpu_builds_fit_the_48_kb_shared_memory_of_a_cuda_block()
    {
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        var arch = CudaArchitecture.SM_80;
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_80, null);
        foreach (var name in new[] { "ForwardKernel", "KeyValueGradKernel", "QueryGradKernel" })
        {
            var method = typeof(GpuAttention).GetMethod(name)!.MakeGenericMethod(typeof(AttnCore.Kernels.Gpu.AttentionGpuTiles));
            var compiled = (PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), new KernelSpecialization());
            long bytes = System.Text.RegularExpressions.Regex.Matches(compiled.PTXAssembly, @"\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]")
                .Sum(m => long.Parse(m.Groups[1].Value));
            Assert.That(bytes, Is.GreaterThan(16 * 1024).And.LessThanOrEqualTo(48 * 1024), $"{name}: {bytes} bytes of shared memory");
        }
    }

    [Test]
    public void The_device_dropout_decision_is_the_cpu_decision()
    {
        var rng = new Random(12345);
        foreach (float p in new[] { 1e-7f, 0.1f, 0.3f, 0.5f, 0.9f, 0.99999f })
        {
            ulong threshold = GpuAttention.DropThreshold(p);
            int kept = 0;
            for (int n = 0; n < 20000; n++)
            {
                ulong seed = (ulong)rng.NextInt64();
                int b = rng.Next(64), h = rng.Next(64), i = rng.Next(5000), j = rng.Next(5000);
                bool cpu = CpuAttention.Keep(seed, b, h, i, j, p);
                Assert.That(GpuAttention.Keep(seed, b, h, i, j, threshold), Is.EqualTo(cpu), $"p={p} seed={seed} b={b} h={h} i={i} j={j}");
                kept += cpu ? 1 : 0;
            }
            Assert.That(kept / 20000.0, Is.EqualTo(1 - p).Within(0.02), $"keep rate at p={p}");
        }
    }

    // The output and the gradients of the inputs, copied to the host; the device output is disposed.
    static (Tensor O, Tensor[] Grads) ToHost(Tensor o, params Tensor[] inputs)
    {
        var grads = inputs.Select(t => t.Grad!.To(Device.Cpu)).ToArray();
        using var oc = o.To(Device.Cpu);
        o.Dispose();
        return (oc.Detach(), grads);
    }

    // Upstream gradient w and the loss sum(o ∘ w): every output element gets its own weight.
    static Tensor Loss(Tensor o, Tensor w) => (o * w).Sum();

    static void SameTensor(Tensor got, Tensor want, double tol, string what)
    {
        Assert.That(got.Shape, Is.EqualTo(want.Shape), what);
        var a = got.ToArray<float>(); var b = want.ToArray<float>();
        double scale = b.Select(x => (double)Math.Abs(x)).DefaultIfEmpty(0).Max();
        for (int i = 0; i < a.Length; i++)
            if (!(Math.Abs(a[i] - b[i]) <= tol * (1 + scale))) Assert.Fail($"{what}: element {i} is {a[i]:R}, expected {b[i]:R}");
    }

    [Test]
    public void Scaled_dot_product_attention_on_the_device_takes_the_fused_op_and_matches_the_cpu_with_dropout()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        // q arrives as a [B, T, H, D] tensor viewed as [B, H, T, D]; head dim 12 is not a power of two.
        using var q = Tensor.Randn([2, 6, 2, 12], g); using var k = Tensor.Randn([2, 2, 9, 12], g); using var v = Tensor.Randn([2, 2, 9, 12], g);
        using var w = Tensor.Randn([2, 2, 6, 12], g);
        using var pad = Tensor.FromArray(Enumerable.Range(0, 18).Select(i => i == 3 || i >= 9 ? 1f : 0f).ToArray(), [2, 9]); // batch 1: every key hidden
        (Tensor O, Tensor[] Grads) Run(Device dev)
        {
            using var qd = q.To(dev); using var kd = k.To(dev); using var vd = v.To(dev); using var wd = w.To(dev); using var pd = pad.To(dev);
            qd.RequiresGrad_(); kd.RequiresGrad_(); vd.RequiresGrad_();
            using var qv = qd.Transpose(1, 2);
            var o = Tensor.ScaledDotProductAttention(qv, kd, vd, pd, causal: false, dropout: 0.25, generator: new Generator(seed ^ 99));
            Assert.That(o.GradFn?.Kind, Is.EqualTo(OpKind.Attention), $"fused op on {dev}");
            using (var loss = Loss(o, wd)) loss.Backward();
            return ToHost(o, qd, kd, vd);
        }
        var (oc, gc) = Run(Device.Cpu);
        var (og, gg) = Run(Gpu);
        try
        {
            string ctx = $"on {Gpu} seed={seed}";
            SameTensor(og, oc, 2e-5, $"O {ctx}");
            Assert.That(og.ToArray<float>().Skip(2 * 6 * 12), Is.All.EqualTo(0f), $"batch 1 sees no key: zero output {ctx}");
            string[] names = ["dQ", "dK", "dV"];
            for (int i = 0; i < 3; i++) SameTensor(gg[i], gc[i], 1e-4, $"{names[i]} {ctx}");
        }
        finally { foreach (var t in gc.Concat(gg).Append(oc).Append(og)) t.Dispose(); }
    }

    [Test]
    public void Packed_self_attention_on_the_device_matches_the_cpu()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        // 2 heads of 8, T = 7, causal with padding and dropout; qkv [B, T, 3·D] with D = 16.
        using var qkv = Tensor.Randn([2, 7, 48], g); using var w = Tensor.Randn([2, 7, 16], g);
        using var pad = Tensor.FromArray(Enumerable.Range(0, 14).Select(i => i % 7 == 5 ? 1f : 0f).ToArray(), [2, 7]);
        (Tensor O, Tensor Grad) Run(Device dev)
        {
            using var x = qkv.To(dev); using var wd = w.To(dev); using var pd = pad.To(dev);
            x.RequiresGrad_();
            var o = Tensor.PackedSelfAttention(x, 2, pd, causal: true, dropout: 0.1, generator: new Generator(seed ^ 7));
            Assert.That(o.GradFn?.Kind, Is.EqualTo(OpKind.PackedAttention), $"fused op on {dev}");
            using (var loss = Loss(o, wd)) loss.Backward();
            var grad = x.Grad!.To(Device.Cpu);
            using var oc = o.To(Device.Cpu);
            o.Dispose();
            return (oc.Detach(), grad);
        }
        var (oc, gc) = Run(Device.Cpu);
        var (og, gg) = Run(Gpu);
        try
        {
            SameTensor(og, oc, 2e-5, $"O on {Gpu} seed={seed}");
            SameTensor(gg, gc, 1e-4, $"dqkv on {Gpu} seed={seed}");
        }
        finally { oc.Dispose(); og.Dispose(); gc.Dispose(); gg.Dispose(); }
    }

    [Test]
    public void Masked_grouped_query_attention_on_the_device_matches_the_cpu_with_dropout_and_gradients()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        // 4 query heads over 2 key/value heads, an additive [Tq, Tk] mask (query 1 sees no key), custom scale.
        using var q = Tensor.Randn([2, 4, 5, 8], g); using var k = Tensor.Randn([2, 2, 7, 8], g); using var v = Tensor.Randn([2, 2, 7, 8], g);
        using var w = Tensor.Randn([2, 4, 5, 8], g);
        using var mask = Tensor.FromArray(Enumerable.Range(0, 35).Select(i => i / 7 == 1 || i % 4 == 2 ? float.NegativeInfinity : (float)g.NextNormal()).ToArray(), [5, 7]);
        using var qkv = Tensor.Randn([2, 5, (4 + 2 * 2) * 8], g); using var wp = Tensor.Randn([2, 5, 32], g);
        (Tensor O, Tensor[] Grads) Run(Device dev)
        {
            using var qd = q.To(dev); using var kd = k.To(dev); using var vd = v.To(dev); using var wd = w.To(dev); using var md = mask.To(dev);
            using var xd = qkv.To(dev); using var wpd = wp.To(dev);
            qd.RequiresGrad_(); kd.RequiresGrad_(); vd.RequiresGrad_(); xd.RequiresGrad_();
            var o = Tensor.ScaledDotProductAttention(qd, kd, vd, dropout: 0.2, generator: new Generator(seed ^ 5), scale: 0.4, mask: md);
            Assert.That(o.GradFn?.Kind, Is.EqualTo(OpKind.Attention), $"fused op on {dev}");
            using var packed = Tensor.PackedSelfAttention(xd, 4, causal: true, mask: md.Narrow(1, 0, 5), kvHeads: 2);
            Assert.That(packed.GradFn?.Kind, Is.EqualTo(OpKind.PackedAttention), $"fused packed op on {dev}");
            using (var loss = Loss(o, wd) + Loss(packed, wpd)) loss.Backward();
            var (oc, grads) = ToHost(o, qd, kd, vd, xd);
            return (oc, [.. grads, packed.To(Device.Cpu)]);
        }
        var (oc, gc) = Run(Device.Cpu);
        var (og, gg) = Run(Gpu);
        try
        {
            string ctx = $"on {Gpu} seed={seed}";
            SameTensor(og, oc, 2e-5, $"O {ctx}");
            var rows = og.ToArray<float>();
            for (int bh = 0; bh < 8; bh++) Assert.That(rows.Skip((bh * 5 + 1) * 8).Take(8), Is.All.EqualTo(0f), $"query 1 sees no key: zero output {ctx}");
            string[] names = ["dQ", "dK", "dV", "dqkv (packed)", "O (packed)"];
            for (int i = 0; i < gc.Length; i++) SameTensor(gg[i], gc[i], i == 4 ? 2e-5 : 1e-4, $"{names[i]} {ctx}");
        }
        finally { foreach (var t in gc.Concat(gg).Append(oc).Append(og)) t.Dispose(); }
    }

    [Test]
    public void Fused_gradients_on_the_device_equal_the_composite_path_on_the_device()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        using var q = Tensor.Randn([1, 2, 5, 16], g, device: Gpu).RequiresGrad_();
        using var k = Tensor.Randn([1, 2, 11, 16], g, device: Gpu).RequiresGrad_();
        using var v = Tensor.Randn([1, 2, 11, 16], g, device: Gpu).RequiresGrad_();
        using var w = Tensor.Randn([1, 2, 5, 16], g, device: Gpu);
        using var pad = Tensor.FromArray(Enumerable.Range(0, 11).Select(i => i == 2 || i == 7 ? 1f : 0f).ToArray(), [1, 11], Gpu);
        Tensor[] Grads(Func<Tensor> attend)
        {
            q.Grad = null; k.Grad = null; v.Grad = null;
            using (var o = attend())
            using (var loss = Loss(o, w)) loss.Backward();
            Tensor[] r = [q.Grad!, k.Grad!, v.Grad!];
            q.Grad = null; k.Grad = null; v.Grad = null;
            return r;
        }
        var fused = Grads(() => Tensor.ScaledDotProductAttention(q, k, v, pad, causal: true));
        var composite = Grads(() => { var (o, weights) = Tensor.AttentionWithWeights(q, k, v, pad, causal: true); weights.Dispose(); return o; });
        try
        {
            string[] names = ["dQ", "dK", "dV"];
            for (int i = 0; i < 3; i++) SameTensor(fused[i], composite[i], 1e-4, $"{names[i]} fused vs composite on {Gpu} seed={seed}");
        }
        finally { foreach (var t in fused.Concat(composite)) t.Dispose(); }
    }

    [Test]
    public void Backward_is_deterministic_bit_for_bit()
    {
        var g = new Generator(5);
        using var q = Tensor.Randn([1, 2, 13, 8], g, device: Gpu).RequiresGrad_();
        using var k = Tensor.Randn([1, 2, 13, 8], g, device: Gpu).RequiresGrad_();
        using var v = Tensor.Randn([1, 2, 13, 8], g, device: Gpu).RequiresGrad_();
        float[][] Once()
        {
            q.Grad = null; k.Grad = null; v.Grad = null;
            using (var o = Tensor.ScaledDotProductAttention(q, k, v, causal: true))
            using (var loss = o.Sum()) loss.Backward();
            var r = new[] { q.Grad!.ToArray<float>(), k.Grad!.ToArray<float>(), v.Grad!.ToArray<float>() };
            q.Grad!.Dispose(); k.Grad!.Dispose(); v.Grad!.Dispose();
            q.Grad = null; k.Grad = null; v.Grad = null;
            return r;
        }
        var first = Once();
        var second = Once();
        for (int i = 0; i < 3; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"gradient {i} on {Gpu}");
    }

    [Test]
    public void Heads_above_the_device_maximum_take_the_composite_path()
    {
        var g = new Generator(9);
        int d = GpuAttention.MaxDim + 2;
        using var q = Tensor.Randn([1, 1, 3, d], g); using var k = Tensor.Randn([1, 1, 4, d], g); using var v = Tensor.Randn([1, 1, 4, d], g);
        using var qd = q.To(Gpu); using var kd = k.To(Gpu); using var vd = v.To(Gpu);
        qd.RequiresGrad_();
        using var og = Tensor.ScaledDotProductAttention(qd, kd, vd, causal: true);
        Assert.That(og.GradFn?.Kind, Is.Not.EqualTo(OpKind.Attention), "composite ops, not the fused kernel");
        using var oc = Tensor.ScaledDotProductAttention(q, k, v, causal: true);
        SameTensor(og, oc, 2e-5, $"O on {Gpu}");
    }

    [Test]
    public void Bad_inputs_name_the_op_and_the_shapes()
    {
        using var x = new Owned(B.Allocate(DType.Float32, 4 * 130));
        using var lse = new Owned(B.Allocate(DType.Float32, 4));
        var big = new AttentionShape(1, 1, 2, 2, 130, 1, false);
        var op = AttentionOperand.Contiguous(1, 2, 130);
        var ex = Assert.Throws<ArgumentException>(() => B.AttentionForward(big, x.S!, op, x.S!, op, x.S!, op, x.S!, op, lse.S!, null, default));
        Assert.That(ex!.Message, Does.Contain("AttentionForward").And.Contain("130").And.Contain(GpuAttention.MaxDim.ToString()));

        var shape = new AttentionShape(2, 1, 2, 3, 8, 1, false);
        var qo = AttentionOperand.Contiguous(1, 2, 8); var ko = AttentionOperand.Contiguous(1, 3, 8);
        using var shortMask = new Owned(B.Allocate(DType.Float32, 5));
        ex = Assert.Throws<ArgumentException>(() => B.AttentionForward(shape, x.S!, qo, x.S!, ko, x.S!, ko, x.S!, qo, lse.S!, shortMask.S, new AttentionMaskOperand(0, 3, 0, 0, 1)));
        Assert.That(ex!.Message, Does.Contain("mask (5 elements").And.Contain("[2,1,2,3]"));
        using var small = new Owned(B.Allocate(DType.Float32, 10));
        ex = Assert.Throws<ArgumentException>(() => B.AttentionBackward(shape, small.S!, qo, x.S!, ko, x.S!, ko, x.S!, qo, x.S!, qo, lse.S!, null, default, x.S!, qo, x.S!, ko, x.S!, ko));
        Assert.That(ex!.Message, Does.Contain("AttentionBackward").And.Contain("[2,1,2,8]"));

        using var qt = Tensor.Zeros([1, 1, 2, 8], DType.Float32, Gpu);
        using var hostPad = Tensor.Zeros([1, 2]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(qt, qt, qt, hostPad));
        Assert.That(ex!.Message, Does.Contain("Attention").And.Contain("different devices"));
    }
}
