// Gemv: C = A·Wᵀ for a few rows of A (1 to MaxRows: a batch-1 decoder step) against a row-major weight W [n, k],
// which is how a Linear layer's weight is stored, so op(B) = Wᵀ is "transposed B" to the GEMM.
//
// Algorithm: every output C[i, j] is a dot product of A row i with W row j, both contiguous in k. Rows of W are
// taken four at a time; for each A row the four dot products run together over k in Vector512 chunks, four
// accumulators, one load of A per four loads of W, so the loop streams W at the load ports' rate and W's four
// rows stay in L1 while every A row passes over them; the horizontal sums happen once per output. Without
// AVX-512 each of the four is a Vector256 dot product of its own.
// Memory-bound: n·k weights are read once per call (2·m·n·k FLOPs over 4·n·k bytes), which is why the blocked
// GEMM's packing (a second pass over W) loses at these shapes.
// Bias: C[i, j] = dot + bias[j] when a bias is given, added to the finished sum as the blocked GEMM's epilogue does,
// so a Linear layer's output has the bits of the product followed by a separate add on both paths.
// Threads: above ParallelWeights weights the rows of W are split into chunks over the WorkerPool; below it a
// single thread finishes before the pool's hand-off would pay for itself.
// Reference: SgemvReference (float64 accumulation), compared in Tests/Kernels/GemvTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Matrix-vector products for few-row inputs against a row-major weight: C = A·Wᵀ.</summary>
public static unsafe class Gemv
{
    /// <summary>The most rows of A one call takes; taller inputs go to <see cref="Gemm"/>.</summary>
    public const int MaxRows = 4;

    // Below this many weights (n·k) one thread wins: 128 Ki floats is ~10 µs of streaming on one core here.
    private const long ParallelWeights = 1L << 17;
    private const int RowBlock = 4;

    private struct Job
    {
        public float* A, W, C, Bias;   // Bias null: none
        public int M, N, K, Lda, Ldw, Ldc, RowsPerChunk;
    }

    /// <summary>
    /// C = A·Wᵀ for any number of rows <paramref name="m"/>: <see cref="Sgemv"/> for up to <see cref="MaxRows"/> rows
    /// (stream W once, no packing), the blocked <see cref="Gemm"/> above that. The one place that choice is made, for
    /// CpuBackend's MatMul and MatMulBias and for GptDecoder. C is overwritten (not read); a non-empty
    /// <paramref name="bias"/> (length n) is added to every row as the sums are stored.
    /// </summary>
    public static void MultiplyByWeight(int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> w, int ldw, Span<float> c, int ldc,
        ReadOnlySpan<float> bias = default)
    {
        if (m <= MaxRows) Sgemv(m, n, k, a, lda, w, ldw, c, ldc, bias);
        else Gemm.SgemmStridedBatched(1, false, true, m, n, k, 1f, a, lda, 0, w, ldw, 0, 0f, c, ldc, 0, bias);
    }

    /// <summary>
    /// <see cref="MultiplyByWeight(int, int, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, Span{float}, int, ReadOnlySpan{float})"/>
    /// for a weight whose GEMM panels are kept packed by the caller (<see cref="Gemm.PackB"/> of Wᵀ): above
    /// <see cref="MaxRows"/> rows the prepacked GEMM runs on <paramref name="packedW"/>(<paramref name="state"/>), which
    /// is called only then, so that a decoder step of a few rows never packs. The sums are bit-identical to the first form's.
    /// </summary>
    public static void MultiplyByWeight<TState>(int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> w, int ldw,
        Span<float> c, int ldc, TState state, Func<TState, PackedMatrix> packedW)
    {
        if (m <= MaxRows) Sgemv(m, n, k, a, lda, w, ldw, c, ldc);
        else
        {
            var packed = packedW(state);
            if (packed.K != k || packed.N != n)
                throw new ArgumentException($"Gemv.MultiplyByWeight: the packed weight is [{packed.N}, {packed.K}], the product needs [{n}, {k}]");
            Gemm.SgemmPrepacked(false, m, 1f, a, lda, packed, 0f, c, ldc);
        }
    }

    /// <summary>
    /// C[i, j] = Σ_p A[i, p]·W[j, p] for i &lt; <paramref name="m"/> (at most <see cref="MaxRows"/>), j &lt; <paramref name="n"/>;
    /// A, W and C row-major with leading dimensions <paramref name="lda"/>, <paramref name="ldw"/>, <paramref name="ldc"/>.
    /// C is overwritten (not read); a non-empty <paramref name="bias"/> (length n) adds bias[j] to column j.
    /// </summary>
    public static void Sgemv(int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> w, int ldw, Span<float> c, int ldc,
        ReadOnlySpan<float> bias = default)
    {
        Check("Gemv.Sgemv", m, n, k, a.Length, lda, w.Length, ldw, c.Length, ldc);
        if (!bias.IsEmpty && bias.Length != n) throw new ArgumentException($"Gemv.Sgemv: bias has {bias.Length} elements, C has n={n} columns");
        if (m == 0 || n == 0) return;
        fixed (float* pa = a) fixed (float* pw = w) fixed (float* pc = c) fixed (float* pb = bias)
        {
            var job = new Job { A = pa, W = pw, C = pc, Bias = bias.IsEmpty ? null : pb, M = m, N = n, K = k, Lda = lda, Ldw = ldw, Ldc = ldc };
            long weights = (long)n * k;
            int quads = (n + RowBlock - 1) / RowBlock;
            int chunks = WorkerPool.ThreadCount > 1 && weights >= ParallelWeights ? Math.Min(quads, WorkerPool.ChunkCount(weights, ParallelWeights / 4, perThread: 2)) : 1;
            if (chunks <= 1) { Rows(ref job, 0, n); return; }
            job.RowsPerChunk = (quads + chunks - 1) / chunks * RowBlock;
            WorkerPool.For((n + job.RowsPerChunk - 1) / job.RowsPerChunk, &Chunk, (nint)(&job));
        }
    }

