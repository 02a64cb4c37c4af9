// GemmPrepacked: C = alpha·op(A)·B + beta·C with B packed once, ahead of the calls that use it.
//
// Why: the blocked GEMM (GemmBlocked.cs) packs all of op(B) on every call. For a weight multiplied by a few rows
// of activations (a GPT's prompt pass: 32 rows against a 128 x 384 weight) that packing reads and writes the whole
// weight, as much memory traffic as the multiply itself and, with B transposed, more time. Inference runtimes
// (ONNX Runtime's MLAS, oneDNN) pack a weight once when the model is loaded; this is the same for AttnCore.
// Layout: exactly the panels the blocked GEMM packs, in its loop order: for each NC-wide column panel jc, for each
// KC-deep slice pc, ceil(nc / NR) strips of kc x NR floats (zero-padded past N). Panel (jc, pc) starts at
// jc·K + pc·roundup(nc, NR) floats, and the whole matrix holds K·roundup(N, NR) floats.
// Algorithm: the blocked GEMM's loops with its packing of B left out: for jc, pc: for ic: pack the A block,
// then the macro-kernel over the prepacked strips (on several threads: each thread takes one part of C, whole rows
// or whole columns, as GemmBlocked's Parallel does, and runs these loops over it).
// Reference: the same panels, micro-kernel and order of additions as Gemm.Sgemm, so the result is bit-identical to
// it wherever Sgemm takes the blocked path (m and n above 4); Tests/Kernels/GemmPrepackedTests.cs checks that and
// compares with SgemmReference.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AttnCore.Kernels.Cpu;

/// <summary>
/// op(B) of a GEMM (K x N) packed into the blocked GEMM's panel layout by <see cref="Gemm.PackB"/>, for
/// <see cref="Gemm.SgemmPrepacked"/>. The packed copy does not follow later changes to the source matrix: repack it
/// (<see cref="Gemm.Repack"/>) after the source changes.
/// </summary>
public sealed class PackedMatrix
{
    // Pinned, so the kernels can hold a pointer; 16 floats of slack to start the panels on a 64-byte line.
    private readonly float[] _storage;
    private readonly int _start;

    internal PackedMatrix(int k, int n, bool transposed)
    {
        K = k; N = n; Transposed = transposed;
        Floats = (long)k * Gemm.RoundUpToStrip(n);
        if (Floats + 16 > Array.MaxLength)
            throw new ArgumentException($"Gemm.PackB: a packed {k} x {n} matrix needs {Floats} floats, more than one array holds");
        _storage = GC.AllocateUninitializedArray<float>((int)Floats + 16, pinned: true);
        unsafe
        {
            fixed (float* p = _storage) _start = (int)((64 - (nint)p % 64) % 64 / sizeof(float));
        }
    }

    /// <summary>Rows of op(B): the GEMM's depth.</summary>
    public int K { get; }
    /// <summary>Columns of op(B): the GEMM's n.</summary>
    public int N { get; }
    /// <summary>True when the source was stored as B's transpose (a row-major [N, K] weight, as in C = A·Wᵀ).</summary>
    public bool Transposed { get; }
    /// <summary>Floats of the packed panels (K times N rounded up to the micro-kernel's width).</summary>
    public long Floats { get; }

    internal unsafe float* Data => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage)) + _start;
}

public static unsafe partial class Gemm
{
    internal static long RoundUpToStrip(int n) => (n + NR - 1L) / NR * NR;

    /// <summary>
    /// Packs op(B) (K x N; B row-major with leading dimension <paramref name="ldb"/>, read as its transpose when
    /// <paramref name="transB"/>) once, for any number of <see cref="SgemmPrepacked"/> calls.
    /// </summary>
    public static PackedMatrix PackB(bool transB, int k, int n, ReadOnlySpan<float> b, int ldb)
    {
        if (k < 0 || n < 0) throw new ArgumentException($"Gemm.PackB: sizes must be non-negative, got k={k} n={n}");
        var packed = new PackedMatrix(k, n, transB);
        Repack(packed, b, ldb);
        return packed;
    }

