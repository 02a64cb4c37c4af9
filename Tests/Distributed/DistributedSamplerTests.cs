using AttnCore.Distributed;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary>Which samples each rank trains on, and the single-process world every command runs in without mpirun.</summary>
[TestFixture, Category("Engine")]
public class DistributedSamplerTests
{
    [TestCase(29, 8, 2)]
    [TestCase(30, 7, 3)]
    [TestCase(5, 8, 4)]
    [TestCase(2, 3, 4)]
    public void Every_sample_is_used_exactly_once_per_epoch_across_ranks_in_the_single_process_order(int n, int batch, int ranks)
    {
        var alone = new DistributedSampler(n, 0, 1, seed: 9).Batches(1, batch).ToArray();
        var perRank = Enumerable.Range(0, ranks).Select(r => new DistributedSampler(n, r, ranks, seed: 9).Batches(1, batch).ToArray()).ToArray();
        // The same number of steps on every rank (collectives stay matched), even when a shard is empty.
        Assert.That(perRank.Select(b => b.Length), Is.All.EqualTo(alone.Length));
        for (int k = 0; k < alone.Length; k++)
        {
            // Concatenating the ranks' shards in rank order gives the batch one process would take.
            var joined = perRank.SelectMany(b => b[k].Samples).ToArray();
            Assert.That(joined, Is.EqualTo(alone[k].Samples), $"batch {k}");
            Assert.That(perRank.Select(b => b[k].GlobalBatchSize), Is.All.EqualTo(alone[k].Samples.Length));
            var sizes = perRank.Select(b => b[k].Samples.Length).ToArray();
            Assert.That(sizes.Max() - sizes.Min(), Is.LessThanOrEqualTo(1));
        }
        Assert.That(alone.SelectMany(b => b.Samples).Order(), Is.EqualTo(Enumerable.Range(0, n)));
    }

    [Test]
    public void Epochs_are_different_permutations_and_a_seed_repeats_them()
    {
        var s = new DistributedSampler(100, 0, 1, seed: 4);
        Assert.That(s.EpochOrder(0), Is.Not.EqualTo(s.EpochOrder(1)));
        Assert.That(s.EpochOrder(3), Is.EqualTo(new DistributedSampler(100, 1, 2, seed: 4).EpochOrder(3)));
        Assert.That(s.EpochOrder(0).Order(), Is.EqualTo(Enumerable.Range(0, 100)));
        Assert.That(new DistributedSampler(5, 0, 1, 4, shuffle: false).EpochOrder(2), Is.EqualTo(new[] { 0, 1, 2, 3, 4 }));
    }

    [Test]
    public void Shards_split_a_batch_into_contiguous_parts_differing_by_at_most_one()
    {
        Assert.That(Enumerable.Range(0, 3).Select(r => DistributedSampler.Shard(8, r, 3)), Is.EqualTo(new[] { (0, 3), (3, 3), (6, 2) }));
        Assert.That(() => DistributedSampler.Shard(8, 3, 3), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("rank 3 is not one of 3 ranks"));
        Assert.That(() => new DistributedSampler(0, 0, 1, 1), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("the data set is empty"));
    }

    [Test]
    public void Without_mpirun_the_world_is_one_process_and_data_parallel_leaves_gradients_alone()
    {
        Assume.That(Communicator.LaunchedByMpi, Is.False, "the test host itself runs under mpirun");
        var world = Communicator.World;
        Assert.That((world.Rank, world.Size, world.IsPrimary), Is.EqualTo((0, 1, true)));
        var values = new[] { 1f, 2f };
        world.AllreduceSum(values);
        var gathered = new long[1];
        world.Allgather<long>([7], gathered);
        Assert.That((values, gathered), Is.EqualTo((new[] { 1f, 2f }, new long[] { 7 })));
        using var w = Tensor.FromArray(new float[] { 1, 2, 3 }).RequiresGrad_();
        using var dp = new DataParallel(world, [("w", w)], []);
        using (var loss = (w * w).Sum()) loss.Backward();
        dp.SynchronizeGradients();
        Assert.That(w.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 2, 4, 6 }));
        Assert.That(dp.BucketCount, Is.EqualTo(0));
        Assert.That(() => dp.SetBatchShare(3, 2), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("3 samples on this rank of 2"));
    }
}
