// Peak: the machine's float32 FMA ceiling, measured, so that a GEMM or attention rate can be stated as a
// fraction of what these cores can do at all (`attncore bench peak`, and the "% of peak" column of bench).
//
// Algorithm: independent chains acc_c = acc_c * m + a (one vector FMA per chain per iteration), all in
// registers. One chain alone runs at 1 FMA per FMA latency; a core issues up to 2 vector FMAs per cycle with
// a latency of ~4 cycles, so it needs latency x throughput = 8 chains in flight, more where the latency is
// longer (Haswell: 5 x 2 = 10). We keep 16 zmm chains (Vector512: 16 accumulators plus the two constants
// fit AVX-512's 32 registers) or 12 ymm chains (Vector256 fallback: AVX2 has 16 registers, so 12 + 2 do not
// spill), or 12 chains of Vector128 where neither is accelerated (Arm64's AdvSimd; x64 without AVX2, where
// without FMA hardware a chain step is a multiply and an add, still counted as 2 FLOPs). The measurement calibrates a chunk of ~0.5-1 ms, then runs rounds of chunks (threads x 4 chunks
// per round on the WorkerPool, or inline on one thread) and keeps the best round: the peak is a ceiling, and
// noise from other processes only ever lowers a round.
// FLOPs: 2 x chains x lanes per iteration (an FMA is a multiply and an add). Bytes moved: none (registers).
// Bound: the FMA ports, nothing else, which is what makes it the ceiling for GEMM and attention.
// Check on the work: with m = a = 1 every lane of every chain ends at exactly its iteration count (integers
// below 2^24 are exact in float32), so the lanes' sum counts the FMAs actually executed; Measure reports
// that count beside the FLOPs it claims; the tests compare the two, and RunChains with ChainsReference.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>One float32 FMA peak measurement: the best round's rate and the work behind it.</summary>
/// <param name="Threads">Threads that ran chains at the same time (1, or the WorkerPool's thread count).</param>
/// <param name="VectorBits">Width of the vectors used: 512 (AVX-512) or 256.</param>
/// <param name="Chains">Independent FMA chains per thread.</param>
/// <param name="Gflops">The best round's rate in GFLOP/s: the measured peak.</param>
/// <param name="Flops">Total FLOPs the measurement claims to have run (chunks x iterations x FLOPs per iteration).</param>
/// <param name="CountedFlops">Twice the sum of all lanes at the end: the FMAs the chains actually executed, x2.</param>
/// <param name="Seconds">Wall time of the whole measurement, calibration included.</param>
public readonly record struct PeakMeasurement(int Threads, int VectorBits, int Chains, double Gflops, double Flops, double CountedFlops, double Seconds);

/// <summary>Measures the float32 FMA peak of this machine on one thread or on all WorkerPool threads.</summary>
public static unsafe class FmaPeak
{
    /// <summary>The longest chunk (iterations) whose lanes still count exactly in float32 (below 2^24).</summary>
    public const long MaxExactIterations = 1L << 22;

    /// <summary>The vector width <see cref="Measure"/> uses: the widest hardware-accelerated one of 512, 256 and 128.</summary>
    public static int DefaultVectorBits => Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    /// <summary>Independent FMA chains per thread at a vector width of 512, 256 or 128 bits.</summary>
    public static int ChainsFor(int vectorBits) => vectorBits switch
    {
        512 => 16,
        256 => 12,
        128 => 12,
        _ => throw new ArgumentOutOfRangeException(nameof(vectorBits), vectorBits, "FmaPeak: the vector width must be 512, 256 or 128 bits"),
    };

    // Whether the 128-bit chains' multiply-add is one fused operation (FMA3 on x64, AdvSimd on Arm64) or a multiply
    // and an add (MultiplyAddEstimate's choice), so that the reference rounds as they do.
    private static bool FusedIn128 => System.Runtime.Intrinsics.X86.Fma.IsSupported || System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported;

    /// <summary>FLOPs one iteration of <see cref="RunChains"/> performs: 2 x chains x float lanes.</summary>
    public static int FlopsPerIteration(int vectorBits) => 2 * ChainsFor(vectorBits) * (vectorBits / 32);

    /// <summary>
    /// Runs <paramref name="iterations"/> steps of every chain, acc = acc * <paramref name="multiplier"/> + <paramref name="addend"/>
    /// from acc = 0, with vectors of <paramref name="vectorBits"/> (512 or 256), and returns the sum of all lanes of all chains (in float64).
    /// </summary>
    public static double RunChains(long iterations, float multiplier, float addend, int vectorBits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        return vectorBits switch
        {
            512 => Chains512(iterations, multiplier, addend),
            256 => Chains256(iterations, multiplier, addend),
            _ => ChainsFor(vectorBits) == 12 ? Chains128(iterations, multiplier, addend) : 0,
        };
    }

    /// <summary>Reference for <see cref="RunChains"/>: one scalar chain with the same single rounding per step, times chains x lanes.</summary>
    public static double ChainsReference(long iterations, float multiplier, float addend, int vectorBits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        int copies = ChainsFor(vectorBits) * (vectorBits / 32);
        float acc = 0;
        bool fused = vectorBits != 128 || FusedIn128;
        for (long i = 0; i < iterations; i++) acc = fused ? MathF.FusedMultiplyAdd(acc, multiplier, addend) : acc * multiplier + addend;
        return (double)acc * copies;
    }

