using AttnCore.Memory;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine"), NonParallelizable]
public class MemoryTests
{
    [Test]
    public void Using_a_disposed_tensor_throws_ObjectDisposedException()
    {
        var t = Tensor.Ones([3]);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.Exp());
        Assert.Throws<ObjectDisposedException>(() => t.ToArray<float>());
        Assert.DoesNotThrow(() => t.Dispose(), "double dispose is harmless");
        Assert.That(t.ToString(), Does.Contain("disposed"));
    }

    [Test]
    public void A_view_keeps_storage_alive_after_its_base_is_disposed()
    {
        var x = Tensor.Arange(6);
        var m = x.View(2, 3);
        var v = m.T;
        x.Dispose();
        m.Dispose();
        Assert.That(v.ToArray<float>(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
        var s = v.Storage;
        v.Dispose();
        Assert.That(s.IsFreed, Is.True, "last reference frees the storage");
    }

    [Test]
    public void TensorScope_disposes_what_was_made_inside_except_kept_tensors()
    {
        Tensor kept, inner;
        using (var scope = new TensorScope())
        {
            using var a = Tensor.Ones([4]);
            inner = a * 2.0;
            kept = scope.Keep(inner.Sum());
            Assert.That(scope.Count, Is.GreaterThanOrEqualTo(2));
        }
        Assert.That(inner.IsDisposed, Is.True);
        Assert.That(kept.IsDisposed, Is.False);
        Assert.That(kept.Item(), Is.EqualTo(8));
        kept.Dispose();
    }

    [Test]
    public void Steady_state_ops_reuse_pooled_arrays_instead_of_allocating()
    {
        using var x = Tensor.Randn([64, 64], 1);
        for (int i = 0; i < 3; i++) using (var s = new TensorScope()) { _ = x.MatMul(x).Softmax().Sum(1); }
        long before = CpuMemoryPool.Allocations;
        for (int i = 0; i < 50; i++) using (var s = new TensorScope()) { _ = x.MatMul(x).Softmax().Sum(1); }
        Assert.That(CpuMemoryPool.Allocations - before, Is.EqualTo(0), "the pool served every buffer");
    }
}
