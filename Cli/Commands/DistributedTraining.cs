using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using AttnCore.Distributed;
using AttnCore.Models.Nn;
using AttnCore.Models.Training;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>--distributed</c> and <c>--bucket-mb</c> for every <c>attncore train ...</c> command. A command opts in by adding the
/// options (<see cref="AddTo"/>), calling <see cref="Begin"/> first thing in its action and then, once its model exists,
/// <see cref="DistributedRun.Attach"/>; it trains on <see cref="DistributedRun.ShardOf"/> of each global batch, passes
/// <see cref="DistributedRun.DataParallel"/> and <see cref="DistributedRun.CallbacksFor"/> to its Trainer, prints through
/// <see cref="DistributedRun.IO"/>, writes files only when <see cref="DistributedRun.IsPrimary"/>, and ends with
/// <see cref="DistributedRun.Complete"/>.
/// </summary>
public sealed class DistributedOptions
{
    /// <summary>Train data-parallel over the ranks mpirun started.</summary>
    public Option<bool> Enabled { get; } = new("--distributed")
    {
        Description = "data-parallel training over the processes of mpirun (mpirun -np 2 attncore train ... --distributed --threads 1); each rank takes its share of every --batch; without mpirun, one process",
    };

    /// <summary>Gradient bucket size in MiB.</summary>
    public Option<double> BucketMb { get; } = NumericOption.Number("--bucket-mb", "with --distributed: gradients are all-reduced in buckets of this many MiB, each starting as soon as backward has produced it",
        DataParallelOptions.DefaultBucketBytes / (double)(1 << 20), 1.0 / (1 << 20), 1 << 20);

    /// <summary>Adds the options to <paramref name="cmd"/>.</summary>
    public Command AddTo(Command cmd)
    {
        cmd.Options.Add(Enabled);
        cmd.Options.Add(BucketMb);
        return cmd;
    }

    /// <summary>
    /// Joins the ranks (MPI_Init under mpirun with --distributed, else a world of one). Refuses a multi-rank mpirun launch
    /// without --distributed: every rank would train alone and overwrite the same files.
    /// </summary>
    public DistributedRun Begin(ParseResult p, CliIO io, string command)
    {
        bool enabled = p.GetValue(Enabled);
        if (!enabled && int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE"), CultureInfo.InvariantCulture, out int ranks) && ranks > 1)
            throw new ArgumentException($"{command}: started by mpirun as {ranks} processes without --distributed; add --distributed, or they would each train alone and write over each other's files");
        var world = enabled ? Communicator.World : null;
        return new DistributedRun(io, world, (long)Math.Max(1, Math.Round(p.GetValue(BucketMb) * (1 << 20))), command);
    }
}

/// <summary>One command's data-parallel run: the rank's output streams, its shard of each batch, its DataParallel.</summary>
public sealed class DistributedRun : IDisposable
{
    private readonly Communicator? _world;
    private readonly long _bucketBytes;
    private readonly string _command;
    private readonly PosixSignalRegistration? _sigterm;

    internal DistributedRun(CliIO io, Communicator? world, long bucketBytes, string command)
    {
        _world = world;
        _bucketBytes = bucketBytes;
        _command = command;
        // Only rank 0 prints results and progress; every rank keeps stderr, where a failure names its rank.
        IO = world is null || world.IsPrimary ? io : new CliIO(TextWriter.Null, io.Err);
        if (world is { Size: > 1 })
            // mpirun ends the other ranks with SIGTERM when one fails: say so, instead of vanishing silently.
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ =>
                io.Err.WriteLine($"attncore: {command}: rank {world.Rank} of {world.Size} stopped by the launcher (SIGTERM), usually because another rank failed; the last checkpoint in --out stays intact and --resume continues from it"));
    }

    /// <summary>Where this rank prints: the command's streams on rank 0, stdout discarded on the others.</summary>
    public CliIO IO { get; }
    /// <summary>The gradient synchroniser, once <see cref="Attach"/> ran with --distributed; null for a plain run.</summary>
    public DataParallel? DataParallel { get; private set; }
    /// <summary>This process's rank (0 without --distributed).</summary>
    public int Rank => _world?.Rank ?? 0;
    /// <summary>The number of ranks (1 without --distributed).</summary>
    public int Size => _world?.Size ?? 1;
    /// <summary>True on the rank that prints and writes files.</summary>
    public bool IsPrimary => Rank == 0;

    /// <summary>
    /// Sets up data parallelism for <paramref name="model"/> (collective: checks that every rank built the same model and
    /// copies rank 0's parameters to all) and checks that <paramref name="batch"/> gives every rank at least one sample.
    /// A later call (the next model of a multi-seed run) replaces the previous model's synchroniser.
    /// </summary>
    public void Attach(Module model, int batch, string batchOption = "--batch")
    {
        if (_world is null) return;
        if (batch < _world.Size)
            throw new ArgumentException($"{_command}: {batchOption} {batch} is smaller than the {_world.Size} ranks; each rank takes its share of every batch and needs at least one sample");
        DataParallel?.Dispose();
        DataParallel = new DataParallel(_world, model.NamedParameters(), model.NamedBuffers(), new DataParallelOptions { BucketBytes = _bucketBytes });
    }

    /// <summary>
    /// This rank's rows of a global batch (a view of its contiguous share along dim 0), and the share recorded so that the
    /// synchronised gradient is that of the mean loss over the whole batch. The whole batch unless distributed.
    /// </summary>
    public Tensor ShardOf(Tensor batch)
    {
        if (DataParallel is null) return batch;
        var (start, count) = DistributedSampler.Shard(batch.Size(0), Rank, Size);
        DataParallel.SetBatchShare(count, batch.Size(0));
        return batch.Narrow(0, start, count);
    }

    /// <summary>True when this rank evaluates item <paramref name="index"/> of a list of evaluation batches split over ranks.</summary>
    public bool Evaluates(int index) => index % Size == Rank;

    /// <summary>The sum over ranks of <paramref name="value"/> (an evaluation loss summed over this rank's batches).</summary>
    public double SumOverRanks(double value) => DataParallel?.SumOverRanks(value) ?? value;

    /// <summary>The trainer callbacks this rank runs: all of them on rank 0 (progress, plots), none elsewhere.</summary>
    public IReadOnlyList<ITrainerCallback> CallbacksFor(IReadOnlyList<ITrainerCallback> callbacks) => IsPrimary ? callbacks : [];

    /// <summary>Ends MPI after a run that completed on every rank (MPI_Finalize waits for the others); nothing without --distributed.</summary>
    public void Complete()
    {
        DataParallel?.Dispose();
        _world?.Dispose();
    }

    /// <summary>Removes the gradient hooks and the SIGTERM notice (MPI itself ends in <see cref="Complete"/> or with the process).</summary>
    public void Dispose()
    {
        DataParallel?.Dispose();
        _sigterm?.Dispose();
    }
}
