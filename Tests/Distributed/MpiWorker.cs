using System.Globalization;
using System.Text.Json;
using AttnCore.Distributed;
using AttnCore.Kernels.Cpu;
using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using AttnCore.Optim;

namespace AttnCore.Tests.Distributed;

/// <summary>
/// The test assembly's entry point, so that the Distributed tests can start it under mpirun
/// (<c>mpirun -np 2 dotnet AttnCore.Tests.dll mpi-worker SCENARIO ...</c>); the test host loads the assembly as a library
/// and never calls it. Each scenario exits 0 after MPI_Finalize, or prints one line on stderr and exits 1.
/// </summary>
public static class MpiWorker
{
    /// <summary>Runs one scenario on this rank.</summary>
    public static int Main(string[] args)
    {
        if (args.Length < 2 || args[0] != "mpi-worker")
        {
            Console.Error.WriteLine("usage: AttnCore.Tests mpi-worker init|collectives|train|mismatch ... (started by the Distributed tests under mpirun)");
            return 2;
        }
        try
        {
            var world = Communicator.World;
            world.Timeout = TimeSpan.FromSeconds(60);
            switch (args[1])
            {
                case "init": Console.WriteLine($"init rank {world.Rank} of {world.Size} launched-by-mpi {Communicator.LaunchedByMpi}"); break;
                case "collectives": Collectives(world); break;
                case "train": Train(world, args[2], long.Parse(args[3], CultureInfo.InvariantCulture), int.Parse(args[4], CultureInfo.InvariantCulture), args[5],
                    args.Length > 6 ? double.Parse(args[6], CultureInfo.InvariantCulture) : DataParallelScenario.DefaultLearningRate); break;
                case "mismatch": Mismatch(world); break;
                default: throw new ArgumentException($"unknown scenario '{args[1]}'");
            }
            world.Dispose();
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"rank {Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK")}: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static void Require(bool ok, string what)
    {
        if (!ok) throw new InvalidOperationException($"collectives: {what}");
    }

    // Values every rank can predict: rank r contributes (r + 1) * i, so the sum is S(S+1)/2 * i.
    private static unsafe void Collectives(Communicator world)
    {
        int r = world.Rank, size = world.Size;
        double ranksSum = size * (size + 1) / 2.0;
        var f = Enumerable.Range(0, 1000).Select(i => (float)((r + 1) * i)).ToArray();
        world.AllreduceSum(f);
        Require(f.Select((v, i) => v == (float)(ranksSum * i)).All(x => x), "float32 all-reduce sum");
        var d = Enumerable.Range(0, 1000).Select(i => (r + 1) * i * 0.1).ToArray();
        world.AllreduceSum(d);
        Require(d.Select((v, i) => Math.Abs(v - ranksSum * i * 0.1) <= 1e-12 * (1 + i)).All(x => x), "float64 all-reduce sum");
        var b = Enumerable.Range(0, 5).Select(i => (long)(r == size - 1 ? 100 + i : -1)).ToArray();
        world.Broadcast<long>(b, root: size - 1);
        Require(b.SequenceEqual([100, 101, 102, 103, 104]), $"broadcast from rank {size - 1}: got [{string.Join(",", b)}]");
        var all = new int[2 * size];
        world.Allgather<int>([10 * r, 10 * r + 1], all);
        Require(all.SequenceEqual(Enumerable.Range(0, size).SelectMany(k => new[] { 10 * k, 10 * k + 1 })), $"all-gather: got [{string.Join(",", all)}]");
        // A non-blocking all-reduce of a slice leaves the rest of the pinned buffer alone.
        var pinned = GC.AllocateArray<float>(300, pinned: true);
        for (int i = 0; i < pinned.Length; i++) pinned[i] = r + 1;
        var request = world.StartAllreduceSum(pinned, 100, 50);
        request.Wait();
        Require(pinned.Select((v, i) => v == (i >= 100 && i < 150 ? (float)ranksSum : r + 1)).All(x => x), "non-blocking all-reduce of elements [100, 150)");
        var pd = GC.AllocateArray<double>(8, pinned: true);
        pd.AsSpan().Fill(0.5 * (r + 1));
        var rd = world.StartAllreduceSum(pd, 0, 8);
        while (!rd.Test()) Thread.Yield();
        Require(pd.All(v => v == 0.5 * ranksSum), "non-blocking float64 all-reduce with Test");
        world.Barrier();
        // An MPI error code becomes an exception naming the call (the communicator returns errors instead of aborting).
        string? message = null;
        float one = 1;
        try { MpiNative.Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)(&one), -1, MpiNative.Export("ompi_mpi_float"), MpiNative.Export("ompi_mpi_op_sum"), MpiNative.Export("ompi_mpi_comm_world")), "MPI_Allreduce"); }
        catch (MpiException e) { message = e.Message; }
        Require(message is not null && message.StartsWith("MPI_Allreduce failed with MPI error", StringComparison.Ordinal) && message.Contains("count", StringComparison.OrdinalIgnoreCase),
            $"a negative count should fail naming MPI_Allreduce and the count, got: {message ?? "no exception"}");
        Console.WriteLine($"collectives ok rank {r} of {size}: {message}");
    }

    private static void Mismatch(Communicator world)
    {
        // Rank 1 builds its GPT one channel-width off: the start-up check must name the first tensor that differs.
        var cfg = new GptConfig(Vocab: 11, BlockSize: 8, Layers: 1, Heads: 2, Dim: world.Rank == 1 ? 8 : 16);
        using var model = new Gpt(cfg, new Generator(1));
        using var dp = new DataParallel(world, model.NamedParameters(), model.NamedBuffers());
        Console.WriteLine($"rank {world.Rank}: no mismatch detected");
    }

    private static void Train(Communicator world, string kind, long bucketBytes, int steps, string output, double learningRate)
    {
        var parameters = DataParallelScenario.Train(kind, world, bucketBytes, steps, out var report, learningRate: learningRate);
        if (world.IsPrimary)
        {
            using var w = new BinaryWriter(File.Create(output));
            foreach (var v in parameters) w.Write(v);
        }
        Console.WriteLine(JsonSerializer.Serialize(new { rank = world.Rank, report.Buckets, report.StartedInBackward }));
    }
}

