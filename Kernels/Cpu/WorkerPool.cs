// WorkerPool: the one persistent set of CPU worker threads that every parallel kernel shares.
//
// Why not Parallel.For: it allocates a closure and task objects per call and wakes ThreadPool threads that
// may be busy elsewhere. A kernel call must allocate nothing and start its workers in microseconds: a
// training step issues hundreds of 10-100 µs kernels, and an OS wake-up costs tens of µs each time. So the
// pool keeps (ThreadCount - 1) dedicated threads that, after a job, spin for a short while watching for the
// next one (as OpenMP runtimes do) and only then sleep on their own semaphores. The calling thread always takes part,
// so ThreadCount == 1 means "run inline".
//
// Work is handed out as indices 0..count-1 from one 64-bit word holding (job generation, count, next index):
// a worker claims an index with a compare-exchange of the whole word, so a late worker can never run an
// index of one job with the body, state or count of another (the count travels in the same word because a
// worker may read the job fields while the caller is already filling them in for the next job). A finished index bumps a done counter;
// the caller returns when all are done. The body is an unmanaged function pointer plus an opaque state
// pointer: callers put their arguments in a struct on their own stack and pass its address; the caller
// blocks until every index is done, so that frame outlives all uses. Nothing is allocated per call.
// Calls from inside a body (nested parallelism) run inline on the calling worker.
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Cpu;

/// <summary>A persistent pool of worker threads shared by all CPU kernels.</summary>
public static unsafe class WorkerPool
{
    private const int SpinIterations = 2000;   // ~50-100 µs of Thread.SpinWait(20) before sleeping

    private static readonly object Gate = new();
    private static Thread[] _threads = [];
    // One per worker (index slot - 1), so that a job wakes the workers that may take part in it: with one shared
    // semaphore, a job after ThreadCount was lowered could wake a left-over worker, which takes no part, and leave
    // the one it needed asleep.
    private static Sleeper[] _sleepers = [];
    private static int _threadCount = Environment.ProcessorCount;

    private sealed class Sleeper
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Asleep;
    }

    // The job now running; Gate serialises callers. Fields are written before _claim publishes a generation.
    private static delegate*<int, nint, void> _body;
    private static nint _state;
    private static long _claim;     // generation (20 bits) | count (22 bits) | next index (22 bits)
    private const int IndexBits = 22;
    private const long IndexMask = (1L << IndexBits) - 1;
    private const int GenerationShift = 2 * IndexBits;

    // The generation is the word's top 20 bits, sign bit included: an arithmetic shift (>>) would give the
    // caller's Work a negative number for generations 2^19 .. 2^20 - 1, which never equals the generation it
    // published, so the caller took no index and one worker ran every index of the next 524,288 jobs alone.
    private static long GenerationOf(long claim) => claim >>> GenerationShift;

    /// <summary>The most indices one <see cref="For"/> call may hand out.</summary>
    public const int MaxCount = (1 << IndexBits) - 1;
    private static int _done;
    private static Exception? _failure;

    [ThreadStatic] private static bool _insideBody;
    [ThreadStatic] private static int _slot;

    /// <summary>
    /// Which of the pool's threads is running: 0 for a calling thread, 1 .. ThreadCount − 1 for the workers. A kernel that
    /// hands out more indices than there are threads (so that a thread that starts late or runs slow takes fewer of
    /// them) keeps its scratch buffers per slot, not per index.
    /// </summary>
    public static int CurrentSlot => _slot;

    /// <summary>
    /// True on a thread that is running a <see cref="For"/> body, where a nested <see cref="For"/> runs its indices
    /// inline, one after another: a kernel that would cut its work into parts for the threads should not cut it then.
    /// </summary>
    internal static bool InsideBody => _insideBody;

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
        if (count > MaxCount) throw new ArgumentOutOfRangeException(nameof(count), count, $"WorkerPool.For: at most {MaxCount} indices per call");
        if (count == 1 || _threadCount == 1 || _insideBody)
        {
            for (int i = 0; i < count; i++) body(i, state);
            return;
        }
        lock (Gate)
        {
            EnsureThreads(_threadCount - 1);
            _body = body; _state = state; _failure = null;
            Volatile.Write(ref _done, 0);
            long generation = (GenerationOf(Volatile.Read(ref _claim)) + 1) & 0xFFFFF;
            Interlocked.Exchange(ref _claim, (generation << GenerationShift) | ((long)count << IndexBits));   // publish: workers may start now
            // After the full fence of the publish: a worker that set Asleep before it is seen here and woken, and one
            // that sets it later reads the new generation before it waits.
            for (int w = 0, helpers = Math.Min(_threadCount, count) - 1; w < helpers; w++)
                if (Volatile.Read(ref _sleepers[w].Asleep) != 0) _sleepers[w].Wake.Release();
            _insideBody = true;
            try { Work(generation, body, state); }
            finally { _insideBody = false; }
            var spin = new SpinWait();
            while (Volatile.Read(ref _done) < count) spin.SpinOnce(-1);
            _body = null; _state = 0;
            // Rethrow the body's own exception (type, message, stack) so a bad index reads the same whether the
            // call ran inline (one thread, one index) or spread over the pool.
            if (_failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(_failure).Throw();
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
        var grown = new Thread[wanted];
        var sleepers = new Sleeper[wanted];
        Array.Copy(_threads, grown, _threads.Length);
        Array.Copy(_sleepers, sleepers, _sleepers.Length);
        for (int i = _threads.Length; i < wanted; i++)
        {
            int slot = i + 1;
            var me = sleepers[i] = new Sleeper();
            // The job about to be published is new to this worker: had it read the generation itself on starting, it
            // could read it after the publish and sit out the job that created it.
            long seen = GenerationOf(Volatile.Read(ref _claim));
            grown[i] = new Thread(() => WorkerLoop(slot, me, seen)) { IsBackground = true, Name = $"AttnCore worker {slot}" };
            grown[i].Start();
        }
        _threads = grown; _sleepers = sleepers;
    }

    private static void WorkerLoop(int slot, Sleeper me, long seen)
    {
        _insideBody = true;   // a body that calls For runs its inner loop inline
        _slot = slot;
        int spins = 0;
        while (true)
        {
            long generation = GenerationOf(Volatile.Read(ref _claim));
            if (generation != seen)
            {
                seen = generation;
                var body = _body; var state = _state;
                // A worker left over from a larger ThreadCount takes no part (kernels size per-slot buffers by ThreadCount),
                // and keeps counting down its spins, so that it goes to sleep and stays there: For does not wake it.
                if (body != null && slot < Volatile.Read(ref _threadCount)) { Work(generation, body, state); spins = 0; }
                continue;
            }
            if (spins++ < SpinIterations) { Thread.SpinWait(20); continue; }
            Interlocked.Exchange(ref me.Asleep, 1);   // a full fence before the generation is read again
            if (GenerationOf(Volatile.Read(ref _claim)) == seen) me.Wake.Wait();
            Volatile.Write(ref me.Asleep, 0);
            spins = 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Work(long generation, delegate*<int, nint, void> body, nint state)
    {
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            if (GenerationOf(claim) != generation) return;      // a newer job: these fields are stale
            long index = claim & IndexMask, count = (claim >> IndexBits) & IndexMask;
            if (index >= count) return;
            if (Interlocked.CompareExchange(ref _claim, claim + 1, claim) != claim) continue;
            // The word still held this generation with indices left, so body and state belong to it: a job's
            // fields are only replaced after all of its indices have been claimed and finished.
            try
            {
                if (_failure is null) body((int)index, state);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            finally { Interlocked.Increment(ref _done); }
        }
    }
}
