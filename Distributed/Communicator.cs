using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AttnCore.Distributed;

/// <summary>
/// The processes of a run and the collectives between them (MPI_COMM_WORLD). <see cref="World"/> is Open MPI's world when
/// the process was started by mpirun (or another PMIx launcher), and a world of one process otherwise, which needs no
/// MPI library at all: every collective is then a copy or nothing, so code written for several ranks runs unchanged alone.
/// Every call must be made from the thread that created the world (MPI_THREAD_FUNNELED), in the same order on every rank.
/// </summary>
public abstract class Communicator : IDisposable
{
    private static Communicator? _world;
    private static readonly Lock Gate = new();

    /// <summary>This process's rank, 0 to <see cref="Size"/> - 1.</summary>
    public abstract int Rank { get; }
    /// <summary>The number of processes.</summary>
    public abstract int Size { get; }
    /// <summary>True on rank 0, the process that prints, writes checkpoints and whose parameters every rank starts from.</summary>
    public bool IsPrimary => Rank == 0;

    /// <summary>
    /// How long a collective of the training loop (<see cref="AllreduceRequest.Wait()"/>) may wait for the other ranks before
    /// it fails naming the call: a rank that died no longer takes part, and without a limit the others would wait for ever.
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// True when this process was started by an MPI launcher: Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, PMIx launchers
    /// (srun --mpi=pmix, prterun) set PMIX_RANK. Without one of them <see cref="World"/> is a world of one process.
    /// </summary>
    public static bool LaunchedByMpi =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null || Environment.GetEnvironmentVariable("PMIX_RANK") is not null;

    /// <summary>
    /// The world of this run, created on first use: MPI_Init_thread (funneled) under an MPI launcher, else a single process.
    /// </summary>
    public static Communicator World
    {
        get
        {
            lock (Gate) return _world ??= LaunchedByMpi ? MpiCommunicator.InitWorld() : new SingleProcessCommunicator();
        }
    }

    /// <summary>Sums <paramref name="data"/> over all ranks, in place (MPI_Allreduce with MPI_IN_PLACE, MPI_FLOAT, MPI_SUM).</summary>
    public abstract void AllreduceSum(Span<float> data);
    /// <summary>Sums <paramref name="data"/> over all ranks, in place (MPI_DOUBLE).</summary>
    public abstract void AllreduceSum(Span<double> data);
    /// <summary>Copies rank <paramref name="root"/>'s <paramref name="data"/> into every rank's (MPI_Bcast of the bytes).</summary>
    public abstract void Broadcast<T>(Span<T> data, int root = 0) where T : unmanaged;
    /// <summary>Returns when every rank has called it (MPI_Barrier).</summary>
    public abstract void Barrier();
    /// <summary>
    /// Gathers every rank's <paramref name="mine"/> (the same length on every rank) into <paramref name="all"/>, rank r's
    /// at r * mine.Length (MPI_Allgather of the bytes).
    /// </summary>
    public abstract void Allgather<T>(ReadOnlySpan<T> mine, Span<T> all) where T : unmanaged;

    /// <summary>
    /// Starts summing <paramref name="count"/> elements of <paramref name="pinned"/> from <paramref name="offset"/> over all
    /// ranks, in place (MPI_Iallreduce); the result is there once the request completes. The array must be pinned
    /// (GC.AllocateArray with pinned: true) and left alone until then.
    /// </summary>
    public abstract AllreduceRequest StartAllreduceSum(float[] pinned, int offset, int count);
    /// <inheritdoc cref="StartAllreduceSum(float[], int, int)"/>
    public abstract AllreduceRequest StartAllreduceSum(double[] pinned, int offset, int count);

    /// <summary>Sums one number over all ranks (the mean loss of a step, a validation sum).</summary>
    public double AllreduceSum(double value)
    {
        Span<double> one = [value];
        AllreduceSum(one);
        return one[0];
    }

    /// <summary>Ends MPI for this process (MPI_Finalize) after a run that completed on every rank; a world of one does nothing.</summary>
    public abstract void Dispose();

    /// <summary>Checks that the arguments of a collective agree with each other.</summary>
    protected void CheckGather(string call, int mine, int all)
    {
        if ((long)mine * Size != all)
            throw new ArgumentException($"{call}: the receive buffer has {all} elements, expected {Size} ranks x {mine}");
    }