/// <summary>
/// One training run shared by the MPI worker (2 ranks) and the in-process reference (a world of one): a small model, a
/// fixed synthetic data set of 29 samples (so the last global batch of 8 of each epoch holds 5, split 3 + 2), AdamW.
/// Each rank starts from its own initialisation (seed 1 + rank): only the broadcast of rank 0's parameters makes the runs agree.
/// </summary>
internal static class DataParallelScenario
{
    public const int Samples = 29, GlobalBatch = 8;
    public const double DefaultLearningRate = 1e-2;

    public sealed record Report(int Buckets, long StartedInBackward, (string Name, int Numel)[] Layout);

    /// <summary>
    /// Trains on <paramref name="world"/>. With <paramref name="emulatedRanks"/> above 1 (in a world of one) the process
    /// instead computes what that many ranks would: each shard's gradient of its mean loss, times the shard's share of the
    /// batch in float32, summed over shards in rank order: the DDP result written out independently of DataParallel.
    /// </summary>
    public static float[] Train(string kind, Communicator world, long bucketBytes, int steps, out Report report, int emulatedRanks = 1,
        Func<IEnumerable<Tensor>, Optimizer>? optimizer = null, Action<int, Tensor[]>? beforeStep = null, double learningRate = DefaultLearningRate)
    {
        int threads = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = 1;
        try { return Run(kind, world, bucketBytes, steps, emulatedRanks, optimizer, beforeStep, learningRate, out report); }
        finally { WorkerPool.ThreadCount = threads; }
    }

