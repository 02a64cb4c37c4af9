// GemmBlocked: the float32 BLIS loops, packing and micro-kernels behind Gemm.SgemmStridedBatched (the
// algorithm, its blocking and its FLOP/byte counts are in the header of Gemm.cs). Packing copies an MC x KC
// block of op(A) into MR-tall strips and a KC x NC panel of op(B) into NR-wide strips, zero-padding the edges,
// so the micro-kernel always computes a full MR x NR tile with unit-stride loads; edge tiles are written back
// through a small staging tile.
// Reference: SgemmReference / DgemmReference (float64 accumulation), compared in Tests/Kernels/GemmTests.cs.
// Micro-kernels by width: MicroKernel512/MicroKernelInPlaceA with AVX-512; MicroKernelPortable at Vector<float>'s
// width elsewhere (passes of 6 x 2W: AVX2, Arm64, SSE); MicroKernelScalar without any SIMD.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Runtime.InteropServices;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Gemm
{
    private struct Job
    {
        public float* A, B, C;
        // [N] added to every row of C as the last K slice writes it (a Linear layer's bias, fused), or null.
        public float* Bias;
        public int Batch, M, N, K, Lda, Ldb, Ldc;
        public bool TransA, TransB;
        public float Alpha, Beta;
        public long StrideA, StrideB, StrideC;
        // The batch entry a parallel call is computing, and into how many parts it cuts C (the thread count when the
        // call began, so that a ThreadCount changed meanwhile cannot make the parts overlap or leave a gap).
        public int Entry, Parts;
        // The cache blocking of this call: the process's (Gemm.Blocking) unless SgemmStridedBatchedWithBlocking got another.
        public int Mc, Kc, Nc;
        // SharedRowsTask's counters on Parallel's stack: blocks claimed per (jc, pc) slice, and slices finished per row block.
        public int* Claims, Progress;

        public Job(float* a, float* b, float* c, int batch, bool ta, bool tb, int m, int n, int k, float alpha, float beta,
            int lda, int ldb, int ldc, long sa, long sb, long sc)
        {
            A = a; B = b; C = c; Batch = batch; TransA = ta; TransB = tb; M = m; N = n; K = k; Alpha = alpha; Beta = beta;
            Lda = lda; Ldb = ldb; Ldc = ldc; StrideA = sa; StrideB = sb; StrideC = sc;
            (Mc, Kc, Nc) = BlockSizes;
        }
    }

    // Per-thread packing buffers, 64-byte aligned, grown on demand and kept for the thread's life.
    [ThreadStatic] private static float* _packA, _packB;
    [ThreadStatic] private static long _packALength, _packBLength;

    // 8 floats of slack: the vector packing of A writes 8-float rows 6 apart, the last one 2 floats past its strip.
    private static float* PackABuffer(int mc, int kc) => Grown(ref _packA, ref _packALength, (long)mc * kc + 8);

    private static float* PackBBuffer(int kc, int nc) => Grown(ref _packB, ref _packBLength, (long)kc * nc);

    private static float* Grown(ref float* buffer, ref long length, long need)
    {
        if (length < need)
        {
            NativeMemory.AlignedFree(buffer);
            buffer = (float*)NativeMemory.AlignedAlloc((nuint)(need * sizeof(float)), 64);
            length = need;
        }
        return buffer;
    }

    private const long ParallelThreshold = 48L * 48 * 48;    // below this many multiply-adds one thread wins

    private static void Run(ref Job j)
    {
        if (j.K == 0 || j.Alpha == 0)
        {
            for (int e = 0; e < j.Batch; e++) { ScaleC(ref j, e); AddBias(ref j, e); }
            return;
        }
        long work = (long)j.M * j.N * j.K;
        if (j.M <= 4 || j.N <= 4)
        {
            // Memory-bound shapes that write C row by row: the bias as a pass of its own costs little here.
            for (int e = 0; e < j.Batch; e++) { Skinny(ref j, e); AddBias(ref j, e); }
            return;
        }
        if (WorkerPool.ThreadCount > 1 && j.Batch >= 2 * WorkerPool.ThreadCount && work < 256L * 256 * 256)
        {
            // Many small matrices (attention heads): one matrix per task, each packed by its own thread.
            fixed (Job* pj = &j) WorkerPool.For(j.Batch, &SerialEntry, (nint)pj);
            return;
        }
        for (int e = 0; e < j.Batch; e++)
        {
            // Inside a pool body (a convolution's per-image slots, Winograd's per-thread blocks) the parts of a split
            // would run one after another on this thread, each packing the shared operand again: run it whole.
            if (WorkerPool.ThreadCount == 1 || work < ParallelThreshold || WorkerPool.InsideBody) Serial(ref j, e);
            else Parallel(ref j, e);
        }
    }

    private static void SerialEntry(int e, nint state) => Serial(ref *(Job*)state, e);

    private static void ScaleC(ref Job j, int e)
    {
        float* c = j.C + e * j.StrideC;
        for (int i = 0; i < j.M; i++)
        {
            var row = new Span<float>(c + (long)i * j.Ldc, j.N);
            if (j.Beta == 0) row.Clear();
            else if (j.Beta != 1) System.Numerics.Tensors.TensorPrimitives.Multiply(row, j.Beta, row);
        }
    }

    // C[e] += bias on every row, for the paths that do not fuse it (none when j.Bias is null).
    private static void AddBias(ref Job j, int e)
    {
        if (j.Bias == null) return;
        var bias = new ReadOnlySpan<float>(j.Bias, j.N);
        float* c = j.C + e * j.StrideC;
        for (int i = 0; i < j.M; i++)
        {
            var row = new Span<float>(c + (long)i * j.Ldc, j.N);
            System.Numerics.Tensors.TensorPrimitives.Add(row, bias, row);
        }
    }

    // The bias (from column jc) that the K slice [pc, pc + kc) adds as it writes C: only the last slice's, after its sum,
    // so that the bits are those of the product followed by an add; null for the other slices and without a bias.
    private static float* SliceBias(ref Job j, int jc, int pc, int kc) => pc + kc >= j.K && j.Bias != null ? j.Bias + jc : null;

    // One batch entry on the calling thread: all five loops, this thread's buffers.
    private static void Serial(ref Job j, int e)
    {
        float* a = j.A + e * j.StrideA, b = j.B + e * j.StrideB, c = j.C + e * j.StrideC;
        float* pa = PackABuffer(j.Mc, j.Kc), pb = PackBBuffer(j.Kc, j.Nc);
        for (int jc = 0; jc < j.N; jc += j.Nc)
        {
            int nc = Math.Min(j.Nc, j.N - jc);
            for (int pc = 0; pc < j.K; pc += j.Kc)
            {
                int kc = Math.Min(j.Kc, j.K - pc);
                PackBPanel(ref j, b, pc, kc, jc, nc, pb);
                for (int ic = 0; ic < j.M; ic += j.Mc)
                    RowBlock(ref j, a, pa, pb, c, ic, Math.Min(j.Mc, j.M - ic), pc, kc, jc, nc, SliceBias(ref j, jc, pc, kc));
            }
        }
    }

    // op(B)[pc.., jc..] (kc x nc) into NR-wide strips at pb.
    private static void PackBPanel(ref Job j, float* b, int pc, int kc, int jc, int nc, float* pb)
    {
        for (int s = 0; s < (nc + NR - 1) / NR; s++) PackBStrip(b, j.Ldb, j.TransB, pc, kc, jc + s * NR, Math.Min(NR, nc - s * NR), pb + (long)s * kc * NR);
    }

    // Rows [ic, ic + mc) of C times the packed B panel (jc, pc): A read in place or packed, the first K slice applying
    // beta and the last adding the bias.
    private static void RowBlock(ref Job j, float* a, float* pa, float* pb, float* c, int ic, int mc, int pc, int kc, int jc, int nc, float* bias)
    {
        if (ReadsAInPlace(ref j)) MacroInPlaceA(a, j.Lda, pa, pb, c, j.Ldc, ic, mc, pc, jc, 0, nc, kc, j.Alpha, pc == 0 ? j.Beta : 1f, pc == 0, bias);
        else
        {
            PackABlock(a, j.Lda, j.TransA, ic, mc, pc, kc, pa);
            Macro(pa, pb, c, j.Ldc, ic, mc, jc, 0, nc, kc, j.Alpha, pc == 0 ? j.Beta : 1f, pc == 0, bias);
        }
    }

    // One batch entry on all workers, without a barrier. With at least two MC-row blocks per thread and C taller than
    // wide, the threads share the row blocks (SharedRowsTask, below). Otherwise C is cut into one part per thread and
    // each thread runs all five loops (Serial) on its part with its own packing buffers. The parts are whole rows when M >= N (every
    // thread then packs all of op(B) but only its own rows of A) and whole columns otherwise (all of A, its own
    // columns of B), so the packing a split duplicates is that of the smaller operand. Every element of C still
    // gets the same products in the same order, so the result does not depend on the thread count.
    // Why not shared panels: the earlier scheme packed each (jc, pc) panel of B once for all threads and ran each
    // stage as one parallel call over (ic block, jr chunk) tiles. Its barrier per KC slice and the uneven last
    // tiles cost a quarter of the time here (SGEMM 2048, 2 threads: 317 against 400 GFLOP/s, docs/kernels-cpu.md),
    // more than the duplicated packing, which is T/min(M, N) of the multiply-adds.
    private static void Parallel(ref Job j, int e)
    {
        j.Entry = e;
        j.Parts = WorkerPool.ThreadCount;
        int blocks = (j.M + j.Mc - 1) / j.Mc;
        long slices = (long)((j.N + j.Nc - 1) / j.Nc) * ((j.K + j.Kc - 1) / j.Kc);
        if (j.M >= j.N && blocks >= 2 * j.Parts && blocks <= MaxSharedBlocks && slices <= MaxSharedBlocks)
        {
            int* claims = stackalloc int[(int)slices];
            int* progress = stackalloc int[blocks];
            new Span<int>(claims, (int)slices).Clear();
            new Span<int>(progress, blocks).Clear();
            j.Claims = claims; j.Progress = progress;
            fixed (Job* pj = &j) WorkerPool.For(j.Parts, &SharedRowsTask, (nint)pj);
            return;
        }
        fixed (Job* pj = &j) WorkerPool.For(j.Parts, &PartTask, (nint)pj);
    }

    private const int MaxSharedBlocks = 1 << 12;   // row blocks, and (jc, pc) slices, SharedRowsTask counts on the caller's stack (16 KiB each at most)

    // Rows handed out block by block: the threads share the row blocks of C instead of taking one fixed half each.
    // Equal halves finished 0.4 ms apart on average in GPT small's GEMMs (parts of about 3.5 ms: the threads of this
    // shared host do not run at one speed), and the first to finish waited. Here every thread packs each B panel
    // (jc, pc) for itself, as with fixed parts, then claims MC-row blocks of that slice from the slice's counter
    // until none are left, so a slower thread simply computes fewer blocks. A block's slice pc > 0 adds to what its
    // slice pc - 1 wrote, perhaps on the other thread: it waits until progress[block] says that slice is done (in
    // practice at once: blocks are claimed in order, one slice after the other). Every element of C still gets the
    // same products in the same order, so the bits do not depend on the thread count or on who ran which block.
    private static void SharedRowsTask(int t, nint state)
    {
        ref Job j = ref *(Job*)state;
        int e = j.Entry, blocks = (j.M + j.Mc - 1) / j.Mc;
        float* a = j.A + e * j.StrideA, b = j.B + e * j.StrideB, c = j.C + e * j.StrideC;
        float* pa = PackABuffer(j.Mc, j.Kc), pb = PackBBuffer(j.Kc, j.Nc);
        int slice = 0;
        for (int jc = 0; jc < j.N; jc += j.Nc)
        {
            int nc = Math.Min(j.Nc, j.N - jc);
            for (int pc = 0; pc < j.K; pc += j.Kc, slice++)
            {
                int kc = Math.Min(j.Kc, j.K - pc);
                if (Volatile.Read(ref j.Claims[slice]) >= blocks) continue;   // the other threads took every block of it
                PackBPanel(ref j, b, pc, kc, jc, nc, pb);
                float* bias = SliceBias(ref j, jc, pc, kc);
                while (true)
                {
                    int block = Interlocked.Increment(ref j.Claims[slice]) - 1;
                    if (block >= blocks) break;
                    if (Volatile.Read(ref j.Progress[block]) < slice)
                    {
                        var spin = new SpinWait();
                        while (Volatile.Read(ref j.Progress[block]) < slice) spin.SpinOnce(-1);
                    }
                    int ic = block * j.Mc;
                    RowBlock(ref j, a, pa, pb, c, ic, Math.Min(j.Mc, j.M - ic), pc, kc, jc, nc, bias);
                    Volatile.Write(ref j.Progress[block], slice + 1);
                }
            }
        }
    }

    private static void PartTask(int t, nint state)
    {
        ref Job j = ref *(Job*)state;
        if (!ThreadPart(j.M, j.N, t, j.Parts, out int r0, out int r1, out int c0, out int c1)) return;
        var part = j;
        part.M = r1 - r0; part.N = c1 - c0;
        part.A = j.TransA ? j.A + r0 : j.A + (long)r0 * j.Lda;
        part.B = j.TransB ? j.B + (long)c0 * j.Ldb : j.B + c0;
        part.C = j.C + (long)r0 * j.Ldc + c0;
        if (j.Bias != null) part.Bias = j.Bias + c0;
        Serial(ref part, j.Entry);
    }

    // Part t of an m x n C cut into `threads` parts: rows [r0, r1) and columns [c0, c1). Rows are cut at multiples of
    // MR and columns at multiples of NR, so only the last part has edge tiles; false when part t is empty.
    private static bool ThreadPart(int m, int n, int t, int threads, out int r0, out int r1, out int c0, out int c1)
    {
        (r0, r1, c0, c1) = (0, m, 0, n);
        if (m >= n)
        {
            int per = ((m + threads - 1) / threads + MR - 1) / MR * MR;
            (r0, r1) = (Math.Min(m, t * per), Math.Min(m, (t + 1) * per));
            return r0 < r1;
        }
        int width = ((n + threads - 1) / threads + NR - 1) / NR * NR;
        (c0, c1) = (Math.Min(n, t * width), Math.Min(n, (t + 1) * width));
        return c0 < c1;
    }

    // A row-major op(A) already has what a packed strip gives the micro-kernel: each of its MR rows is
    // contiguous along p, and a strip of MR x KC floats (6 KiB) stays in L1 across the B strips just as the
    // packed copy would. So the micro-kernel reads it where it lies, and the pass that interleaved it (a scalar
    // copy of all of A, 6-9% of a PatchTST or iTransformer training step on an Emerald Rapids Xeon) is gone.
    // Only the last strip of fewer than MR rows is still packed, for its zero padding. First taken only for skinny
    // shapes (N <= 64 or K <= 32), now for every row-major A: a convolution multiplies the same weight by every image
    // (and Winograd's U by every tile block), repacking it each call, and reading it in place took 3% off ResNet-50's
    // convolution time with large GEMMs unchanged within the noise (docs/kernels-cpu.md, 2026-12-05).
    private static bool ReadsAInPlace(ref Job j) => !j.TransA && Vector512.IsHardwareAccelerated;

    // Macro for a row-major A read in place (ReadsAInPlace): the same tiles and the same sums in the same order as
    // Macro over the packed block, so the results are bit for bit those of the packed path.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MacroInPlaceA(float* a, int lda, float* pa, float* pb, float* c, int ldc, int ic, int mc, int pc, int jc, int jr0, int jrEnd, int kc, float alpha, float beta, bool first, float* bias)
    {
        int full = mc / MR * MR;
        if (full < mc) PackABlock(a, lda, false, ic + full, mc - full, pc, kc, pa);
        float* tmp = stackalloc float[MR * NR];
        for (int jr = jr0; jr < jrEnd; jr += NR)
        {
            int nr = Math.Min(NR, jrEnd - jr);
            float* bStrip = pb + (long)(jr / NR) * kc * NR;
            float* tileBias = bias == null ? null : bias + jr;
            for (int ir = 0; ir < full; ir += MR)
            {
                float* aRows = a + (long)(ic + ir) * lda + pc;
                float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                if (nr == NR) MicroKernelInPlaceA(kc, aRows, lda, bStrip, cTile, ldc, alpha, beta, first, tileBias);
                else if (nr == 16) MicroKernelInPlaceA16(kc, aRows, lda, bStrip, cTile, ldc, alpha, beta, first, tileBias);
                else
                {
                    MicroKernelInPlaceA(kc, aRows, lda, bStrip, tmp, NR, alpha, 0f, true, null);
                    for (int r = 0; r < MR; r++) MergeEdgeRow(tmp + r * NR, cTile + (long)r * ldc, nr, beta, first, tileBias);
                }
            }
            if (full < mc)
            {
                float* cTile = c + (long)(ic + full) * ldc + jc + jr;
                MicroKernel(kc, pa, bStrip, tmp, NR, alpha, 0f, true, null);
                for (int r = 0; r < mc - full; r++) MergeEdgeRow(tmp + r * NR, cTile + (long)r * ldc, nr, beta, first, tileBias);
            }
        }
    }

    // The C tile is only touched after the k loop; its rows are ldc apart and usually not in cache (C is updated
    // once per KC slice), so start fetching them now and the loop hides the latency. A row of 32 floats covers two
    // cache lines when it starts on one and three otherwise, and a tensor's storage is a pinned .NET array, aligned
    // to 8 bytes only: fetching the lines of the first, middle and last float covers both cases. Fetching only the
    // two ends left the middle line to a demand miss, and a 4096³ product on operands 16 bytes off a line ran 8-9%
    // slower than on aligned ones (docs/kernels-cpu.md, 2026-12-05).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchTile(float* c, int ldc)
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < MR; r++)
        {
            float* row = c + (long)r * ldc;
            Sse.Prefetch0(row);
            Sse.Prefetch0(row + NR / 2);
            Sse.Prefetch0(row + NR - 1);
        }
    }

    // MicroKernel512 with A's six rows read in place, lda apart, instead of from a packed strip.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernelInPlaceA(int kc, float* a, int lda, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        PrefetchTile(c, ldc);
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
                         c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a0[p]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[p]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[p]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[p]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[p]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[p]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            b += NR;
        }
        StoreTile6x32(c, ldc, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, alpha, beta, first, bias);
    }

    // The 6 x 16 half of MicroKernelInPlaceA, for a B strip of exactly 16 columns (N = 16, PatchTST's d_model):
    // half the FMAs of the 32-wide kernel, whose other half would multiply the strip's zero padding. C is written
    // as MergeEdgeRow writes an edge tile (no FMA with beta), the rounding of the packed path for such a strip.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernelInPlaceA16(int kc, float* a, int lda, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[p]), b0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[p]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[p]), b0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[p]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[p]), b0, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a5[p]), b0, c5);
            b += NR;
        }
        Store16(c, c0, alpha, beta, first, bias);
        Store16(c + ldc, c1, alpha, beta, first, bias);
        Store16(c + 2 * ldc, c2, alpha, beta, first, bias);
        Store16(c + 3 * ldc, c3, alpha, beta, first, bias);
        Store16(c + 4 * ldc, c4, alpha, beta, first, bias);
        Store16(c + 5 * ldc, c5, alpha, beta, first, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(float* c, Vector512<float> v, float alpha, float beta, bool first, float* bias)
        => Merge16(alpha != 1f ? v * Vector512.Create(alpha) : v, c, beta, first, bias);

    // 16 finished values x into C: C + x after the first K slice, else beta·C + x (x alone for beta 0), then plus the
    // 16 bias values when bias is not null (the last slice). The one
    // place both MergeEdgeRow and Store16 write a vector of C, so the two paths round alike.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Merge16(Vector512<float> x, float* dst, float beta, bool first, float* bias)
    {
        if (!first) x = Vector512.Load(dst) + x;
        else if (beta != 0) x = Vector512.Create(beta) * Vector512.Load(dst) + x;
        if (bias != null) x += Vector512.Load(bias);
        x.Store(dst);
    }

    // The two inner loops over one packed A block and the packed B strips [jr0, jrEnd) of the panel at jc.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Macro(float* pa, float* pb, float* c, int ldc, int ic, int mc, int jc, int jr0, int jrEnd, int kc, float alpha, float beta, bool first, float* bias)
    {
        float* tmp = stackalloc float[MR * NR];
        for (int jr = jr0; jr < jrEnd; jr += NR)
        {
            int nr = Math.Min(NR, jrEnd - jr);
            float* bStrip = pb + (long)(jr / NR) * kc * NR;
            float* tileBias = bias == null ? null : bias + jr;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int mr = Math.Min(MR, mc - ir);
                float* aStrip = pa + (long)(ir / MR) * kc * MR;
                float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                if (mr == MR && nr == NR) MicroKernel(kc, aStrip, bStrip, cTile, ldc, alpha, beta, first, tileBias);
                else
                {
                    // Edge tile: compute the full MR x NR into a scratch tile, then merge the valid part.
                    MicroKernel(kc, aStrip, bStrip, tmp, NR, alpha, 0f, true, null);
                    for (int r = 0; r < mr; r++) MergeEdgeRow(tmp + r * NR, cTile + (long)r * ldc, nr, beta, first, tileBias);
                }
            }
        }
    }

    // dst[0..nr) = v, beta·dst + v (first K slice) or dst + v (later slices), then + bias[0..nr) when given (the last
    // slice), from one row of an edge tile's scratch,
    // sixteen lanes at a time: with N = 16 (PatchTST's d_model) every tile is an edge tile, and a scalar merge cost
    // as much as the micro-kernel. Same roundings as the scalar tail (no FMA), so a column's value does not depend
    // on which loop wrote it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MergeEdgeRow(float* v, float* dst, int nr, float beta, bool first, float* bias)
    {
        int q = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; q + 16 <= nr; q += 16) Merge16(Vector512.Load(v + q), dst + q, beta, first, bias == null ? null : bias + q);
        }
        for (; q < nr; q++)
        {
            float x = first ? (beta == 0 ? v[q] : beta * dst[q] + v[q]) : dst[q] + v[q];
            dst[q] = bias == null ? x : x + bias[q];
        }
    }

    // C[6 x 32] (+)= alpha * sum_p A[:, p] B[p, :], A and B packed. The accumulators never leave registers.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        if (Vector512.IsHardwareAccelerated) MicroKernel512(kc, a, b, c, ldc, alpha, beta, first, bias);
        else if (Vector.IsHardwareAccelerated) MicroKernelPortable(kc, a, b, c, ldc, alpha, beta, first, bias);
        else MicroKernelScalar(kc, a, b, c, ldc, alpha, beta, first, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel512(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        PrefetchTile(c, ldc);
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
                         c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            a += MR; b += NR;
        }
        StoreTile6x32(c, ldc, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, alpha, beta, first, bias);
    }

    // The 6 x 32 tile's write-back, shared by the packed and the in-place micro-kernels so both round alike.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile6x32(float* c, int ldc, Vector512<float> c00, Vector512<float> c01, Vector512<float> c10, Vector512<float> c11,
        Vector512<float> c20, Vector512<float> c21, Vector512<float> c30, Vector512<float> c31, Vector512<float> c40, Vector512<float> c41,
        Vector512<float> c50, Vector512<float> c51, float alpha, float beta, bool first, float* bias)
    {
        Store512(c, c00, c01, alpha, beta, first, bias);
        Store512(c + ldc, c10, c11, alpha, beta, first, bias);
        Store512(c + 2 * ldc, c20, c21, alpha, beta, first, bias);
        Store512(c + 3 * ldc, c30, c31, alpha, beta, first, bias);
        Store512(c + 4 * ldc, c40, c41, alpha, beta, first, bias);
        Store512(c + 5 * ldc, c50, c51, alpha, beta, first, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, float alpha, float beta, bool first, float* bias)
    {
        if (alpha != 1f) { var al = Vector512.Create(alpha); v0 *= al; v1 *= al; }
        if (!first) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
        else if (beta != 0f) { var be = Vector512.Create(beta); v0 = Vector512.FusedMultiplyAdd(be, Vector512.Load(c), v0); v1 = Vector512.FusedMultiplyAdd(be, Vector512.Load(c + 16), v1); }
        if (bias != null) { v0 += Vector512.Load(bias); v1 += Vector512.Load(bias + 16); }
        v0.Store(c); v1.Store(c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernelPortable(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        // Where Vector512 is not accelerated: passes of 6 x 2W (12 accumulators each) cover the 6 x 32 tile, W the
        // lanes of Vector<float>: two passes of 6 x 16 on AVX2 (16 ymm registers), four of 6 x 8 on Arm64's AdvSimd.
        int w = Vector<float>.Count;
        for (int col = 0; col < NR; col += 2 * w)
        {
            float* bh = b + col, ah = a;
            Vector<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
                          c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector.Load(bh);
                var b1 = Vector.Load(bh + w);
                var x = new Vector<float>(ah[0]); c00 = Vector.MultiplyAddEstimate(x, b0, c00); c01 = Vector.MultiplyAddEstimate(x, b1, c01);
                x = new Vector<float>(ah[1]); c10 = Vector.MultiplyAddEstimate(x, b0, c10); c11 = Vector.MultiplyAddEstimate(x, b1, c11);
                x = new Vector<float>(ah[2]); c20 = Vector.MultiplyAddEstimate(x, b0, c20); c21 = Vector.MultiplyAddEstimate(x, b1, c21);
                x = new Vector<float>(ah[3]); c30 = Vector.MultiplyAddEstimate(x, b0, c30); c31 = Vector.MultiplyAddEstimate(x, b1, c31);
                x = new Vector<float>(ah[4]); c40 = Vector.MultiplyAddEstimate(x, b0, c40); c41 = Vector.MultiplyAddEstimate(x, b1, c41);
                x = new Vector<float>(ah[5]); c50 = Vector.MultiplyAddEstimate(x, b0, c50); c51 = Vector.MultiplyAddEstimate(x, b1, c51);
                ah += MR; bh += NR;
            }
            float* ch = c + col, bc = bias == null ? null : bias + col;
            StorePortable(ch, c00, c01, alpha, beta, first, bc);
            StorePortable(ch + ldc, c10, c11, alpha, beta, first, bc);
            StorePortable(ch + 2 * ldc, c20, c21, alpha, beta, first, bc);
            StorePortable(ch + 3 * ldc, c30, c31, alpha, beta, first, bc);
            StorePortable(ch + 4 * ldc, c40, c41, alpha, beta, first, bc);
            StorePortable(ch + 5 * ldc, c50, c51, alpha, beta, first, bc);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePortable(float* c, Vector<float> v0, Vector<float> v1, float alpha, float beta, bool first, float* bias)
    {
        int w = Vector<float>.Count;
        if (alpha != 1f) { var al = new Vector<float>(alpha); v0 *= al; v1 *= al; }
        if (!first) { v0 += Vector.Load(c); v1 += Vector.Load(c + w); }
        else if (beta != 0f) { var be = new Vector<float>(beta); v0 = Vector.MultiplyAddEstimate(be, Vector.Load(c), v0); v1 = Vector.MultiplyAddEstimate(be, Vector.Load(c + w), v1); }
        if (bias != null) { v0 += Vector.Load(bias); v1 += Vector.Load(bias + w); }
        v0.Store(c); v1.Store(c + w);
    }

    private static void MicroKernelScalar(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, bool first, float* bias)
    {
        float* acc = stackalloc float[MR * NR];
        new Span<float>(acc, MR * NR).Clear();
        for (int p = 0; p < kc; p++, a += MR, b += NR)
            for (int r = 0; r < MR; r++)
                for (int q = 0; q < NR; q++) acc[r * NR + q] += a[r] * b[q];
        for (int r = 0; r < MR; r++)
            for (int q = 0; q < NR; q++)
            {
                float v = alpha * acc[r * NR + q];
                float* dst = c + (long)r * ldc + q;
                float x = !first ? *dst + v : beta == 0 ? v : beta * *dst + v;
                *dst = bias == null ? x : x + bias[q];
            }
    }

    // op(A)[ic..ic+mc, pc..pc+kc] into MR-tall strips: strip s holds, for each p, MR consecutive values (zero padded).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackABlock(float* a, int lda, bool trans, int ic, int mc, int pc, int kc, float* dst)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            float* d = dst + (long)(ir / MR) * kc * MR;
            if (!trans)
            {
                // Row-major A: each of the MR rows is contiguous along p; interleave them.
                float* r0 = a + (long)(ic + ir) * lda + pc;
                if (mr == MR)
                {
                    int p = 0;
                    if (Avx.IsSupported)
                        for (; p + 8 <= kc; p += 8, d += 8 * MR) Transpose6x8(r0 + p, lda, d);
                    for (; p < kc; p++, d += MR)
                    {
                        d[0] = r0[p]; d[1] = r0[lda + p]; d[2] = r0[2 * lda + p];
                        d[3] = r0[3 * lda + p]; d[4] = r0[4 * lda + p]; d[5] = r0[5 * lda + p];
                    }
                }
                else
                    for (int p = 0; p < kc; p++, d += MR)
                        for (int r = 0; r < MR; r++) d[r] = r < mr ? r0[(long)r * lda + p] : 0f;
            }
            else
            {
                // Transposed A: op(A)[i, p] = a[p*lda + i], so the MR values of one p are contiguous.
                float* src = a + (long)pc * lda + ic + ir;
                if (ir + 8 <= mc && Avx.IsSupported)
                    // 8 floats in, 8 out, the next p's store overwriting the 2 extra: one load and one store per p
                    // instead of six each. The 2 floats read past the strip are rows of this block, so inside A
                    // (the block's last strip takes the scalar loop).
                    for (int p = 0; p < kc; p++, d += MR, src += lda) Avx.Store(d, Avx.LoadVector256(src));
                else if (mr == MR)
                    for (int p = 0; p < kc; p++, d += MR, src += lda)
                    {
                        d[0] = src[0]; d[1] = src[1]; d[2] = src[2]; d[3] = src[3]; d[4] = src[4]; d[5] = src[5];
                    }
                else
                    for (int p = 0; p < kc; p++, d += MR, src += lda)
                        for (int r = 0; r < MR; r++) d[r] = r < mr ? src[r] : 0f;
            }
        }
    }

    // op(B)[pc..pc+kc, j0..j0+nr] into one NR-wide strip: for each p, NR consecutive values (zero padded).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBStrip(float* b, int ldb, bool trans, int pc, int kc, int j0, int nr, float* dst)
    {
        if (!trans)
        {
            float* src = b + (long)pc * ldb + j0;
            if (nr == NR && Vector512.IsHardwareAccelerated)
                for (int p = 0; p < kc; p++, src += ldb, dst += NR)
                {
                    Vector512.Store(Vector512.Load(src), dst);
                    Vector512.Store(Vector512.Load(src + 16), dst + 16);
                }
            else if (nr >= 16 && Vector512.IsHardwareAccelerated)
                // A strip of 16 to 31 columns (N = 16 is PatchTST's d_model): the first 16 as one vector.
                for (int p = 0; p < kc; p++, src += ldb, dst += NR)
                {
                    Vector512.Store(Vector512.Load(src), dst);
                    for (int q = 16; q < NR; q++) dst[q] = q < nr ? src[q] : 0f;
                }
            else
                for (int p = 0; p < kc; p++, src += ldb, dst += NR)
                    for (int q = 0; q < NR; q++) dst[q] = q < nr ? src[q] : 0f;
        }
        else
        {
            // Transposed B: op(B)[p, j] = b[j*ldb + p]; each column j is contiguous along p. A full strip goes
            // through 8 x 8 register transposes (8 unit-stride loads, 8 unit-stride stores) instead of a
            // store every NR floats per element; the last kc % 8 rows and partial strips take the scalar loop.
            int p0 = 0;
            if (nr == NR && Avx.IsSupported)
                for (; p0 + 8 <= kc; p0 += 8)
                    for (int q = 0; q < NR; q += 8)
                        Transpose8x8(b + (long)(j0 + q) * ldb + pc + p0, ldb, dst + (long)p0 * NR + q, NR);
            if (nr < NR) new Span<float>(dst, kc * NR).Clear();
            for (int q = 0; q < nr; q++)
            {
                float* src = b + (long)(j0 + q) * ldb + pc;
                float* d = dst + q;
                for (int p = p0; p < kc; p++) d[(long)p * NR] = src[p];
            }
        }
    }

    // dst[c * 6 + r] = src[r * srcStride + c] for r < 6, c < 8: six rows of A interleaved into a packed strip, as
    // Transpose8x8 with two zero rows, each 8-float output row stored 6 floats after the previous one so that it
    // overwrites the previous row's two zeros (the last row writes 2 floats past the 48: the buffer's slack).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose6x8(float* src, long srcStride, float* dst)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + 2 * srcStride); var r3 = Avx.LoadVector256(src + 3 * srcStride);
        var r4 = Avx.LoadVector256(src + 4 * srcStride); var r5 = Avx.LoadVector256(src + 5 * srcStride);
        var z = Vector256<float>.Zero;
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(z, z); var t7 = t6;
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(dst + 6, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 12, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(dst + 18, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 24, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(dst + 30, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 36, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(dst + 42, Avx.Permute2x128(u3, u7, 0x31));
    }

    // dst[c * dstStride + r] = src[r * srcStride + c] for an 8 x 8 block: unpack pairs of rows, shuffle pairs of
    // pairs, then swap 128-bit halves (the usual AVX in-register transpose, 24 shuffles for 64 elements).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, long srcStride, float* dst, long dstStride)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + 2 * srcStride); var r3 = Avx.LoadVector256(src + 3 * srcStride);
        var r4 = Avx.LoadVector256(src + 4 * srcStride); var r5 = Avx.LoadVector256(src + 5 * srcStride);
        var r6 = Avx.LoadVector256(src + 6 * srcStride); var r7 = Avx.LoadVector256(src + 7 * srcStride);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(dst + dstStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(u3, u7, 0x31));
    }
}
