// GemmSkinny: skinny products (m or n at most 4: a batch-1 decoder step, a matrix-vector product), float64 GEMM,
// and the float64 references. Skinny shapes are memory-bound: packing would read B twice, so they
// stream it once instead: row-major op(B) as axpy over B's rows, transposed op(B) as dot products.
// Reference: SgemmReference / DgemmReference (defined here), compared in Tests/Kernels/GemmTests.cs.
using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Gemm
{
    private static void Skinny(ref Job j, int e)
    {
        float* a = j.A + e * j.StrideA, b = j.B + e * j.StrideB, c = j.C + e * j.StrideC;
        int m = j.M, n = j.N, k = j.K;
        ScaleC(ref j, e);
        if (j.N <= 4 && j.M > 4)
        {
            // Few columns: each C column is op(A) times one column of op(B), gathered into a contiguous vector.
            var colBuf = ArrayPool<float>.Shared.Rent(k);
            var rowBuf = ArrayPool<float>.Shared.Rent(k);
            try
            {
                for (int q = 0; q < n; q++)
                {
                    for (int p = 0; p < k; p++) colBuf[p] = j.TransB ? b[(long)q * j.Ldb + p] : b[(long)p * j.Ldb + q];
                    var colSpan = new ReadOnlySpan<float>(colBuf, 0, k);
                    for (int i = 0; i < m; i++)
                    {
                        ReadOnlySpan<float> row;
                        if (!j.TransA) row = new ReadOnlySpan<float>(a + (long)i * j.Lda, k);
                        else { for (int p = 0; p < k; p++) rowBuf[p] = a[(long)p * j.Lda + i]; row = new ReadOnlySpan<float>(rowBuf, 0, k); }
                        c[(long)i * j.Ldc + q] += j.Alpha * TensorPrimitives.Dot(row, colSpan);
                    }
                }
            }
            finally { ArrayPool<float>.Shared.Return(colBuf); ArrayPool<float>.Shared.Return(rowBuf); }
            return;
        }
        // Few rows: C[i, :] += alpha * sum_p op(A)[i, p] * op(B)[p, :].
        for (int i = 0; i < m; i++)
        {
            var crow = new Span<float>(c + (long)i * j.Ldc, n);
            if (!j.TransB)
                for (int p = 0; p < k; p++)
                {
                    // No skipping of zero a's: 0 * inf and 0 * NaN must give NaN, as IEEE and PyTorch do.
                    float s = j.Alpha * (j.TransA ? a[(long)p * j.Lda + i] : a[(long)i * j.Lda + p]);
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b + (long)p * j.Ldb, n), s, crow, crow);
                }
            else
            {
                var rowBuf = ArrayPool<float>.Shared.Rent(k);
                try
                {
                    for (int p = 0; p < k; p++) rowBuf[p] = j.TransA ? a[(long)p * j.Lda + i] : a[(long)i * j.Lda + p];
                    var row = new ReadOnlySpan<float>(rowBuf, 0, k);
                    for (int q = 0; q < n; q++) crow[q] += j.Alpha * TensorPrimitives.Dot(row, new ReadOnlySpan<float>(b + (long)q * j.Ldb, k));
                }
                finally { ArrayPool<float>.Shared.Return(rowBuf); }
            }
        }
    }

    /// <summary>C = alpha·op(A)·op(B) + beta·C for row-major float64 matrices (used by gradient checks and references).</summary>
    public static void Dgemm(bool transA, bool transB, int m, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
        => DgemmStridedBatched(1, transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0);

    /// <summary>
    /// Batched float64 GEMM with the same conventions as <see cref="SgemmStridedBatched"/>. Simpler than the
    /// float32 path on purpose: op(B) is made row-major once, then each row of C is a sequence of vectorised axpys.
    /// </summary>
    public static void DgemmStridedBatched(int batch, bool transA, bool transB, int m, int n, int k, double alpha,
        ReadOnlySpan<double> a, int lda, long strideA, ReadOnlySpan<double> b, int ldb, long strideB,
        double beta, Span<double> c, int ldc, long strideC)
    {
        Validate("Gemm.Dgemm", batch, transA, transB, m, n, k, a.Length, lda, strideA, b.Length, ldb, strideB, c.Length, ldc, strideC);
        if (batch == 0 || m == 0 || n == 0) return;
        var bt = transB ? ArrayPool<double>.Shared.Rent(k * n) : null;
        try
        {
            for (int e = 0; e < batch; e++)
            {
                var be = b[(int)(e * strideB)..];
                var ce = c[(int)(e * strideC)..];
                var ae = a[(int)(e * strideA)..];
                ReadOnlySpan<double> bRows = be;
                int ldbRows = ldb;
                if (transB)
                {
                    for (int p = 0; p < k; p++) for (int q = 0; q < n; q++) bt![p * n + q] = be[q * ldb + p];
                    bRows = bt; ldbRows = n;
                }
                for (int i = 0; i < m; i++)
                {
                    var crow = ce.Slice(i * ldc, n);
                    if (beta == 0) crow.Clear(); else if (beta != 1) TensorPrimitives.Multiply(crow, beta, crow);
                    for (int p = 0; p < k; p++)
                    {
                        double s = alpha * (transA ? ae[p * lda + i] : ae[i * lda + p]);
                        TensorPrimitives.MultiplyAdd(bRows.Slice(p * ldbRows, n), s, crow, crow);   // no zero skip: 0 * inf is NaN
                    }
                }
            }
        }
        finally { if (bt is not null) ArrayPool<double>.Shared.Return(bt); }
    }

    /// <summary>The textbook triple loop with float64 accumulation: the reference the fast float32 GEMM is tested against.</summary>
    public static void SgemmReference(bool transA, bool transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        Validate("Gemm.SgemmReference", 1, transA, transB, m, n, k, a.Length, lda, 0, b.Length, ldb, 0, c.Length, ldc, 0);
        for (int i = 0; i < m; i++)
            for (int q = 0; q < n; q++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[q * ldb + p] : b[p * ldb + q]);
                c[i * ldc + q] = (float)(alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + q]));
            }
    }

    /// <summary>The textbook triple loop in float64.</summary>
    public static void DgemmReference(bool transA, bool transB, int m, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
    {
        Validate("Gemm.DgemmReference", 1, transA, transB, m, n, k, a.Length, lda, 0, b.Length, ldb, 0, c.Length, ldc, 0);
        for (int i = 0; i < m; i++)
            for (int q = 0; q < n; q++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[q * ldb + p] : b[p * ldb + q]);
                c[i * ldc + q] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + q]);
            }
    }
}