    private static void Chunk(int index, nint state)
    {
        ref var j = ref *(Job*)state;
        int first = index * j.RowsPerChunk;
        Rows(ref j, first, Math.Min(j.N, first + j.RowsPerChunk));
    }

    // Outputs j in [first, end) of every A row: W rows four at a time, then the one-row tail.
    private static void Rows(ref Job j, int first, int end)
    {
        int r = first;
        for (; r + RowBlock <= end; r += RowBlock)
        {
            float* w0 = j.W + (long)r * j.Ldw;
            for (int i = 0; i < j.M; i++)
            {
                var s = Dot4(j.A + (long)i * j.Lda, w0, j.Ldw, j.K);
                if (j.Bias != null) s += Vector128.Load(j.Bias + r);
                float* c = j.C + (long)i * j.Ldc + r;
                c[0] = s.GetElement(0); c[1] = s.GetElement(1); c[2] = s.GetElement(2); c[3] = s.GetElement(3);
            }
        }
        for (; r < end; r++)
            for (int i = 0; i < j.M; i++)
            {
                float s = Dot1(j.A + (long)i * j.Lda, j.W + (long)r * j.Ldw, j.K);
                j.C[(long)i * j.Ldc + r] = j.Bias == null ? s : s + j.Bias[r];
            }
    }

    // Four dot products x·w_q (w_q = w + q·ldw) sharing each load of x; without AVX-512, four separate ones.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4(float* x, float* w, int ldw, int k)
    {
        float* w1 = w + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
        if (!Vector512.IsHardwareAccelerated) return Vector128.Create(Dot1(x, w, k), Dot1(x, w1, k), Dot1(x, w2, k), Dot1(x, w3, k));
        int p = 0;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; p + 16 <= k; p += 16)
        {
            var xv = Vector512.Load(x + p);
            a0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w + p), a0);
            a1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w1 + p), a1);
            a2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w2 + p), a2);
            a3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w3 + p), a3);
        }
        float s0 = Vector512.Sum(a0), s1 = Vector512.Sum(a1), s2 = Vector512.Sum(a2), s3 = Vector512.Sum(a3);
        for (; p < k; p++)
        {
            float xv = x[p];
            s0 = MathF.FusedMultiplyAdd(xv, w[p], s0); s1 = MathF.FusedMultiplyAdd(xv, w1[p], s1);
            s2 = MathF.FusedMultiplyAdd(xv, w2[p], s2); s3 = MathF.FusedMultiplyAdd(xv, w3[p], s3);
        }
        return Vector128.Create(s0, s1, s2, s3);
    }

    private static float Dot1(float* x, float* w, int k)
    {
        int p = 0;
        float s = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> acc = default;
            for (; p + 16 <= k; p += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), Vector512.Load(w + p), acc);
            s = Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc = default;
            for (; p + 8 <= k; p += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(x + p), Vector256.Load(w + p), acc);
            s += Vector256.Sum(acc);
        }
        for (; p < k; p++) s = MathF.FusedMultiplyAdd(x[p], w[p], s);
        return s;
    }

    /// <summary>The definition of <see cref="Sgemv"/> with float64 accumulation: the reference the tests compare against.</summary>
    public static void SgemvReference(int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> w, int ldw, Span<float> c, int ldc)
    {
        Check("Gemv.SgemvReference", m, n, k, a.Length, lda, w.Length, ldw, c.Length, ldc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[i * lda + p] * w[j * ldw + p];
                c[i * ldc + j] = (float)s;
            }
    }

    private static void Check(string op, int m, int n, int k, long aLen, int lda, long wLen, int ldw, long cLen, int ldc)
    {
        if (m < 0 || m > MaxRows || n < 0 || k < 0)
            throw new ArgumentException($"{op}: sizes must satisfy 0 <= m <= {MaxRows}, n >= 0, k >= 0, got m={m} n={n} k={k}");
        if (lda < Math.Max(1, k) || ldw < Math.Max(1, k) || ldc < Math.Max(1, n))
            throw new ArgumentException($"{op}: leading dimensions lda={lda}, ldw={ldw} must be at least k={k} and ldc={ldc} at least n={n}");
        static long Need(int rows, int cols, int ld) => rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (aLen < Need(m, k, lda) || wLen < Need(n, k, ldw) || cLen < Need(m, n, ldc))
            throw new ArgumentException($"{op}: buffers too short for m={m} n={n} k={k}: A has {aLen} (needs {Need(m, k, lda)}), W {wLen} (needs {Need(n, k, ldw)}), C {cLen} (needs {Need(m, n, ldc)})");
    }
}
