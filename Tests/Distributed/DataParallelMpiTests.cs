using System.Collections.Concurrent;
using AttnCore.Distributed;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary>
/// The Open MPI binding and data-parallel training, run for real: each test starts 2 ranks with mpirun
/// (<see cref="MpiRun"/>) and checks what they computed against one process computing the same thing alone.
/// </summary>
[TestFixture, Category("Engine"), NonParallelizable]
public class DataParallelMpiTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);
    private static readonly ConcurrentDictionary<string, (MpiRun.Result Run, float[] Parameters)> Trained = new();

    [Test]
    public void Libmpi_is_opened_rtld_global_and_both_ranks_initialise()
    {
        // Without RTLD_GLOBAL Open MPI's plug-ins cannot resolve libmpi's symbols and MPI_Init_thread fails on every rank.
        var r = MpiRun.Run(MpiRun.Launch(2, MpiRun.TestAssembly, "mpi-worker", "init"), Limit);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.ToString());
        Assert.That(r.Stdout, Does.Contain("init rank 0 of 2 launched-by-mpi True").And.Contain("init rank 1 of 2 launched-by-mpi True"), r.ToString());
    }

    [Test]
    public void Collectives_give_the_predicted_values_and_an_mpi_error_names_the_call()
    {
        var r = MpiRun.Run(MpiRun.Launch(2, MpiRun.TestAssembly, "mpi-worker", "collectives"), Limit);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.ToString());
        Assert.That(r.Stdout, Does.Contain("collectives ok rank 0 of 2").And.Contain("collectives ok rank 1 of 2"), r.ToString());
    }

    [TestCase("gpt")]
    [TestCase("conv")]
    public void Two_ranks_compute_exactly_the_weighted_sum_of_their_shard_gradients(string model)
    {
        // The reference computes each shard's gradient in this process and sums them the way the ranks do (share x
        // gradient in float32, rank 0 + rank 1), without DataParallel: the same float operations, so equal bit for bit.
        // It starts from seed 1 while rank 1 starts from seed 2, so equality also proves rank 0's parameters were broadcast.
        var (run, distributed) = TrainOnTwoRanks(model, DataParallelOptions.DefaultBucketBytes);
        var emulated = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, Steps, out _, emulatedRanks: 2);
        Assert.That(distributed, Is.EqualTo(emulated), run.ToString());
    }

    [TestCase("gpt", 1e-3, 1e-6)]
    [TestCase("conv", 1e-2, 1e-6)]
    [TestCase("gpt", 1e-2, 1e-5)]
    public void Two_ranks_with_half_batches_match_one_process_with_the_whole_batch(string model, double learningRate, double tolerance)
    {
        // Same global batches (29 samples, batches of 8: the last one 5, split 3 + 2 and weighted by share). Not bit for bit:
        // the sums run in another order (GEMMs and reductions over 4 rows, then a sum of two, against one over 8), so the
        // gradients differ by float32 rounding: 1.2e-7 of their norm (the test below). AdamW moves each element by about
        // lr g / (|g| + eps) whatever the gradient's size, so where a gradient is a near-cancelling sum not much larger
        // than eps (1e-8), its rounding is a large share of it and of the step, and that part of the difference grows with
        // the learning rate. At lr 1e-3 (the default of `train gpt`) the GPT's parameters agree to the issue's 1e-6
        // (measured 1.0e-7 on 2026-12-02). At lr 1e-2, ten times it, they differ by 2.5e-6, worst at blocks.1.mlp.fc.weight[197]
        // (-0.0221548 on 2 ranks, -0.0221669 alone); that case is held to 1e-5 as the record of the effect. SGD, which
        // moves parameters in proportion to the gradient, agrees to 1e-6 at any rate (the next test).
        var (run, distributed) = TrainOnTwoRanks(model, DataParallelOptions.DefaultBucketBytes, learningRate);
        var alone = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, Steps, out var report, learningRate: learningRate);
        Assert.That(distributed, Has.Length.EqualTo(alone.Length));
        double worst = 0;
        string where = "";
        int at = 0;
        foreach (var (name, numel) in report.Layout)
        {
            for (int i = at; i < at + numel; i++)
                if (Math.Abs(distributed[i] - alone[i]) > worst) (worst, where) = (Math.Abs(distributed[i] - alone[i]), $"{name}[{i - at}]: {distributed[i]:R} on 2 ranks, {alone[i]:R} alone");
            at += numel;
        }
        double norm = Math.Sqrt(distributed.Zip(alone).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)) / alone.Sum(v => (double)v * v));
        Assert.That(norm, Is.LessThanOrEqualTo(tolerance), $"relative difference {norm:E2} of the parameter vector; largest at {where}\n{run}");
        // And the parameters did move: the comparison is not between two untouched initialisations.
        var start = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, 0, out _);
        Assert.That(start.Zip(alone).Max(p => Math.Abs(p.First - p.Second)), Is.GreaterThan(1e-3));
    }

    [TestCase("gpt")]
    [TestCase("conv")]
    public void Shard_gradients_match_the_whole_batch_gradient_to_1e_6_and_so_do_parameters_trained_by_sgd(string model)
    {
        // The emulated ranks compute what 2 ranks do bit for bit (the test above), in this process. The issue's 1e-6 relative
        // holds for what data parallelism computes, the gradient (measured 1.2e-7 GPT, 5e-8 conv), and for parameters that
        // an optimizer moves in proportion to it: SGD with momentum, 6 steps (measured 1.5e-8 GPT, 8e-8 conv).
        static float[] Flat(Tensor[] ps) => ps.SelectMany(p => p.Grad!.ToArray<float>()).ToArray();
        float[]? sharded = null, whole = null;
        DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, 1, out _, emulatedRanks: 2, beforeStep: (_, ps) => sharded = Flat(ps));
        DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, 1, out _, beforeStep: (_, ps) => whole = Flat(ps));
        Assert.That(RelativeDifference(sharded!, whole!), Is.LessThanOrEqualTo(1e-6), "the synchronised gradient of step 1");

        static Optimizer Momentum(IEnumerable<Tensor> ps) => new Sgd(ps, 0.1, momentum: 0.9);
        var twoRanks = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, Steps, out _, emulatedRanks: 2, optimizer: Momentum);
        var alone = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, Steps, out _, optimizer: Momentum);
        var start = DataParallelScenario.Train(model, Communicator.World, DataParallelOptions.DefaultBucketBytes, 0, out _);
        Assert.That(RelativeDifference(twoRanks, alone), Is.LessThanOrEqualTo(1e-6), "parameters after 6 SGD steps");
        Assert.That(RelativeDifference(alone, start), Is.GreaterThan(1e-3), "SGD moved the parameters");
    }

    private static double RelativeDifference(float[] a, float[] reference) =>
        Math.Sqrt(a.Zip(reference).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)) / reference.Sum(v => (double)v * v));

    [Test]
    public void One_bucket_many_tiny_buckets_and_the_default_give_the_same_parameters()
    {
        var (oneRun, one) = TrainOnTwoRanks("gpt", long.MaxValue);
        var (tinyRun, tiny) = TrainOnTwoRanks("gpt", 1);
        var (_, standard) = TrainOnTwoRanks("gpt", DataParallelOptions.DefaultBucketBytes);
        Assert.That(oneRun.Stdout, Does.Contain("\"Buckets\":1,"), oneRun.ToString());
        // One bucket per parameter, and most of them started while backward was still running.
        Assert.That(tinyRun.Stdout, Does.Match("\"Buckets\":(\\d\\d),\"StartedInBackward\":(\\d\\d+)"), tinyRun.ToString());
        // Each element is the same two-term sum whatever the bucketing, so the results agree bit for bit.
        Assert.That(tiny, Is.EqualTo(one));
        Assert.That(standard, Is.EqualTo(one));
    }

    [Test]
    public void Different_models_on_the_ranks_are_refused_at_start_naming_the_tensor()
    {
        var r = MpiRun.Run(MpiRun.Launch(2, MpiRun.TestAssembly, "mpi-worker", "mismatch"), Limit);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0), r.ToString());
        Assert.That(r.Stderr, Does.Contain("the ranks hold different models: tensor 1 is parameter 'wte.weight' float32 [11,8] on rank 1 but parameter 'wte.weight' float32 [11,16] on rank 0"), r.ToString());
        Assert.That(r.Stdout, Does.Not.Contain("no mismatch"), r.ToString());
    }

    private const int Steps = 6;

    private static (MpiRun.Result Run, float[] Parameters) TrainOnTwoRanks(string model, long bucketBytes, double learningRate = DataParallelScenario.DefaultLearningRate) =>
        Trained.GetOrAdd($"{model}/{bucketBytes}/{learningRate:R}", _ =>
        {
            string output = Path.Combine(Path.GetTempPath(), $"attncore-ddp-{Guid.NewGuid():N}.bin");
            try
            {
                var r = MpiRun.Run(MpiRun.Launch(2, MpiRun.TestAssembly, "mpi-worker", "train", model, bucketBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Steps.ToString(System.Globalization.CultureInfo.InvariantCulture), output, learningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture)), Limit);
                Assert.That(r.ExitCode, Is.EqualTo(0), r.ToString());
                var bytes = File.ReadAllBytes(output);
                var values = new float[bytes.Length / sizeof(float)];
                Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
                return (r, values);
            }
            finally { File.Delete(output); }
        });
}