    /// <summary>Checks that [offset, offset + count) lies inside an array of <paramref name="length"/>.</summary>
    protected static void CheckRange(string call, int length, int offset, int count)
    {
        if (offset < 0 || count < 0 || (long)offset + count > length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{call}: elements [{offset}, {(long)offset + count}) are not inside a buffer of {length}");
    }
}

/// <summary>An all-reduce in flight (MPI_Request of MPI_Iallreduce): test it to let MPI progress, wait for it before reading the buffer.</summary>
public abstract class AllreduceRequest
{
    /// <summary>True once the result is in the buffer (MPI_Test); each call also lets MPI progress the operation.</summary>
    public abstract bool Test();

    /// <summary>Waits until the result is in the buffer, at most the communicator's <see cref="Communicator.Timeout"/>.</summary>
    public abstract void Wait();
}

// A world of one process: sums and broadcasts are the data itself, so nothing is copied and MPI is never loaded.
internal sealed class SingleProcessCommunicator : Communicator
{
    public override int Rank => 0;
    public override int Size => 1;
    public override void AllreduceSum(Span<float> data) { }
    public override void AllreduceSum(Span<double> data) { }
    public override void Broadcast<T>(Span<T> data, int root = 0)
    {
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), $"Broadcast: root {root} is not a rank of a world of 1 process");
    }
    public override void Barrier() { }
    public override void Allgather<T>(ReadOnlySpan<T> mine, Span<T> all)
    {
        CheckGather("Allgather", mine.Length, all.Length);
        mine.CopyTo(all);
    }
    public override AllreduceRequest StartAllreduceSum(float[] pinned, int offset, int count)
    {
        CheckRange("StartAllreduceSum", pinned.Length, offset, count);
        return Done.Instance;
    }
    public override AllreduceRequest StartAllreduceSum(double[] pinned, int offset, int count)
    {
        CheckRange("StartAllreduceSum", pinned.Length, offset, count);
        return Done.Instance;
    }
    public override void Dispose() { }

    private sealed class Done : AllreduceRequest
    {
        public static readonly Done Instance = new();
        public override bool Test() => true;
        public override void Wait() { }
    }
}

// Open MPI's world. Counts are ints in MPI's C API, so longer spans go in chunks of at most int.MaxValue elements.
internal sealed unsafe class MpiCommunicator : Communicator
{
    private readonly nint _comm, _float, _double, _byte, _sum;
    private readonly Thread _owner;
    private bool _finalized;

    private MpiCommunicator(int rank, int size)
    {
        Rank = rank;
        Size = size;
        _comm = MpiNative.Export("ompi_mpi_comm_world");
        _float = MpiNative.Export("ompi_mpi_float");
        _double = MpiNative.Export("ompi_mpi_double");
        _byte = MpiNative.Export("ompi_mpi_byte");
        _sum = MpiNative.Export("ompi_mpi_op_sum");
        _owner = Thread.CurrentThread;
    }

    public override int Rank { get; }
    public override int Size { get; }

