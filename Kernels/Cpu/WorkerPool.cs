// WorkerPool: the one persistent set of CPU worker threads that every parallel kernel shares.
//
// Why not Parallel.For: it allocates a closure and task objects per call and wakes ThreadPool
// threads that may be busy elsewhere. A GEMM or attention call must allocate nothing and start
// its workers in microseconds, so the pool keeps (ThreadCount - 1) dedicated threads parked on a
// semaphore; the calling thread always takes part, so ThreadCount == 1 means "run inline".
//
// Work is handed out as indices 0..count-1 from one shared counter (dynamic scheduling: a
// worker that finishes early takes the next index), so uneven tiles still balance.
// The body is an unmanaged function pointer plus an opaque state pointer. Callers put their
// arguments in a struct on their own stack and pass its address: the caller blocks until every
// index is done, so that stack frame outlives all uses. Nothing is allocated per call.
// Calls from inside a body (nested parallelism) run inline on the calling worker.
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Cpu;

/// <summary>A persistent pool of worker threads shared by all CPU kernels.</summary>
public static unsafe class WorkerPool
{
    private static readonly object Gate = new();
    private static Thread[] _threads = [];
    private static SemaphoreSlim? _wake;
    private static int _threadCount = Environment.ProcessorCount;

    // The job now running (only one at a time: Gate serialises callers).
    private static delegate*<int, nint, void> _body;
    private static nint _state;
    private static int _count;
    private static int _next;
    private static int _pending;
    private static ManualResetEventSlim _done = new(false);
    private static Exception? _failure;

    [ThreadStatic] private static bool _insideBody;

    /// <summary>How many threads (including the caller) a parallel kernel uses. Default: the number of cores.</summary>
    public static int ThreadCount
    {
        get => _threadCount;
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), value, "WorkerPool.ThreadCount must be at least 1");
            lock (Gate) { _threadCount = value; }
        }
    }

    /// <summary>Runs <paramref name="body"/>(i, state) for every i in [0, count), spread over the pool; returns when all are done.</summary>
    public static void For(int count, delegate*<int, nint, void> body, nint state)
    {
        if (count <= 0) return;
        if (count == 1 || _threadCount == 1 || _insideBody)
        {
            for (int i = 0; i < count; i++) body(i, state);
            return;
        }
        lock (Gate)
        {
            EnsureThreads(_threadCount - 1);
            int helpers = Math.Min(_threads.Length, count - 1);
            _body = body; _state = state; _count = count; _next = 0; _failure = null;
            _pending = helpers + 1;
            _done.Reset();
            _wake!.Release(helpers);
            RunShare();
            _done.Wait();
            _body = null; _state = 0;
            if (_failure is not null) throw new AggregateException("WorkerPool: a parallel kernel body failed", _failure);
        }
    }

    /// <summary>Splits [0, total) into about <c>ThreadCount * perThread</c> chunks of at least <paramref name="minChunk"/> items.</summary>
    public static int ChunkCount(long total, long minChunk, int perThread = 4)
    {
        if (total <= 0) return 0;
        long byWork = Math.Max(1, total / Math.Max(1, minChunk));
        return (int)Math.Min(byWork, (long)_threadCount * perThread);
    }

    private static void EnsureThreads(int wanted)
    {
        if (_threads.Length >= wanted) return;
        _wake ??= new SemaphoreSlim(0);
        var grown = new Thread[wanted];
        Array.Copy(_threads, grown, _threads.Length);
        for (int i = _threads.Length; i < wanted; i++)
        {
            grown[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"AttnCore worker {i + 1}" };
            grown[i].Start();
        }
        _threads = grown;
    }

    private static void WorkerLoop()
    {
        while (true)
        {
            _wake!.Wait();
            RunShare();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunShare()
    {
        _insideBody = true;
        try
        {
            var body = _body; var state = _state; int count = _count;
            int i;
            while ((i = Interlocked.Increment(ref _next) - 1) < count) body(i, state);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
            Interlocked.Exchange(ref _next, int.MaxValue / 2);
        }
        finally
        {
            _insideBody = false;
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }
}
