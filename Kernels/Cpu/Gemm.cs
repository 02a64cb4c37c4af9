// Gemm: C = alpha * op(A) @ op(B) + beta * C, row-major, float32 and float64, single and batched.
//
// Algorithm (BLIS, Van Zee and van de Geijn 2015): five loops around a register-blocked micro-kernel.
//   for jc in N by NC:                      B panel (KC x NC) lives in L3
//     for pc in K by KC:  pack B[pc.., jc..] into NR-wide strips (each strip: KC rows of NR floats)
//       for ic in M by MC:  pack A[ic.., pc..] into MR-tall strips (each strip: KC columns of MR floats)
//         for jr in NC by NR, ir in MC by MR:  micro-kernel: C[MR x NR] += A strip @ B strip
// Packing makes every operand form (transposed or not, any leading dimension) look the same to the
// micro-kernel, which then reads both operands with unit stride. The micro-kernel keeps the whole
// MR x NR block of C in registers: 6 rows x 32 columns = 12 zmm accumulators on Vector512 (6 x 16 = 12 ymm
// on Vector256), and per k step loads 2 vectors of B, broadcasts 6 values of A and issues 12 FMAs.
// Epilogue: an optional bias row (a Linear layer's) is added to each tile as the last K slice writes it, so the
// result has the bits of the product followed by a separate add, without that add's pass over C.
// FLOPs: 2·M·N·K. Bytes: packing reads A once per N/NC and B once; C is read/written K/KC times.
// Bound: FMA throughput for large shapes (the peak `bench peak` measures; MC/KC below were swept against it,
// docs/kernels-cpu.md); memory for skinny ones,
// which skip packing (GemmSkinny below).
// Threads: one WorkerPool call per matrix, with no barrier inside it. When C is taller than wide, the threads share
// its MC-row blocks, each claimed by whichever thread asks first, every thread packing each B panel for itself
// (GemmBlocked.cs, SharedRowsTask); otherwise C is cut into one part of whole columns per thread and each thread
// runs the five loops on its part with its own packing buffers, reused across calls (GemmBlocked.cs, Parallel,
// says why this beat shared packed panels). Called
// from inside a WorkerPool body (a convolution's per-image slot), where a nested split would only run its parts in
// turn on one thread, the GEMM runs whole.
// Reference: SgemmReference / DgemmReference (triple loop, float64 accumulation; in GemmSkinny.cs), compared in
// Tests/Kernels/GemmTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>General matrix multiply on the CPU: BLIS-style blocking, packing, and SIMD micro-kernels.</summary>
public static unsafe partial class Gemm
{
    private const int MR = 6;        // rows of C per micro-kernel
    private const int NR = 32;       // columns of C per micro-kernel (2 x Vector512<float>, 4 x Vector256<float>)
    // The cache blocking: the defaults of ParseBlocking, or ATTNCORE_GEMM_BLOCKING="MC,KC,NC" read once per
    // process, so that a sweep can try other values on one binary (docs/kernels-cpu.md has the sweeps). Static
    // readonly, so the optimising JIT folds them as constants like the consts they were.
    private static readonly (int MC, int KC, int NC) BlockSizes = ParseBlocking(Environment.GetEnvironmentVariable("ATTNCORE_GEMM_BLOCKING"), "ATTNCORE_GEMM_BLOCKING");
    private static readonly int KC = BlockSizes.KC;   // depth of a K slice: an A strip is 6 x KC floats, a B strip KC x 32
    private static readonly int MC = BlockSizes.MC;   // rows of a packed A block (MC x KC floats, in the 1 MiB L2)
    private static readonly int NC = BlockSizes.NC;   // columns of a packed B panel (KC x NC floats, one per thread)

    /// <summary>The cache blocking this process runs: rows of a packed A block (MC), depth of a K slice (KC) and
    /// columns of a packed B panel (NC); set by ATTNCORE_GEMM_BLOCKING="MC,KC,NC" before the first GEMM.</summary>
    public static (int MC, int KC, int NC) Blocking => BlockSizes;

    // Defaults, from `bench gemm --blockings` on the Zen 5 host of 2026-12-05 (docs/kernels-cpu.md): MC = 96, KC = 512,
    // NC = 1024. The A block is 192 KiB (L2), the B panel 2 MiB per thread. The 4 MiB panels of NC = 4096 cost 3-9%
    // at 4096³ against NC = 1024, more when other tenants share the L3; KC = 512 (a 64 KiB B strip, past the 48 KiB
    // L1) gained 1-2% over 256 there, where the old host had measured it 5-10% slower.
    /// <summary>
    /// "MC,KC,NC" as a blocking, or the defaults for null or blank; <paramref name="source"/> (the variable or option
    /// it came from) names it in the exception a malformed value gets.
    /// </summary>
    public static (int MC, int KC, int NC) ParseBlocking(string? value, string source)
    {
        if (string.IsNullOrWhiteSpace(value)) return (96, 512, 1024);
        var parts = value.Split(',');
        if (parts.Length != 3 || !int.TryParse(parts[0], out int mc) || !int.TryParse(parts[1], out int kc) || !int.TryParse(parts[2], out int nc))
            throw BadBlocking(source, value);
        return CheckBlocking((mc, kc, nc), source, value);
    }