    public static MpiCommunicator InitWorld()
    {
        _ = MpiNative.Handle;
        int initialized = 0;
        MpiNative.Check(MpiNative.Initialized(&initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            int provided = 0;
            MpiNative.Check(MpiNative.InitThread(null, null, MpiNative.ThreadFunneled, &provided), "MPI_Init_thread");
            if (provided < MpiNative.ThreadFunneled)
                throw new MpiException("MPI_Init_thread", $"the MPI library offers thread level {provided}, AttnCore needs MPI_THREAD_FUNNELED (1): its worker threads run while the main thread calls MPI");
        }
        nint comm = MpiNative.Export("ompi_mpi_comm_world");
        // Errors come back as codes (and become exceptions naming the call) instead of aborting every rank.
        MpiNative.Check(MpiNative.CommSetErrhandler(comm, MpiNative.Export("ompi_mpi_errors_return")), "MPI_Comm_set_errhandler");
        int rank = 0, size = 0;
        MpiNative.Check(MpiNative.CommRank(comm, &rank), "MPI_Comm_rank");
        MpiNative.Check(MpiNative.CommSize(comm, &size), "MPI_Comm_size");
        return new MpiCommunicator(rank, size);
    }

    private void Enter(string call)
    {
        if (_finalized) throw new ObjectDisposedException(nameof(Communicator), $"{call}: MPI was finalized on this rank");
        if (Thread.CurrentThread != _owner)
            throw new InvalidOperationException($"{call}: called from thread {Environment.CurrentManagedThreadId}; MPI was initialized funneled, so only the thread that created the world may call it");
    }

    public override void AllreduceSum(Span<float> data)
    {
        Enter("MPI_Allreduce");
        fixed (float* p = data)
            for (long done = 0; done < data.Length; done += int.MaxValue)
                MpiNative.Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)(p + done), (int)Math.Min(int.MaxValue, data.Length - done), _float, _sum, _comm), "MPI_Allreduce");
    }

    public override void AllreduceSum(Span<double> data)
    {
        Enter("MPI_Allreduce");
        fixed (double* p = data)
            for (long done = 0; done < data.Length; done += int.MaxValue)
                MpiNative.Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)(p + done), (int)Math.Min(int.MaxValue, data.Length - done), _double, _sum, _comm), "MPI_Allreduce");
    }

    public override void Broadcast<T>(Span<T> data, int root = 0)
    {
        Enter("MPI_Bcast");
        if ((uint)root >= (uint)Size) throw new ArgumentOutOfRangeException(nameof(root), $"MPI_Bcast: root {root} is not a rank of a world of {Size}");
        var bytes = MemoryMarshal.AsBytes(data);
        fixed (byte* p = bytes)
            for (long done = 0; done < bytes.Length; done += int.MaxValue)
                MpiNative.Check(MpiNative.Bcast((nint)(p + done), (int)Math.Min(int.MaxValue, bytes.Length - done), _byte, root, _comm), "MPI_Bcast");
    }

    public override void Barrier()
    {
        Enter("MPI_Barrier");
        MpiNative.Check(MpiNative.Barrier(_comm), "MPI_Barrier");
    }

    public override void Allgather<T>(ReadOnlySpan<T> mine, Span<T> all)
    {
        Enter("MPI_Allgather");
        CheckGather("MPI_Allgather", mine.Length, all.Length);
        var send = MemoryMarshal.AsBytes(mine);
        if (send.Length > int.MaxValue) throw new ArgumentException($"MPI_Allgather: {send.Length} bytes per rank, more than MPI's int count allows");
        fixed (byte* s = send)
        fixed (byte* r = MemoryMarshal.AsBytes(all))
            MpiNative.Check(MpiNative.Allgather((nint)s, send.Length, _byte, (nint)r, send.Length, _byte, _comm), "MPI_Allgather");
    }

    public override AllreduceRequest StartAllreduceSum(float[] pinned, int offset, int count)
    {
        CheckRange("MPI_Iallreduce", pinned.Length, offset, count);
        return Start((nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned)) + (nint)offset * sizeof(float), count, _float);
    }

    public override AllreduceRequest StartAllreduceSum(double[] pinned, int offset, int count)
    {
        CheckRange("MPI_Iallreduce", pinned.Length, offset, count);
        return Start((nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned)) + (nint)offset * sizeof(double), count, _double);
    }

    private MpiRequest Start(nint buffer, int count, nint type)
    {
        Enter("MPI_Iallreduce");
        nint request = 0;
        MpiNative.Check(MpiNative.Iallreduce(MpiNative.InPlace, buffer, count, type, _sum, _comm, &request), "MPI_Iallreduce");
        return new MpiRequest(this, request, count);
    }

    public override void Dispose()
    {
        if (_finalized) return;
        Enter("MPI_Finalize");
        _finalized = true;
        MpiNative.Check(MpiNative.Finalize(), "MPI_Finalize");
    }

    private sealed class MpiRequest(MpiCommunicator comm, nint request, int count) : AllreduceRequest
    {
        private nint _request = request;
        private bool _done;

        public override bool Test()
        {
            if (_done) return true;
            comm.Enter("MPI_Test");
            nint r = _request;
            int flag = 0;
            MpiNative.Check(MpiNative.Test(&r, &flag, 0), "MPI_Test");
            _request = r;
            return _done = flag != 0;
        }

        // Polled rather than MPI_Wait, which would block for ever on a rank whose peer died without the launcher noticing.
        public override void Wait()
        {
            var clock = Stopwatch.StartNew();
            var spin = new SpinWait();
            while (!Test())
            {
                if (clock.Elapsed > comm.Timeout)
                    throw new MpiException("MPI_Iallreduce", $"rank {comm.Rank} of {comm.Size} waited {clock.Elapsed.TotalSeconds:F0} s for an all-reduce of {count} elements to complete (the limit); " +
                        "another rank has died or stopped calling the same collectives");
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }
}
