// Zip: the driver of element-wise kernels over two equal-length spans, y[i] = f(a[i], b[i]), for fused kernels
// whose lane function TensorPrimitives does not have (AddRelu.Forward, BatchNorm.ReluBackward).
// Algorithm: the widest hardware vectors (Vector512, else Vector256) over the whole-vector prefix, then a scalar tail.
// Threads: spans of 128K elements or more are cut into WorkerPool chunks of whole cache lines (a residual block's
// add + ReLU and ReLU backward run over the full activation, 8 MB at ResNet-20's first stage, and had been serial).
// Bound: memory bandwidth (12 bytes per float element). Reference: each kernel's scalar loop in its tests, at every
// length around the vector widths.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>One driver for element-wise kernels of two equal-length spans: the widest vectors, then a scalar tail.</summary>
internal static unsafe class Zip
{
    /// <summary>The lane function of a two-input element-wise kernel, at each vector width and for one element.</summary>
    internal interface IOp<T> where T : unmanaged
    {
        static abstract Vector512<T> Apply(Vector512<T> a, Vector512<T> b);
        static abstract Vector256<T> Apply(Vector256<T> a, Vector256<T> b);
        static abstract T Apply(T a, T b);
    }

    /// <summary>y[i] = TOp(a[i], b[i]); <paramref name="names"/> name the spans in the length error of <paramref name="op"/>.</summary>
    internal static void Run<T, TOp>(string op, (string A, string B, string Y) names, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y)
        where T : unmanaged where TOp : IOp<T>
    {
        if (a.Length != y.Length || b.Length != y.Length)
            throw new ArgumentException($"{op}: {names.A} has {a.Length} elements, {names.B} {b.Length} and {names.Y} {y.Length}; all must be equal");
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* py = y)
        {
            if (y.Length >= ParallelLength && WorkerPool.ThreadCount > 1)
            {
                var job = new Job<T> { A = pa, B = pb, Y = py, Length = y.Length };
                int chunks = WorkerPool.ChunkCount(y.Length, ParallelLength / 4, 2);
                job.PerChunk = (y.Length + chunks - 1) / chunks + 15 & ~15;   // whole 64-byte lines of float32
                WorkerPool.For(chunks, &Chunk<T, TOp>, (nint)(&job));
            }
            else Loop<T, TOp>(pa, pb, py, y.Length);
        }
    }

    private const int ParallelLength = 128 * 1024;   // below this a second thread costs more than it saves

    private struct Job<T> where T : unmanaged
    {
        public T* A, B, Y;
        public int Length, PerChunk;
    }

    private static void Chunk<T, TOp>(int chunk, nint state) where T : unmanaged where TOp : IOp<T>
    {
        ref Job<T> job = ref *(Job<T>*)state;
        long start = (long)chunk * job.PerChunk;
        if (start >= job.Length) return;
        int n = (int)Math.Min(job.PerChunk, job.Length - start);
        Loop<T, TOp>(job.A + start, job.B + start, job.Y + start, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Loop<T, TOp>(T* a, T* b, T* y, int len) where T : unmanaged where TOp : IOp<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count)
                TOp.Apply(Vector512.Load(a + i), Vector512.Load(b + i)).Store(y + i);
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count)
                TOp.Apply(Vector256.Load(a + i), Vector256.Load(b + i)).Store(y + i);
        for (; i < len; i++) y[i] = TOp.Apply(a[i], b[i]);
    }
}