    /// <summary>
    /// Measures the peak for about <paramref name="seconds"/>: on the calling thread alone, or with
    /// <paramref name="parallel"/> on all <see cref="WorkerPool.ThreadCount"/> threads at once.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="seconds"/> is not in (0, 600].</exception>
    public static PeakMeasurement Measure(double seconds, bool parallel)
    {
        if (!(seconds > 0 && seconds <= 600))
            throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "FmaPeak.Measure: seconds must be in (0, 600]");
        int threads = parallel ? WorkerPool.ThreadCount : 1, bits = DefaultVectorBits, perIteration = FlopsPerIteration(bits);
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        // Compile the chains before anything is timed: a first call that includes its JIT time reads as >= 0.5 ms
        // at once, which left the chunk at 1024 iterations (microseconds), so the fork and join of every round
        // counted and the first parallel measurement in a process read 9% low (424-428 against 464-469 GFLOP/s
        // on 2 threads here, 2026-12-04).
        RunChains(16, 1f, 1f, bits);
        // Calibrate a chunk to >= 0.5 ms.
        long iterations = 1024;
        double counted = 0, claimed = 0;
        while (true)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            counted += 2 * RunChains(iterations, 1f, 1f, bits);
            claimed += (double)iterations * perIteration;
            if (System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds >= 0.5 || iterations >= MaxExactIterations) break;
            iterations *= 2;
        }
        int chunks = threads * 4;
        var sums = new double[chunks];
        double best = 0;
        fixed (double* s = sums)
        {
            var args = new ChunkArgs { Iterations = iterations, VectorBits = bits, Sums = s };
            do
            {
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                if (parallel) WorkerPool.For(chunks, &Chunk, (nint)(&args));
                else for (int i = 0; i < chunks; i++) Chunk(i, (nint)(&args));
                double elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
                double flops = (double)chunks * iterations * perIteration;
                best = Math.Max(best, flops / elapsed / 1e9);
                claimed += flops;
                for (int i = 0; i < chunks; i++) counted += 2 * s[i];
            }
            while (System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < seconds);
        }
        return new PeakMeasurement(threads, bits, ChainsFor(bits), best, claimed, counted, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    private struct ChunkArgs
    {
        public long Iterations;
        public int VectorBits;
        public double* Sums;
    }

    private static void Chunk(int index, nint state)
    {
        var a = (ChunkArgs*)state;
        a->Sums[index] = RunChains(a->Iterations, 1f, 1f, a->VectorBits);
    }

    // Sums in float64: the lanes can be as large as 2^22 each, beyond what a float32 sum keeps exactly.
    private static double LaneSum(Vector512<float> v)
    {
        var (lo, hi) = Vector512.Widen(v);
        return Vector512.Sum(lo + hi);
    }

    private static double LaneSum(Vector256<float> v)
    {
        var (lo, hi) = Vector256.Widen(v);
        return Vector256.Sum(lo + hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Chains512(long iterations, float multiplier, float addend)
    {
        var m = Vector512.Create(multiplier); var c = Vector512.Create(addend);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> a8 = default, a9 = default, a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c); a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c); a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
            a12 = Vector512.FusedMultiplyAdd(a12, m, c); a13 = Vector512.FusedMultiplyAdd(a13, m, c);
            a14 = Vector512.FusedMultiplyAdd(a14, m, c); a15 = Vector512.FusedMultiplyAdd(a15, m, c);
        }
        return LaneSum(a0) + LaneSum(a1) + LaneSum(a2) + LaneSum(a3) + LaneSum(a4) + LaneSum(a5) + LaneSum(a6) + LaneSum(a7)
            + LaneSum(a8) + LaneSum(a9) + LaneSum(a10) + LaneSum(a11) + LaneSum(a12) + LaneSum(a13) + LaneSum(a14) + LaneSum(a15);
    }

    private static double LaneSum(Vector128<float> v)
    {
        var (lo, hi) = Vector128.Widen(v);
        return Vector128.Sum(lo + hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Chains128(long iterations, float multiplier, float addend)
    {
        var m = Vector128.Create(multiplier); var c = Vector128.Create(addend);
        Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector128<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector128.MultiplyAddEstimate(a0, m, c); a1 = Vector128.MultiplyAddEstimate(a1, m, c);
            a2 = Vector128.MultiplyAddEstimate(a2, m, c); a3 = Vector128.MultiplyAddEstimate(a3, m, c);
            a4 = Vector128.MultiplyAddEstimate(a4, m, c); a5 = Vector128.MultiplyAddEstimate(a5, m, c);
            a6 = Vector128.MultiplyAddEstimate(a6, m, c); a7 = Vector128.MultiplyAddEstimate(a7, m, c);
            a8 = Vector128.MultiplyAddEstimate(a8, m, c); a9 = Vector128.MultiplyAddEstimate(a9, m, c);
            a10 = Vector128.MultiplyAddEstimate(a10, m, c); a11 = Vector128.MultiplyAddEstimate(a11, m, c);
        }
        return LaneSum(a0) + LaneSum(a1) + LaneSum(a2) + LaneSum(a3) + LaneSum(a4) + LaneSum(a5)
            + LaneSum(a6) + LaneSum(a7) + LaneSum(a8) + LaneSum(a9) + LaneSum(a10) + LaneSum(a11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Chains256(long iterations, float multiplier, float addend)
    {
        var m = Vector256.Create(multiplier); var c = Vector256.Create(addend);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector256<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c);
            a2 = Vector256.FusedMultiplyAdd(a2, m, c); a3 = Vector256.FusedMultiplyAdd(a3, m, c);
            a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c);
            a8 = Vector256.FusedMultiplyAdd(a8, m, c); a9 = Vector256.FusedMultiplyAdd(a9, m, c);
            a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }
        return LaneSum(a0) + LaneSum(a1) + LaneSum(a2) + LaneSum(a3) + LaneSum(a4) + LaneSum(a5)
            + LaneSum(a6) + LaneSum(a7) + LaneSum(a8) + LaneSum(a9) + LaneSum(a10) + LaneSum(a11);
    }
}