    /// <summary>Packs <paramref name="b"/> again into <paramref name="packed"/> (same K, N and transposition), after the source changed.</summary>
    public static void Repack(PackedMatrix packed, ReadOnlySpan<float> b, int ldb)
    {
        ArgumentNullException.ThrowIfNull(packed);
        int k = packed.K, n = packed.N;
        Validate("Gemm.PackB", 1, false, packed.Transposed, 1, n, k, k, Math.Max(1, k), 0, b.Length, ldb, 0, n, Math.Max(1, n), 0);
        if (k == 0 || n == 0) return;
        fixed (float* pb = b)
        {
            float* dst = packed.Data;
            for (int jc = 0; jc < n; jc += NC)
            {
                int nc = Math.Min(NC, n - jc), strips = (nc + NR - 1) / NR;
                for (int pc = 0; pc < k; pc += KC)
                {
                    int kc = Math.Min(KC, k - pc);
                    for (int s = 0; s < strips; s++)
                        PackBStrip(pb, ldb, packed.Transposed, pc, kc, jc + s * NR, Math.Min(NR, nc - s * NR), dst + (long)s * kc * NR);
                    dst += (long)strips * kc * NR;
                }
            }
        }
    }

    /// <summary>
    /// C = alpha·op(A)·B + beta·C with B packed by <see cref="PackB"/>; op(A) is m x B.K, C is m x B.N, row-major.
    /// When beta is 0, C is not read. Bit-identical to <see cref="Sgemm"/> on the unpacked B for m and n above 4.
    /// </summary>
    public static void SgemmPrepacked(bool transA, int m, float alpha, ReadOnlySpan<float> a, int lda, PackedMatrix b, float beta, Span<float> c, int ldc)
    {
        ArgumentNullException.ThrowIfNull(b);
        int n = b.N, k = b.K;
        Validate("Gemm.SgemmPrepacked", 1, transA, false, m, n, k, a.Length, lda, 0, long.MaxValue, Math.Max(1, n), 0, c.Length, ldc, 0);
        if (m == 0 || n == 0) return;
        fixed (float* aPtr = a) fixed (float* cPtr = c)
        {
            var j = new Job(aPtr, null, cPtr, 1, transA, false, m, n, k, alpha, beta, lda, 0, ldc, 0, 0, 0);
            if (k == 0 || alpha == 0) { ScaleC(ref j, 0); return; }
            if (WorkerPool.ThreadCount > 1 && (long)m * n * k >= ParallelThreshold)
            {
                j.B = b.Data;
                j.Parts = WorkerPool.ThreadCount;
                WorkerPool.For(j.Parts, &PrepackedPartTask, (nint)(&j));
            }
            else PrepackedLoops(ref j, b.Data, 0, m, 0, n);
        }
    }

    // Thread t's part of C (GemmBlocked's ThreadPart: rows when m >= n, else columns), j.B holding the packed panels.
    private static void PrepackedPartTask(int t, nint state)
    {
        ref Job j = ref *(Job*)state;
        if (ThreadPart(j.M, j.N, t, j.Parts, out int r0, out int r1, out int c0, out int c1)) PrepackedLoops(ref j, j.B, r0, r1, c0, c1);
    }

    // The blocked loops over rows [r0, r1) and columns [c0, c1) of C (c0 a multiple of NR), the panels of B prepacked.
    private static void PrepackedLoops(ref Job j, float* packed, int r0, int r1, int c0, int c1)
    {
        int n = j.N, k = j.K;
        float* packA = PackABuffer(MC, KC);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc), strips = (nc + NR - 1) / NR;
            int jr0 = Math.Max(0, c0 - jc), jrEnd = Math.Min(nc, c1 - jc);
            if (jr0 >= jrEnd) continue;
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float* panel = packed + (long)jc * k + (long)pc * strips * NR;
                for (int ic = r0; ic < r1; ic += MC)
                {
                    int mc = Math.Min(MC, r1 - ic);
                    PackABlock(j.A, j.Lda, j.TransA, ic, mc, pc, kc, packA);
                    Macro(packA, panel, j.C, j.Ldc, ic, mc, jc, jr0, jrEnd, kc, j.Alpha, pc == 0 ? j.Beta : 1f, pc == 0, SliceBias(ref j, jc, pc, kc));
                }
            }
        }
    }
}