    /// <summary>A blocking as "MC,KC,NC", the form <see cref="ParseBlocking"/> reads.</summary>
    public static string FormatBlocking((int MC, int KC, int NC) b) => $"{b.MC},{b.KC},{b.NC}";

    private static (int MC, int KC, int NC) CheckBlocking((int MC, int KC, int NC) b, string source, string text)
    {
        if (b.MC <= 0 || b.MC % MR != 0 || b.KC <= 0 || b.NC <= 0 || b.NC % NR != 0 || (long)b.MC * b.KC > 1L << 24 || (long)b.KC * b.NC > 1L << 26)
            throw BadBlocking(source, text);
        return b;
    }

    private static ArgumentException BadBlocking(string source, string text) =>
        new($"Gemm: {source} \"{text}\" is not \"MC,KC,NC\" with MC a positive multiple of {MR}, NC a positive multiple of {NR}, " +
            "KC positive, MC·KC <= 2^24 and KC·NC <= 2^26 floats");

    /// <summary>C = alpha·op(A)·op(B) + beta·C for row-major float32 matrices; op(A) is m x k, op(B) is k x n.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
        => SgemmStridedBatched(1, transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0);

    /// <summary>
    /// C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] (+ bias on every row) for i &lt; batch, matrix i starting at
    /// i·stride (a stride of 0 for A or B broadcasts one matrix to every batch entry). When beta is 0, C is not
    /// read. <paramref name="bias"/> is empty or n values added to every row of C as it is written (a Linear layer's
    /// bias, fused: no second pass over C).
    /// </summary>
    public static void SgemmStridedBatched(int batch, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, ReadOnlySpan<float> bias = default)
        => SgemmStridedBatchedWithBlocking(BlockSizes, batch, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, bias);

    /// <summary>
    /// <see cref="SgemmStridedBatched(int, bool, bool, int, int, int, float, ReadOnlySpan{float}, int, long, ReadOnlySpan{float}, int, long, float, Span{float}, int, long, ReadOnlySpan{float})"/>
    /// under another cache blocking than the process's (<see cref="Blocking"/>): for tuning, as
    /// <c>attncore bench gemm --blockings</c> does. The products are the same; where the K slices fall, and so the
    /// rounding of the sums, and the speed change.
    /// </summary>
    public static void SgemmStridedBatchedWithBlocking((int MC, int KC, int NC) blocking, int batch, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, ReadOnlySpan<float> bias = default)
    {
        Validate("Gemm.Sgemm", batch, transA, transB, m, n, k, a.Length, lda, strideA, b.Length, ldb, strideB, c.Length, ldc, strideC);
        if (!bias.IsEmpty && bias.Length != n) throw new ArgumentException($"Gemm.Sgemm: bias has {bias.Length} elements, C has n={n} columns");
        CheckBlocking(blocking, "blocking", FormatBlocking(blocking));
        if (batch == 0 || m == 0 || n == 0) return;
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c) fixed (float* pbias = bias)
        {
            var job = new Job(pa, pb, pc, batch, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC);
            job.Bias = bias.IsEmpty ? null : pbias;
            (job.Mc, job.Kc, job.Nc) = blocking;
            Run(ref job);
        }
    }

    internal static void Validate(string op, int batch, bool transA, bool transB, int m, int n, int k, long aLen, int lda, long strideA,
        long bLen, int ldb, long strideB, long cLen, int ldc, long strideC)
    {
        if (batch < 0 || m < 0 || n < 0 || k < 0)
            throw new ArgumentException($"{op}: sizes must be non-negative, got batch={batch} m={m} n={n} k={k}");
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        if (lda < Math.Max(1, aCols)) throw new ArgumentException($"{op}: lda={lda} is less than the {aCols} columns of A (m={m} k={k} transA={transA})");
        if (ldb < Math.Max(1, bCols)) throw new ArgumentException($"{op}: ldb={ldb} is less than the {bCols} columns of B (k={k} n={n} transB={transB})");
        if (ldc < Math.Max(1, n)) throw new ArgumentException($"{op}: ldc={ldc} is less than n={n}");
        if (strideA < 0 || strideB < 0 || strideC < 0) throw new ArgumentException($"{op}: batch strides must be non-negative");
        if (batch == 0 || m == 0 || n == 0) return;
        if (batch > 1 && strideC < (long)(m - 1) * ldc + n) throw new ArgumentException($"{op}: strideC={strideC} makes the {batch} C matrices of {m}x{n} (ldc={ldc}) overlap");
        long needA = aRows == 0 || aCols == 0 ? 0 : (batch - 1) * strideA + (long)(aRows - 1) * lda + aCols;
        long needB = bRows == 0 || bCols == 0 ? 0 : (batch - 1) * strideB + (long)(bRows - 1) * ldb + bCols;
        long needC = (batch - 1) * strideC + (long)(m - 1) * ldc + n;
        if (aLen < needA) throw new ArgumentException($"{op}: a has {aLen} elements, needs {needA} for batch={batch} m={m} k={k} lda={lda} strideA={strideA} transA={transA}");
        if (bLen < needB) throw new ArgumentException($"{op}: b has {bLen} elements, needs {needB} for batch={batch} k={k} n={n} ldb={ldb} strideB={strideB} transB={transB}");
        if (cLen < needC) throw new ArgumentException($"{op}: c has {cLen} elements, needs {needC} for batch={batch} m={m} n={n} ldc={ldc} strideC={strideC}");
    }
}
