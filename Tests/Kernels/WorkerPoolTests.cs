using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

[TestFixture, Category("Kernels"), NonParallelizable]
public unsafe class WorkerPoolTests
{
    private struct Job { public int* Hits; public int Count; public long Tag; }

    private static void Body(int i, nint state)
    {
        var job = (Job*)state;
        if (i < 0 || i >= job->Count) throw new InvalidOperationException($"index {i} outside [0, {job->Count})");
        Interlocked.Increment(ref job->Hits[i]);
    }

    [Test]
    public void Back_to_back_jobs_of_different_sizes_run_every_index_exactly_once()
    {
        // Jobs follow each other as fast as possible with different counts and states: a worker that ran an
        // index of one job with the count or state of another would show up as a miss, a double hit or a throw.
        var rng = new Random(TestContext.CurrentContext.Random.Next());
        int[] buffer = new int[4096];
        fixed (int* hits = buffer)
            for (int round = 0; round < 20000; round++)
            {
                int count = rng.Next(1, round % 7 == 0 ? 4000 : 9);
                new Span<int>(hits, count).Clear();
                var job = new Job { Hits = hits, Count = count, Tag = round };
                WorkerPool.For(count, &Body, (nint)(&job));
                for (int i = 0; i < count; i++)
                    if (hits[i] != 1) Assert.Fail($"round {round}: index {i} of {count} ran {hits[i]} times");
            }
    }

    private static void RecordSlot(int i, nint state)
    {
        ((int*)state)[i] = WorkerPool.CurrentSlot;
        Thread.SpinWait(2000);   // long enough that more than one thread takes part
    }

    [Test]
    public void Bodies_see_the_slot_of_the_thread_running_them_and_leftover_workers_stay_out()
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            Assert.That(WorkerPool.CurrentSlot, Is.EqualTo(0), "a calling thread is slot 0");
            var slots = new int[512];
            foreach (int threads in new[] { 4, 2 })   // 4 first: the two workers left over must take no part at 2
            {
                WorkerPool.ThreadCount = threads;
                for (int round = 0; round < 50; round++)
                {
                    Array.Fill(slots, -1);
                    fixed (int* p = slots) WorkerPool.For(slots.Length, &RecordSlot, (nint)p);
                    Assert.That(slots.All(v => v >= 0 && v < threads), Is.True, $"threads {threads}: slots seen {string.Join(",", slots.Distinct().Order())}");
                }
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [TestCase(1)]
    [TestCase(2)]
    public void A_failing_body_surfaces_its_own_exception_and_the_pool_keeps_working(int threads)
    {
        // Inline (one thread) and pooled runs must fail alike: the body's exception type, not a wrapper.
        int saved = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = threads;
        try
        {
            int[] buffer = new int[10];
            fixed (int* hits = buffer)
            {
                var bad = new Job { Hits = hits, Count = 5 };
                nint badState = (nint)(&bad);
                var e = Assert.Throws<InvalidOperationException>(() => WorkerPool.For(10, &Body, badState), "indices 5..9 throw inside the body");
                Assert.That(e!.Message, Does.Match(@"index \d outside \[0, 5\)"));
                var good = new Job { Hits = hits, Count = 10 };
                new Span<int>(hits, 10).Clear();
                WorkerPool.For(10, &Body, (nint)(&good));
                Assert.That(buffer, Is.All.EqualTo(1));
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    private static void Nothing(int i, nint state) { }

    // Index i waits (up to a timeout) until the other index has started: it can only start on another thread.
    private static void Rendezvous(int i, nint state)
    {
        var started = (int*)state;
        Volatile.Write(ref started[i], 1);
        long deadline = Environment.TickCount64 + 200;
        while (Volatile.Read(ref started[1 - i]) == 0)
        {
            if (Environment.TickCount64 > deadline) { Interlocked.Increment(ref started[2]); return; }
            Thread.SpinWait(20);
        }
    }

    [Test]
    public void Both_threads_take_part_through_a_whole_cycle_of_job_generations()
    {
        // The job word numbers jobs modulo 2^20. A pool that misread the upper half of that range (an arithmetic shift
        // of the word's sign bit) let the calling thread take no index for 524,288 jobs in a row, so a long training
        // run went single-threaded for minutes at a time. Run a full cycle and check every 4,096th job.
        int saved = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = 2;
        try
        {
            int lonely = 0, checks = 0;
            var started = new int[3];
            for (int job = 0; job <= 1 << 20; job++)
            {
                if (job % 4096 != 0) { WorkerPool.For(2, &Nothing, 0); continue; }
                Array.Clear(started);
                fixed (int* p = started) WorkerPool.For(2, &Rendezvous, (nint)p);
                checks++;
                if (started[2] > 0) { lonely++; TestContext.Out.WriteLine($"lonely at job {job}"); }
            }
            Assert.That(lonely, Is.EqualTo(0), $"{lonely} of {checks} sampled jobs ran both indices on one thread");
        }
        finally { WorkerPool.ThreadCount = saved; }
    }
}
