// DropoutMask: writes a dropout keep-mask, the CPU's fast path for RandomMask.KeepScale (Kernels/Common/RandomMask.cs).
//
// Algorithm: element i is 1/(1-p) when the top 24 bits of SplitMix64(seed + (i + 1)·φ64), over 2^24, are at least p,
// else 0 — the same pure function of (seed, i) as the scalar KeepScale, so the mask is bit for bit the one every
// device draws. Eight counters at a time in 64-bit vector lanes (AVX-512: vpmullq for the two multiplies), the
// tail and machines without 512-bit vectors through KeepScale itself; large masks are split into chunks over
// WorkerPool (each chunk knows its first index, so the split does not change the mask).
// Integer ops: ~12 per element. Bytes: 4 written per element. Bound: the 64-bit multiplies.
// Reference: RandomMask.KeepScale (Tests/Kernels/DropoutMaskTests.cs compares every element).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Dropout keep-masks on the CPU, equal to <see cref="RandomMask.KeepScale"/> element by element.</summary>
public static unsafe class DropoutMask
{
    private const long MinChunk = 1 << 16;

    private struct Args
    {
        public float* Dst;
        public long Length, ChunkLength;
        public ulong Seed;
        public float P, Scale;
    }

    /// <summary>dst[i] = RandomMask.KeepScale(seed, i, p, scale) for every i.</summary>
    public static void Fill(Span<float> dst, ulong seed, float p, float scale)
    {
        if (dst.IsEmpty) return;
        fixed (float* pd = dst)
        {
            var a = new Args { Dst = pd, Length = dst.Length, Seed = seed, P = p, Scale = scale };
            int chunks = WorkerPool.ChunkCount(a.Length, MinChunk);
            a.ChunkLength = (a.Length + chunks - 1) / chunks;
            if (chunks <= 1) Range(ref a, 0, a.Length);
            else WorkerPool.For(chunks, &Chunk, (nint)(&a));
        }
    }

    private static void Chunk(int chunk, nint state)
    {
        ref Args a = ref *(Args*)state;
        long start = chunk * a.ChunkLength;
        Range(ref a, start, Math.Min(a.Length, start + a.ChunkLength));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Range(ref Args a, long start, long end)
    {
        long i = start;
        if (Vector512.IsHardwareAccelerated)
        {
            var golden = Vector512.Create(0x9E3779B97F4A7C15UL);
            var m1 = Vector512.Create(0xBF58476D1CE4E5B9UL);
            var m2 = Vector512.Create(0x94D049BB133111EBUL);
            var seed = Vector512.Create(a.Seed);
            var lane = Vector512.Create(1UL, 2, 3, 4, 5, 6, 7, 8);
            var p = Vector256.Create(a.P); var scale = Vector256.Create(a.Scale);
            var unit = Vector256.Create(1f / 16777216f);
            for (; i + 8 <= end; i += 8)
            {
                var z = seed + (Vector512.Create((ulong)i) + lane) * golden;
                z = (z ^ (z >> 30)) * m1;
                z = (z ^ (z >> 27)) * m2;
                z ^= z >> 31;
                // The top 24 bits fit an int; the 8 lanes narrow to one 256-bit float vector.
                var bits = (z >> 40).AsInt64();
                var top = Vector256.Narrow(bits.GetLower(), bits.GetUpper());
                var u = Vector256.ConvertToSingle(top) * unit;
                Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(u, p), scale, Vector256<float>.Zero).Store(a.Dst + i);
            }
        }
        for (; i < end; i++) a.Dst[i] = RandomMask.KeepScale(a.Seed, i, a.P, a.Scale);
    }
}
