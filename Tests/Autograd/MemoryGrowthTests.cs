using AttnCore.Memory;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

[TestFixture, Category("Autograd"), NonParallelizable]
public class MemoryGrowthTests
{
    [Test]
    public void A_thousand_training_steps_grow_neither_the_pool_nor_managed_memory()
    {
        var g = new Generator(11);
        using var x = Tensor.Randn([16, 8], g);
        using var targets = Tensor.RandInt(0, 4, [16, 1], g);
        var w1 = (Tensor.Randn([8, 32], g) * 0.3).RequiresGrad_();
        var b1 = Tensor.Zeros([32]).RequiresGrad_();
        var gamma = Tensor.Ones([32]).RequiresGrad_();
        var beta = Tensor.Zeros([32]).RequiresGrad_();
        var w2 = (Tensor.Randn([32, 4], g) * 0.3).RequiresGrad_();
        var ps = new[] { w1, b1, gamma, beta, w2 };
        using var opt = new AdamW(ps, 1e-2);
        double firstLoss = 0, lastLoss = 0;
        void Step(int i)
        {
            using var scope = new TensorScope();
            opt.ZeroGrad();
            var h = (x.MatMul(w1) + b1).Gelu().LayerNorm([32], gamma, beta);
            var logp = h.MatMul(w2).LogSoftmax(-1);
            var loss = -logp.Gather(1, targets).Mean();
            loss.Backward();
            GradClip.ClipGradNorm(ps, 1.0);
            opt.Step();
            if (i == 0) firstLoss = loss.Item();
            lastLoss = loss.Item();
        }
        for (int i = 0; i < 100; i++) Step(i);
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        long managedBefore = GC.GetTotalMemory(true);
        long allocationsBefore = CpuMemoryPool.Allocations, inUseBefore = CpuMemoryPool.BytesInUse;
        for (int i = 100; i < 1100; i++) Step(i);
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        long managedAfter = GC.GetTotalMemory(true);
        Assert.That(CpuMemoryPool.Allocations - allocationsBefore, Is.EqualTo(0), "no new pooled buffers in steady state");
        Assert.That(CpuMemoryPool.BytesInUse, Is.EqualTo(inUseBefore), "every buffer of a step went back to the pool");
        Assert.That(managedAfter - managedBefore, Is.LessThan(256 * 1024), "managed memory stays flat");
        Assert.That(lastLoss, Is.LessThan(firstLoss * 0.5), "and the model did learn");
        foreach (var p in ps) { p.Grad?.Dispose(); p.Dispose(); }
    }
}