    // optimizer: AdamW (learningRate, weight decay 0.1) unless given; beforeStep sees each step's synchronised gradients.
    private static float[] Run(string kind, Communicator world, long bucketBytes, int steps, int emulatedRanks,
        Func<IEnumerable<Tensor>, Optimizer>? optimizer, Action<int, Tensor[]>? beforeStep, double learningRate, out Report report)
    {
        var data = new Generator(7);
        using Module model = kind switch
        {
            "gpt" => new Gpt(new GptConfig(Vocab: 11, BlockSize: 8, Layers: 2, Heads: 2, Dim: 16), new Generator(1 + (ulong)world.Rank)),
            "conv" => new TinyConvNet(new Generator(1 + (ulong)world.Rank)),
            _ => throw new ArgumentException($"unknown model '{kind}'"),
        };
        using var inputs = kind == "gpt" ? Tensor.RandInt(0, 11, [Samples, 9], data) : Tensor.Randn([Samples, 1, 8, 8], data);
        using var labels = Tensor.RandInt(0, 3, [Samples], data);
        using var dp = new DataParallel(world, model.NamedParameters(), model.NamedBuffers(), new DataParallelOptions { BucketBytes = bucketBytes });
        using var opt = optimizer?.Invoke(model.Parameters()) ?? new AdamW(model.Parameters(), learningRate: learningRate, weightDecay: 0.1);
        var parameters = model.Parameters().ToArray();
        int shards = emulatedRanks > 1 ? emulatedRanks : 1;
        var samplers = Enumerable.Range(0, shards)
            .Select(r => shards > 1 ? new DistributedSampler(Samples, r, shards, seed: 3) : new DistributedSampler(Samples, world.Rank, world.Size, seed: 3)).ToArray();
        Tensor Loss(int[] samples)
        {
            using var index = Tensor.FromArray(samples.Select(i => (long)i).ToArray());
            var rows = inputs.IndexSelect(0, index);
            return kind == "gpt"
                ? ((Gpt)model).Loss(rows.Narrow(1, 0, 8).Contiguous(), rows.Narrow(1, 1, 8).Contiguous())
                : ((TinyConvNet)model).Forward(rows).CrossEntropy(labels.IndexSelect(0, index));
        }
        int step = 0;
        for (int epoch = 0; step < steps; epoch++)
        {
            var batches = samplers.Select(s => s.Batches(epoch, GlobalBatch).ToArray()).ToArray();
            for (int k = 0; k < batches[0].Length && step < steps; k++, step++)
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                if (shards == 1)
                {
                    var (samples, globalSize) = batches[0][k];
                    dp.SetBatchShare(samples.Length, globalSize);
                    Loss(samples).Backward();
                    dp.SynchronizeGradients();
                }
                else
                {
                    var sum = parameters.Select(p => new float[p.Numel]).ToArray();
                    for (int r = 0; r < shards; r++)
                    {
                        opt.ZeroGrad();
                        var (samples, globalSize) = batches[r][k];
                        Loss(samples).Backward();
                        float share = (float)((double)samples.Length / globalSize);
                        for (int i = 0; i < parameters.Length; i++)
                        {
                            var g = parameters[i].Grad!.ToArray<float>();
                            for (int j = 0; j < g.Length; j++) sum[i][j] = r == 0 ? g[j] * share : sum[i][j] + g[j] * share;
                        }
                    }
                    var outer = TensorScope.Suspend();
                    try { for (int i = 0; i < parameters.Length; i++) { parameters[i].Grad?.Dispose(); parameters[i].Grad = Tensor.FromArray(sum[i], parameters[i].Shape); } }
                    finally { TensorScope.Resume(outer); }
                }
                beforeStep?.Invoke(step, parameters);
                opt.Step();
            }
        }
        report = new Report(dp.BucketCount, dp.BucketsStartedInBackward, model.NamedParameters().Select(p => (p.Name, (int)p.Parameter.Numel)).ToArray());
        return parameters.SelectMany(p => p.ToArray<float>()).ToArray();
    }

    // conv 3x3 (1 -> 4 channels, padding 1) -> ReLU -> max-pool 2 -> linear 64 -> 3 classes. No batch norm: its batch
    // statistics would differ between a shard and the whole batch (that needs a synchronised batch norm).
    private sealed class TinyConvNet : Module
    {
        private readonly Tensor _w1, _b1, _w2, _b2;

        public TinyConvNet(Generator g)
        {
            _w1 = Parameter("conv_weight", Init.Uniform([4, 1, 3, 3], 1 / 3.0, g));
            _b1 = Parameter("conv_bias", Init.Uniform([4], 1 / 3.0, g));
            _w2 = Parameter("fc_weight", Init.Uniform([3, 64], 1 / 8.0, g));
            _b2 = Parameter("fc_bias", Init.Uniform([3], 1 / 8.0, g));
        }

        public Tensor Forward(Tensor x) => x.Conv2d(_w1, _b1, padding: 1).Relu().MaxPool2d(2).Flatten(1).MatMul(_w2.T) + _b2;
    }
}
