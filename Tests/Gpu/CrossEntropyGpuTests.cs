using AttnCore.Backends;
using AttnCore.Tests.Engine;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Cross-entropy on ILGPU devices: every PyTorch fixture case of CrossEntropyTests (weights, ignore_index, label
/// smoothing, probability targets and their gradient, every reduction, strided [N, C, d1, d2] logits) with both row
/// teams, the loss kept on the device, and device-side errors. Sizes stay small: every emulated thread is an OS thread.
/// </summary>
public class CrossEntropyGpuTests(string deviceName) : DeviceFixture<CrossEntropyGpuTests>(deviceName)
{
    static IlgpuBackend B => (IlgpuBackend)TestDevice.Backend;

    [TearDown]
    public void RestoreModes() => B.RowTeam = RowTeamMode.Auto;

    static IEnumerable<RowTeamMode> Teams() => B.HasWarpShuffles ? [RowTeamMode.Warp, RowTeamMode.Group] : [RowTeamMode.Group];

    [Test]
    public void Every_pytorch_case_matches_with_both_row_teams()
    {
        var cases = CrossEntropyCase.Load();
        foreach (var team in Teams())
        {
            B.RowTeam = team;
            foreach (var c in cases) c.AssertMatches(TestDevice, DType.Float32);
        }
    }

    [Test]
    public void Long_rows_match_the_cpu_backend()
    {
        // 1100 classes: more than one pass of every team over the row; weights, smoothing and an ignored row.
        var rng = new Random(5);
        var x = Enumerable.Range(0, 3 * 1100).Select(_ => (float)(4 * rng.NextDouble() - 2)).ToArray();
        x[7] += 500; // stability
        var t = new long[] { 17, -100, 1099 };
        var w = Enumerable.Range(0, 1100).Select(i => 0.5f + i % 7 * 0.25f).ToArray();
        foreach (var team in Teams())
        {
            B.RowTeam = team;
            var (want, wantGrad) = LossAndGrad(Device.Cpu, x, t, w);
            var (got, gotGrad) = LossAndGrad(TestDevice, x, t, w);
            Assert.That(got, Is.EqualTo(want).Within(2e-5 * Math.Abs(want)), $"loss {team}");
            for (int i = 0; i < gotGrad.Length; i++) Assert.That(gotGrad[i], Is.EqualTo(wantGrad[i]).Within(1e-7 + 1e-5 * Math.Abs(wantGrad[i])), $"grad {i} {team}");
        }
    }

    static (double Loss, float[] Grad) LossAndGrad(Device device, float[] x, long[] t, float[] w)
    {
        using var scope = new TensorScope();
        var logits = Tensor.FromArray(x, [3, 1100], device).RequiresGrad_();
        var loss = logits.CrossEntropy(Tensor.FromArray(t, null, device), -100, 0.1, Tensor.FromArray(w, null, device));
        loss.Backward();
        return (loss.Item(), logits.Grad!.ToArray<float>());
    }

    [Test]
    public void Loss_and_gradient_stay_on_the_device_in_every_mode()
    {
        using var scope = new TensorScope();
        var logits = Tensor.Randn([2, 5, 3], new Generator(1), DType.Float32, TestDevice).RequiresGrad_();
        var targets = Tensor.FromArray(new long[] { 0, 4, -100, 2, 1, 3 }, [2, 3], TestDevice);
        var probabilities = Tensor.Randn([2, 5, 3], new Generator(2), DType.Float32, TestDevice).RequiresGrad_();
        var weight = Tensor.FromArray(new float[] { 1, 2, 0.5f, 1, 3 }, null, TestDevice);
        var upstream = Tensor.Ones([2, 3], DType.Float32, TestDevice);
        // Compile every kernel first (compilation may read back nothing, but keep the count to the steady state).
        Run();
        long up = B.Uploads, down = B.Downloads;
        Run();
        Assert.That((B.Uploads - up, B.Downloads - down), Is.EqualTo((0L, 0L)), "(uploads, downloads) of cross-entropy forward and backward");

        void Run()
        {
            foreach (var reduction in new[] { Reduction.Mean, Reduction.Sum, Reduction.None })
            {
                var a = logits.CrossEntropy(targets, -100, 0.1, weight, reduction);
                a.Backward(reduction == Reduction.None ? upstream : null);
                var b = logits.CrossEntropy(probabilities, -100, 0.1, weight, reduction);
                b.Backward(reduction == Reduction.None ? upstream : null);
            }
        }
    }

    [Test]
    public void Weights_on_another_device_and_out_of_range_targets_are_reported()
    {
        using var logits = Tensor.Zeros([2, 4], DType.Float32, TestDevice);
        using var targets = Tensor.FromArray(new long[] { 1, 3 }, null, TestDevice);
        using var hostWeight = Tensor.Ones([4]);
        Assert.That(Assert.Throws<ArgumentException>(() => logits.CrossEntropy(targets, weight: hostWeight))!.Message,
            Does.StartWith("CrossEntropy: tensors are on different devices"));
        // A bad target in a spatial batch is found by the device-side check and reported at the next synchronisation.
        using var spatial = Tensor.Zeros([1, 4, 3], DType.Float32, TestDevice);
        using var bad = Tensor.FromArray(new long[] { 0, 9, -100 }, [1, 3], TestDevice);
        using var loss = spatial.CrossEntropy(bad, reduction: Reduction.None);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => loss.ToArray<float>());
        Assert.That(ex!.Message, Does.StartWith("CrossEntropy: index 9 is out of range for the classes of logits [1,4,3]"));
    }
}
