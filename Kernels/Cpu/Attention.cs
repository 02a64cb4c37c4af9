// Attention: O = softmax(scale · Q Kᵀ + mask) V per (batch, head), FlashAttention-style (Dao et al. 2022,
// FlashAttention-2 loop order), forward pass; the backward pass is in AttentionBackward.cs.
//
// Algorithm, per (b, kv head): Kᵀ is packed once into key tiles, each a contiguous [D, 64] block (Lk rounded up
// to the tile, zero padded), so that a score tile is a small GEMM with unit-stride, sequential loads, and V's rows
// are copied into one contiguous [Lk, D] block when they lie 1 KiB or more apart. Grouped-query attention (Hkv < H, as
// in Llama 2 / Mistral; Hkv = 1 is multi-query attention): query head h reads K/V head h / (H / Hkv), so the
// G = H / Hkv query heads of a group share one packed Kᵀ (and one copy of V, where V is copied). Queries go in groups
// of 4 rows; for each group, key tiles of 64 run left to right (at most 16 keys: one narrow tile of 16, Kᵀ
// packed 16 wide):
//   S (4 x 64) = scale · Q_rows Kᵀ_tile      16 zmm accumulators, one broadcast of Q per row per d
//   mask (optional): S += M[b, h, i, j], an additive float mask read through broadcast strides (stride 0 on
//                   a broadcast dim: a [Lq, Lk] or [B, 1, 1, Lk] mask is never expanded); -inf hides a key
//   causal: key j hidden from query i when j > i + Lk - Lq (bottom-right aligned); tiles wholly above the
//                   diagonal are skipped (about half the work), the one crossing it is masked row by row and
//                   its P V product stops at the group's last visible key
//   online softmax: m_new = max(m, rowmax S); P = exp(S - m_new); l = l·exp(m - m_new) + rowsum P;
//                   O = O·exp(m - m_new); lazily (SoftmaxTileLazy): m moves only when a score passes it by more
//                   than 8, so most tiles need no row max, no correction and no rescale
//   dropout (optional): P_ij kept with probability 1-p from a counter-based hash of (seed, b, h, i, j)
//                   and scaled by 1/(1-p); l uses the undropped P, as the reference does
//   O (4 x D) += P V_tile                      O stays in registers per 64-wide slice of D
// A full 64-key tile with no mask, clear of the diagonal and without dropout (the common tile) takes ScoreTile4x64's softmax:
// the scores go from the accumulators to the exps in registers, stored once as P.
// then O /= l and lse = m + log l is kept for the backward pass. The L x L matrix never exists.
// FLOPs: 4·B·H·Lq·Lk·D (halved for causal). Bytes: Q once; K and V from L2 once per block of 4 query groups
// (16 rows: BlockForward), each tile then reused from L1 by the block's groups; O written once.
// Bound: FMA throughput in the two GEMM-like loops; the exps and mask adds are ~1/(2D) of the work.
// A query that sees no key (every score -inf: fully masked) gets O = 0 and lse = -inf, and later a zero
// gradient (FlashAttention's convention; PyTorch's math path gives NaN there). Mask entries must be finite or
// -inf (a +inf or NaN entry makes the row NaN, as in PyTorch).
// Reference: AttentionReference (float64 matmul-softmax-matmul with the same masks and dropout).
// Without Vector512 (AVX2, Arm64) the same loop runs at Vector<float>'s width: one register tile, Tile4xTwoVectors
// (4 rows x two vectors, for AVX2's 16 registers), for the scores and for P V, and SoftmaxRowsPortable (the lazy
// softmax from the stored tile); PortableWidthTests runs the kernel tests at those widths in child processes.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Fused scaled dot-product attention on the CPU.</summary>
public static unsafe partial class Attention
{
    private const int RowGroup = 4;      // query rows per register block
    private const int KeyTile = 64;      // keys per score tile (4 zmm per row)
    private const int NarrowTile = 16;   // keys per score tile when Lk ≤ 16 (one zmm per row; iTransformer's 7 variates)
    /// <summary>Largest head dimension the kernels take.</summary>
    public const int MaxDim = AttentionShape.MaxDim;

    private struct Args
    {
        public float* Q, K, V, O, Lse, PackedKt, PackedV, Mask;
        public AttentionOperand Qo, Ko, Vo, Oo;
        public AttentionMaskOperand Mo;
        public AttentionShape S;
        public int PaddedKeys, QueryGroups, TasksPerHead;
        public long VRowStride;   // V's row stride as the P V step reads it: D when packed, else V's own
    }

    // Per-thread scratch of the attention tasks, also the staging row of Softmax's streamed path: neither runs inside
    // the other, so one buffer per thread serves both.
    [ThreadStatic] private static float[]? _scratch;

    internal static float* Scratch(int floats)
    {
        if (_scratch is null || _scratch.Length < floats) _scratch = GC.AllocateUninitializedArray<float>(Math.Max(floats, 4096), pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_scratch));
    }

    // Packed Kᵀ of every head (and V's rows, when they are not contiguous), shared by the tasks of the forward call;
    // grown on demand.
    private static float[] _packed = [];
    private static readonly object PackGate = new();

    /// <summary>
    /// Forward pass. <paramref name="mask"/> is empty or an additive float mask placed by <paramref name="maskOperand"/>
    /// (0 = visible, -inf = hidden, any finite value a bias). Writes O and the per-row log-sum-exp
    /// <paramref name="lse"/> [B, H, Lq] (for the backward pass).
    /// </summary>
    public static void Forward(in AttentionShape shape, ReadOnlySpan<float> q, in AttentionOperand qo, ReadOnlySpan<float> k, in AttentionOperand ko,
        ReadOnlySpan<float> v, in AttentionOperand vo, Span<float> o, in AttentionOperand oo, Span<float> lse, ReadOnlySpan<float> mask = default, in AttentionMaskOperand maskOperand = default)
    {
        shape.Validate("Attention.Forward", q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, mask.Length, maskOperand);
        if (shape.Batch == 0 || shape.Heads == 0 || shape.QueryLength == 0) return;
        if (TakesDecode(shape))
        {
            // One or two queries (a decoder step): dot products straight off K's rows, nothing packed (AttentionDecode.cs).
            fixed (float* pq = q) fixed (float* pk = k) fixed (float* pv = v) fixed (float* po = o) fixed (float* pl = lse) fixed (float* pm = mask)
            {
                var step = new Args { Q = pq, K = pk, V = pv, O = po, Lse = pl, Mask = mask.IsEmpty ? null : pm, Qo = qo, Ko = ko, Vo = vo, Oo = oo, Mo = maskOperand, S = shape };
                DecodeForward(ref step);
            }
            return;
        }
        int padded = PaddedKeys(shape.KeyLength);
        int kvHeads = shape.KeyValueHeads;
        lock (PackGate)
        {
            long ktFloats = (long)shape.Batch * kvHeads * shape.Dim * Math.Max(padded, KeyTile);
            // V's rows are copied together when they lie far apart (CopiesRows; [B, L, H, D] from a fused projection):
            // a 64-key tile of V then reads 16 KiB in one block instead of 64 rows 2 KiB apart (at H 8, D 64), which map
            // to 8 of L1's 64 sets and were read from L2 again for every query group (perf, 2026-12-04: P V 36% of
            // the forward against 29% for the score tiles, which read packed Kᵀ and do the same FMAs).
            bool packV = CopiesRows(vo.StrideL, shape.Dim, shape.KeyLength);
            long need = ktFloats + (packV ? (long)shape.Batch * kvHeads * shape.KeyLength * shape.Dim : 0);
            if (_packed.Length < need) _packed = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
            fixed (float* pq = q) fixed (float* pk = k) fixed (float* pv = v) fixed (float* po = o) fixed (float* pl = lse) fixed (float* pm = mask) fixed (float* pkt = _packed)
            {
                var a = new Args
                {
                    Q = pq, K = pk, V = pv, O = po, Lse = pl, Mask = mask.IsEmpty ? null : pm, PackedKt = pkt,
                    PackedV = packV ? pkt + ktFloats : null, VRowStride = packV ? shape.Dim : vo.StrideL,
                    Qo = qo, Ko = ko, Vo = vo, Oo = oo, Mo = maskOperand, S = shape, PaddedKeys = padded,
                    QueryGroups = (shape.QueryLength + RowGroup - 1) / RowGroup,
                };
                // Enough tasks per head to keep every thread busy, in blocks of whole query groups.
                a.TasksPerHead = Math.Max(1, Math.Min(a.QueryGroups, 4 * WorkerPool.ThreadCount * 4 / Math.Max(1, shape.Batch * shape.Heads)));
                WorkerPool.For(shape.Batch * kvHeads, &PackTask, (nint)(&a));
                WorkerPool.For(shape.Batch * shape.Heads * a.TasksPerHead, &ForwardTask, (nint)(&a));
            }
        }
    }

    // Whether a tile's rows of K/V (or dK/dV) are worth a contiguous copy: only when they lie 1 KiB or more apart,
    // where 64 of them map to at most 16 of L1's 64 sets, and there is more than one narrow tile of keys. Closer
    // rows spread over the sets anyway, and a copy per row of a tiny head (PatchTST's D 4 rows 64 bytes apart, 42
    // keys, thousands of heads a step) costs more than it saves.
    internal static bool CopiesRows(long rowStride, int d, int keys) => rowStride != d && rowStride >= 256 && keys > NarrowTile;

    // Row length of packed Kᵀ/Vᵀ: whole key tiles, or one narrow tile when every key fits in it (padding 7 keys
    // to 64 made the packing, the score tiles and the softmax of a 7-token attention 9x the work it needs).
    internal static int PaddedKeys(int keys) => keys <= NarrowTile ? NarrowTile : (keys + KeyTile - 1) / KeyTile * KeyTile;

    // S = q · Kᵀ tile into p (rows KeyTile apart; q's four rows qs floats apart): the full 64-key tile, or for a narrow
    // packing (ld = 16) its 16 keys with the rest of each row set to -inf, so the 64-wide softmax steps after it see
    // hidden keys there.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScoreTile(float* q, int qs, int d, float* kt, int ld, float* p)
    {
        if (ld == NarrowTile && Vector512.IsHardwareAccelerated && d <= 512) ScoresNarrow(q, qs, d, kt, p);
        else if (ld == NarrowTile)
        {
            if (Vector.IsHardwareAccelerated) ScoresPortable(q, qs, d, kt, ld, NarrowTile, p);
            else
                for (int r = 0; r < RowGroup; r++)
                    for (int j = 0; j < NarrowTile; j++)
                    {
                        float sum = 0;
                        for (int c = 0; c < d; c++) sum += q[r * qs + c] * kt[(long)c * ld + j];
                        p[r * KeyTile + j] = sum;
                    }
            for (int r = 0; r < RowGroup; r++) new Span<float>(p + r * KeyTile + NarrowTile, KeyTile - NarrowTile).Fill(float.NegativeInfinity);
        }
        else Scores(q, qs, d, kt, ld, p);
    }

    // S[4, 16] = q[4, D] · Kᵀ[D, 16] (Kᵀ rows 16 apart), columns 16..63 of each row of s set to -inf.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresNarrow(float* q, int qs, int d, float* kt, float* s)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int c = 0; c < d; c++)
        {
            var k = Vector512.Load(kt + (long)c * NarrowTile);
            s0 = Vector512.FusedMultiplyAdd(Vector512.Create(q[c]), k, s0);
            s1 = Vector512.FusedMultiplyAdd(Vector512.Create(q[qs + c]), k, s1);
            s2 = Vector512.FusedMultiplyAdd(Vector512.Create(q[2 * qs + c]), k, s2);
            s3 = Vector512.FusedMultiplyAdd(Vector512.Create(q[3 * qs + c]), k, s3);
        }
        var hidden = Vector512.Create(float.NegativeInfinity);
        s0.Store(s); s1.Store(s + KeyTile); s2.Store(s + 2 * KeyTile); s3.Store(s + 3 * KeyTile);
        for (int r = 0; r < RowGroup; r++)
        {
            float* row = s + r * KeyTile;
            hidden.Store(row + 16); hidden.Store(row + 32); hidden.Store(row + 48);
        }
    }

    // Kᵀ of key/value head (b, hk), packed in key tiles (PackTransposed), zero padded to PaddedKeys.
    private static void PackTask(int bh, nint state)
    {
        ref Args a = ref *(Args*)state;
        int kvHeads = a.S.KeyValueHeads;
        int b = bh / kvHeads, h = bh % kvHeads, d = a.S.Dim, lk = a.S.KeyLength, pk = a.PaddedKeys;
        PackTransposed(a.K + a.Ko.Offset + b * a.Ko.StrideB + h * a.Ko.StrideH, a.Ko.StrideL, lk, d, pk, a.PackedKt + (long)bh * d * pk);
        if (a.PackedV == null) return;
        CopyRows(a.V + a.Vo.Offset + b * a.Vo.StrideB + h * a.Vo.StrideH, a.Vo.StrideL, a.PackedV + (long)bh * lk * d, d, lk, d);
    }

    // dst row j = src row j for j < rows, each of d floats (rows srcLd and dstLd apart).
    internal static void CopyRows(float* src, long srcLd, float* dst, long dstLd, int rows, int d)
    {
        for (int j = 0; j < rows; j++) new ReadOnlySpan<float>(src + j * srcLd, d).CopyTo(new Span<float>(dst + j * dstLd, d));
    }

    // One head's Kᵀ (or Vᵀ) as the score tiles read it: key tiles of w = TileWidth(pk) keys, each a contiguous
    // [D, w] block (element (c, j) of tile t at t·w·D + c·w + j - t·w), keys lk <= j < pk zero. Why tiles, not one
    // [D, pk] matrix: a score tile then reads D rows 256 bytes apart instead of pk floats apart (4 KiB at L 1024,
    // where every row falls into the same L1 set). Why 8 x 8 blocks (Gemm.Transpose8x8): the scalar loop this
    // replaced wrote one float to each destination row in turn, rows 4 KiB apart, and took 18% of an attention
    // forward (B 1, H 8, L 1024, D 64, one thread, perf, 2026-12-04).
    internal static void PackTransposed(float* src, long ld, int lk, int d, int pk, float* dst)
    {
        int w = TileWidth(pk);
        for (int j0 = 0; j0 < pk; j0 += w)
            PackTile(src + j0 * ld, ld, Math.Clamp(lk - j0, 0, w), d, w, dst + (long)j0 * d);
    }

    // One tile: dst[c·w + j] = src[j·ld + c] for j < cols, zero for cols <= j < w.
    private static void PackTile(float* src, long ld, int cols, int d, int w, float* dst)
    {
        // The padding first, in one call for the whole tile: a clear per row cost more than the copy when a head has
        // only a few keys (iTransformer's 7 in a 16-wide tile: D clears of 9 floats per head).
        if (cols < w) new Span<float>(dst, d * w).Clear();
        int j = 0;
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported && d >= 8)
            for (; j + 8 <= cols; j += 8)
            {
                int c = 0;
                for (; c + 8 <= d; c += 8) Gemm.Transpose8x8(src + j * ld + c, ld, dst + (long)c * w + j, w);
                for (; c < d; c++)
                    for (int q = j; q < j + 8; q++) dst[(long)c * w + q] = src[q * ld + c];
            }
        for (; j < cols; j++)
        {
            float* row = src + j * ld;
            for (int c = 0; c < d; c++) dst[(long)c * w + j] = row[c];
        }
    }

    // Keys per packed tile: the narrow tile when all keys fit in it, else KeyTile.
    internal static int TileWidth(int paddedKeys) => paddedKeys == NarrowTile ? NarrowTile : KeyTile;

    // Query groups a forward task takes through the key tiles together (BlockForward).
    private const int ForwardBlockGroups = 4;

    private static void ForwardTask(int task, nint state)
    {
        ref Args a = ref *(Args*)state;
        int bh = task / a.TasksPerHead, part = task % a.TasksPerHead;
        int b = bh / a.S.Heads, h = bh % a.S.Heads;
        int perTask = (a.QueryGroups + a.TasksPerHead - 1) / a.TasksPerHead;
        int g0 = part * perTask, g1 = Math.Min(a.QueryGroups, g0 + perTask);
        int d = a.S.Dim;
        float* scratch = Scratch(RowGroup * KeyTile + ForwardBlockGroups * RowGroup * d + 64);
        float* p = scratch;                                   // [4, 64] probabilities of the current tile
        float* acc = scratch + RowGroup * KeyTile;            // [groups, 4, D] output accumulators
        int hk = h / a.S.GroupSize;
        float* kt = a.PackedKt + ((long)b * a.S.KeyValueHeads + hk) * d * a.PaddedKeys;
        float* qBase = a.Q + a.Qo.Offset + b * a.Qo.StrideB + h * a.Qo.StrideH;
        float* vBase = a.PackedV != null ? a.PackedV + ((long)b * a.S.KeyValueHeads + hk) * a.S.KeyLength * d : a.V + a.Vo.Offset + b * a.Vo.StrideB + hk * a.Vo.StrideH;
        float* oBase = a.O + a.Oo.Offset + b * a.Oo.StrideB + h * a.Oo.StrideH;
        float* mask = a.Mask == null ? null : a.Mask + a.Mo.Offset + b * a.Mo.StrideB + h * a.Mo.StrideH;
        for (int g = g0; g < g1; g += ForwardBlockGroups)
            BlockForward(ref a, b, h, g, Math.Min(ForwardBlockGroups, g1 - g), qBase, kt, vBase, oBase, mask, p, acc);
    }

    // p[4, 64] += mask rows i0.. (rows past the last query repeat it) for the cols keys from j0; mask points at
    // head (b, h) of the mask operand.
    internal static void AddMask(float* p, float* mask, in AttentionMaskOperand mo, int i0, int rows, int j0, int cols)
    {
        for (int r = 0; r < RowGroup; r++)
        {
            float* m = mask + (i0 + Math.Min(r, rows - 1)) * mo.StrideQ + j0 * mo.StrideK;
            float* pr = p + r * KeyTile;
            if (mo.StrideK == 1)
            {
                var row = new Span<float>(pr, cols);
                System.Numerics.Tensors.TensorPrimitives.Add(row, new ReadOnlySpan<float>(m, cols), row);
            }
            else
                for (int c = 0; c < cols; c++) pr[c] += m[c * mo.StrideK];
        }
    }

    // Query groups g0 .. g0+ng-1 through every key tile they see, the groups inside the tile loop: a tile of Kᵀ and
    // V (32 KiB at D 64) is read from L2 once for ng groups and stays in L1 while they use it. (One group at a time
    // through all tiles read the head's whole K and V from L2 for every four query rows: 512 KiB per group at L
    // 1024, D 64, about half as many cycles of L2 traffic as the group's FMAs.) Each group keeps its own running
    // max, sums and output accumulators; the scaled query rows are staged back to back (StagedStride).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockForward(ref Args a, int b, int h, int g0, int ng, float* qBase, float* kt, float* vBase, float* oBase, float* mask, float* p, float* acc)
    {
        int d = a.S.Dim, lk = a.S.KeyLength, lq = a.S.QueryLength, xs = StagedStride(d);
        int n = ng * RowGroup;
        float* m = stackalloc float[n];
        float* l = stackalloc float[n];
        var lsum = stackalloc Vector512<float>[n];   // the row sums of the vector path, reduced at the end
        float* q = stackalloc float[n * xs];
        float scale = (float)a.S.Scale;
        // The staging, zeroing and normalising loops below are vector loops (ScaleRow): written as scalar loops they
        // were about a quarter of BlockForward's own samples (perf, 2026-12-06), 5% of the forward at L 1024, D 64;
        // TensorPrimitives' call overhead on 64 floats still cost 3%.
        new Span<float>(acc, n * d).Clear();
        for (int r = 0; r < n; r++)
        {
            int i0 = (g0 + r / RowGroup) * RowGroup, rows = Math.Min(RowGroup, lq - i0);
            m[r] = float.NegativeInfinity; l[r] = 0; lsum[r] = default;
            // Scaled query rows (rows past the end repeat the last one; their results are dropped).
            float* src = qBase + (long)(i0 + Math.Min(r % RowGroup, rows - 1)) * a.Qo.StrideL;
            ScaleRow(src, scale, q + r * xs, d);
        }
        // Causal: the last key any row of the block may see (the last group's).
        int lastRow = Math.Min(lq, (g0 + ng) * RowGroup) - 1;
        int blockLastKey = a.S.Causal ? Math.Min(lk - 1, lastRow + a.S.CausalShift) : lk - 1;
        for (int j0 = 0; j0 <= blockLastKey; j0 += KeyTile)
        {
            int cols = Math.Min(KeyTile, lk - j0);
            for (int gi = 0; gi < ng; gi++)
            {
                int i0 = (g0 + gi) * RowGroup, rows = Math.Min(RowGroup, lq - i0);
                int lastKey = a.S.Causal ? Math.Min(lk - 1, i0 + rows - 1 + a.S.CausalShift) : lk - 1;
                if (j0 > lastKey) continue;
                int r0 = gi * RowGroup;
                ForwardTile(ref a, b, h, i0, rows, j0, cols, q + r0 * xs, xs, kt, vBase, mask, p, m + r0, l + r0, lsum + r0, acc + r0 * d);
            }
        }
        for (int gi = 0; gi < ng; gi++)
        {
            int i0 = (g0 + gi) * RowGroup, rows = Math.Min(RowGroup, lq - i0), r0 = gi * RowGroup;
            if (Vector512.IsHardwareAccelerated)
                for (int r = 0; r < RowGroup; r++) l[r0 + r] = Vector512.Sum(lsum[r0 + r]);
            else if (Vector.IsHardwareAccelerated)
                for (int r = 0; r < RowGroup; r++) l[r0 + r] = Vector.Sum(*(Vector<float>*)(lsum + r0 + r));
            for (int r = 0; r < rows; r++)
            {
                float* dst = oBase + (long)(i0 + r) * a.Oo.StrideL;
                float lr = l[r0 + r], inv = lr > 0 ? 1 / lr : 0;
                ScaleRow(acc + (r0 + r) * d, inv, dst, d);
                a.Lse[((long)b * a.S.Heads + h) * lq + i0 + r] = lr > 0 ? m[r0 + r] + MathF.Log(lr) : float.NegativeInfinity;
            }
        }
    }

    // One query group (rows i0.., q rows qs apart, its m/l/lsum/acc) against the key tile at j0: scores, mask,
    // online softmax update, P V accumulation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ForwardTile(ref Args a, int b, int h, int i0, int rows, int j0, int cols, float* q, int qs, float* kt, float* vBase, float* mask,
        float* p, float* m, float* l, Vector512<float>* lsum, float* acc)
    {
        int d = a.S.Dim;
        // Keys past the end and the causal diagonal (only tiles that touch one pay for the check).
        bool crossesDiagonal = a.S.Causal && j0 + KeyTile - 1 > i0 + a.S.CausalShift;
        if (IsCommonTile(d, mask != null, crossesDiagonal, cols, a.S.Dropout, a.PaddedKeys))
        {
            var softmax = new Epilogue { Kind = TileEpilogue.Softmax, M = m, Lsum = lsum, Acc = acc, D = d };
            ScoreTile4x64(q, qs, d, kt + (long)j0 * d, KeyTile, p, ref softmax);
            AccumulatePV(p, vBase + j0 * a.VRowStride, a.VRowStride, cols, d, acc);
            return;
        }
        ScoreTile(q, qs, d, kt + (long)j0 * d, TileWidth(a.PaddedKeys), p);
        if (mask != null) AddMask(p, mask, a.Mo, i0, rows, j0, cols);
        // A row's visible keys are a prefix of the tile: all cols (a short last tile, every tile when Lk < 64, as
        // PatchTST's 42 patches), or on the causal diagonal those up to the row's last visible key. The rest is
        // hidden with -inf, so its P is 0, and the P V product stops after the group's last visible key: on the
        // diagonal tile the group at its top sees 1-4 of the 64 keys, and at GPT-small's T 256 four of the ten
        // tiles a causal head computes are diagonal ones.
        int pvCols = cols;
        if (cols < KeyTile || crossesDiagonal)
        {
            for (int r = 0; r < RowGroup; r++)
            {
                int visible = crossesDiagonal ? VisibleKeys(i0 + r, a.S.CausalShift, j0, cols) : cols;
                new Span<float>(p + r * KeyTile + visible, KeyTile - visible).Fill(float.NegativeInfinity);
            }
            if (crossesDiagonal) pvCols = VisibleKeys(i0 + RowGroup - 1, a.S.CausalShift, j0, cols);
        }
        // Online softmax update and P V accumulation, row by row.
        if (Vector512.IsHardwareAccelerated) SoftmaxTileLazy(ref a, b, h, i0, j0, cols, p, m, lsum, acc);
        else if (Vector.IsHardwareAccelerated)
        {
            SoftmaxRowsPortable(p, m, lsum, acc, d);
            if (a.S.Dropout > 0)
                for (int r = 0; r < RowGroup; r++) DropoutRow(p + r * KeyTile, cols, a.S.Seed, b, h, i0 + r, j0, a.S.Dropout);
        }
        else
        for (int r = 0; r < RowGroup; r++)
        {
            float* pr = p + r * KeyTile;
            float tileMax = RowMax(pr);
            float mNew = MathF.Max(m[r], tileMax);
            if (float.IsNegativeInfinity(mNew)) { new Span<float>(pr, KeyTile).Clear(); continue; }
            // The running max rarely moves after the first tiles: then the correction is exactly 1, no exp needed.
            float correction = m[r] == mNew ? 1 : float.IsNegativeInfinity(m[r]) ? 0 : MathF.Exp(m[r] - mNew);
            float rowSum = ExpRow(pr, mNew);
            l[r] = l[r] * correction + rowSum;
            m[r] = mNew;
            if (correction != 1) ScaleRow(acc + r * d, correction, acc + r * d, d);
            if (a.S.Dropout > 0) DropoutRow(pr, cols, a.S.Seed, b, h, i0 + r, j0, a.S.Dropout);
        }
        AccumulatePV(p, vBase + j0 * a.VRowStride, a.VRowStride, pvCols, d, acc);
    }

    // How many of the tile's keys from j0 (cols of them) query row i sees under the causal mask (keys up to
    // i + shift): a prefix, 0 to cols. The forward's masking and P V and the backward's dQ stop there.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int VisibleKeys(int i, int causalShift, int j0, int cols) => Math.Clamp(i + causalShift - j0 + 1, 0, cols);

    // Slack of the lazy rescaling: a row's exps are taken against a shift m that may trail its running maximum by up
    // to this much, so a probability before normalisation is at most e^8 ≈ 3e3 (no overflow in P, the sums or O).
    private const float RescaleSlack = 8f;

    // The online softmax of one [4, 64] score tile with lazy rescaling (as in FlashAttention-4): each row's exps are
    // taken against its shift m[r], which moves (with the rescale of the accumulators that costs) only when a score
    // exceeds it by more than RescaleSlack, and the row sums stay vectors until the end. Per row that leaves no
    // horizontal reduction on the way from the scores to the exps: the eager update (row max, then the exps, then
    // the row sum) was a chain of dependent reductions that the four rows could not hide, about a third of the
    // forward's time (perf, 2026-12-04). Any shift gives the same O = acc / l and lse = m + log l.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SoftmaxTileLazy(ref Args a, int b, int h, int i0, int j0, int cols, float* p, float* m, Vector512<float>* lsum, float* acc)
    {
        SoftmaxRows(p, m, lsum, acc, a.S.Dim);
        if (a.S.Dropout > 0)
            for (int r = 0; r < RowGroup; r++) DropoutRow(p + r * KeyTile, cols, a.S.Seed, b, h, i0 + r, j0, a.S.Dropout);
    }

    // One row of SoftmaxTileLazy, its 64 scores s0..s3 in registers: pr = exp(s - m), lsum += pr, and the shift m
    // (with lsum and the row's accumulators) moved first when a score passes it by more than RescaleSlack.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SoftmaxRow(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3, float* pr, float* m, Vector512<float>* lsum, float* acc, int d)
    {
        var tileMax = RowMax4(s0, s1, s2, s3);
        if (NeedsRebase(tileMax, *m) && !Rebase(m, lsum, HorizontalMax(tileMax), acc, d))
        {
            // No visible key yet.
            ClearRow64(pr);
            return;
        }
        ExpRowStore(s0, s1, s2, s3, pr, *m, lsum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ClearRow64(float* row)
    {
        Vector512<float>.Zero.Store(row); Vector512<float>.Zero.Store(row + 16); Vector512<float>.Zero.Store(row + 32); Vector512<float>.Zero.Store(row + 48);
    }

    // MaxNative is one vmaxps; Max's IEEE ordering of NaN and -0 costs vrangeps and two vfixupimmps (a NaN score
    // still reaches O through its exp).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowMax4(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3) =>
        Vector512.MaxNative(Vector512.MaxNative(s0, s1), Vector512.MaxNative(s2, s3));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool NeedsRebase(Vector512<float> tileMax, float m) =>
        float.IsNegativeInfinity(m) || Vector512.GreaterThanAny(tileMax, Vector512.Create(m + RescaleSlack));

    // pr = exp(s - m) for a row's 64 scores in registers; lsum += pr.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ExpRowStore(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3, float* pr, float m, Vector512<float>* lsum)
    {
        var shift = Vector512.Create(-m * VectorMath.Log2E);
        var e0 = VectorMath.ExpShifted(s0, shift); var e1 = VectorMath.ExpShifted(s1, shift);
        var e2 = VectorMath.ExpShifted(s2, shift); var e3 = VectorMath.ExpShifted(s3, shift);
        e0.Store(pr); e1.Store(pr + 16); e2.Store(pr + 32); e3.Store(pr + 48);
        *lsum += (e0 + e1) + (e2 + e3);
    }

    // Moves a row's shift m up to its running maximum, rescaling lsum and the accumulators by exp(m_old - m_new).
    // False when the row has seen no visible key (every score so far -inf). Rare after a row's first tiles, so kept
    // out of line.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool Rebase(float* m, Vector512<float>* lsum, float tileMax, float* acc, int d)
    {
        float mNew = MathF.Max(*m, tileMax);
        if (float.IsNegativeInfinity(mNew)) return false;
        if (!float.IsNegativeInfinity(*m))
        {
            float correction = MathF.Exp(*m - mNew);
            *lsum *= correction;
            ScaleRow(acc, correction, acc, d);
        }
        *m = mNew;
        return true;
    }

    // SoftmaxTileLazy where Vector512 is not accelerated (AVX2: 8 lanes, Arm64: 4), from the stored tile: a row's
    // maximum stays a vector that is only compared with the shift m (no horizontal reduction unless m must move), the
    // exps are taken against m and summed into the row's lsum, a Vector<float> at the start of its Vector512 slot.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxRowsPortable(float* p, float* m, Vector512<float>* lsum, float* acc, int d)
    {
        int w = Vector<float>.Count;
        for (int r = 0; r < RowGroup; r++)
        {
            float* pr = p + r * KeyTile;
            ref var rowSum = ref *(Vector<float>*)(lsum + r);
            var tileMax = Vector.Load(pr);
            for (int c = w; c < KeyTile; c += w) tileMax = Vector.MaxNative(tileMax, Vector.Load(pr + c));
            if (float.IsNegativeInfinity(m[r]) || Vector.GreaterThanAny(tileMax, new Vector<float>(m[r] + RescaleSlack)))
            {
                float rowMax = float.NegativeInfinity;
                for (int l = 0; l < w; l++) rowMax = MathF.Max(rowMax, tileMax[l]);
                float mNew = MathF.Max(m[r], rowMax);
                if (float.IsNegativeInfinity(mNew)) { new Span<float>(pr, KeyTile).Clear(); continue; }   // no visible key yet
                if (!float.IsNegativeInfinity(m[r]))
                {
                    float correction = MathF.Exp(m[r] - mNew);
                    rowSum *= correction;
                    ScaleRow(acc + r * d, correction, acc + r * d, d);
                }
                m[r] = mNew;
            }
            var shift = new Vector<float>(m[r]);
            var sum = rowSum;
            for (int c = 0; c < KeyTile; c += w)
            {
                var e = VectorMath.ExpNonPositive(Vector.Load(pr + c) - shift);   // at most e^RescaleSlack
                e.Store(pr + c);
                sum += e;
            }
            rowSum = sum;
        }
    }

    // The tile ScoreTile4x64's softmax and backward epilogues serve, forward and backward alike: 64 keys, no mask, clear
    // of the causal diagonal, no dropout, Kᵀ packed 64 wide, on Vector512.
    private static bool IsCommonTile(int d, bool hasMask, bool crossesDiagonal, int cols, float dropout, int paddedKeys) =>
        Vector512.IsHardwareAccelerated && d <= 512 && !hasMask && !crossesDiagonal && cols == KeyTile && dropout == 0 && TileWidth(paddedKeys) == KeyTile;

    // What ScoreTile4x64 does with the finished scores of a [4, 64] tile, in registers.
    private enum TileEpilogue
    {
        Store,            // S to p
        Softmax,          // the forward's lazy online softmax (SoftmaxTileLazy): P to p, the group's M, Lsum and Acc updated
        Probabilities,    // the backward's P = exp(S - lse) to p (0 for a row whose Lse is -inf)
        ScoreGradients,   // the scores are dP = dO Vᵀ: the backward's scale·dS = P (dP - Di) · Scale to p, P read from P
    }

    private struct Epilogue
    {
        public TileEpilogue Kind;
        public float* M, Acc, Lse, Di, P;   // per row of the group: M, Lse, Di 4 floats; Acc 4 rows of D
        public Vector512<float>* Lsum;
        public int D;
        public float Scale;
    }

    // S[4, 64] = q[4, D] · Kᵀ[D, 64 columns at kt] (Kᵀ's rows ld apart) in 16 zmm accumulators, one broadcast of q
    // per row per d; then e's epilogue. All but Store serve the common tile (64 keys, no mask, clear of the causal
    // diagonal, no dropout): the scores go to the exps in registers instead of being stored and reloaded.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreTile4x64(float* q, int qs, int d, float* kt, int ld, float* p, ref Epilogue e)
    {
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default,
                         s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        for (int c = 0; c < d; c++)
        {
            float* krow = kt + (long)c * ld;
            var k0 = Vector512.Load(krow); var k1 = Vector512.Load(krow + 16); var k2 = Vector512.Load(krow + 32); var k3 = Vector512.Load(krow + 48);
            var x = Vector512.Create(q[c]);
            s00 = Vector512.FusedMultiplyAdd(x, k0, s00); s01 = Vector512.FusedMultiplyAdd(x, k1, s01); s02 = Vector512.FusedMultiplyAdd(x, k2, s02); s03 = Vector512.FusedMultiplyAdd(x, k3, s03);
            x = Vector512.Create(q[qs + c]);
            s10 = Vector512.FusedMultiplyAdd(x, k0, s10); s11 = Vector512.FusedMultiplyAdd(x, k1, s11); s12 = Vector512.FusedMultiplyAdd(x, k2, s12); s13 = Vector512.FusedMultiplyAdd(x, k3, s13);
            x = Vector512.Create(q[2 * qs + c]);
            s20 = Vector512.FusedMultiplyAdd(x, k0, s20); s21 = Vector512.FusedMultiplyAdd(x, k1, s21); s22 = Vector512.FusedMultiplyAdd(x, k2, s22); s23 = Vector512.FusedMultiplyAdd(x, k3, s23);
            x = Vector512.Create(q[3 * qs + c]);
            s30 = Vector512.FusedMultiplyAdd(x, k0, s30); s31 = Vector512.FusedMultiplyAdd(x, k1, s31); s32 = Vector512.FusedMultiplyAdd(x, k2, s32); s33 = Vector512.FusedMultiplyAdd(x, k3, s33);
        }
        if (e.Kind == TileEpilogue.Probabilities)
        {
            ProbabilityRow(s00, s01, s02, s03, p, e.Lse[0]);
            ProbabilityRow(s10, s11, s12, s13, p + KeyTile, e.Lse[1]);
            ProbabilityRow(s20, s21, s22, s23, p + 2 * KeyTile, e.Lse[2]);
            ProbabilityRow(s30, s31, s32, s33, p + 3 * KeyTile, e.Lse[3]);
            return;
        }
        if (e.Kind == TileEpilogue.ScoreGradients)
        {
            var sc = Vector512.Create(e.Scale);
            ScoreGradientRow(s00, s01, s02, s03, p, e.P, e.Lse[0], e.Di[0], sc);
            ScoreGradientRow(s10, s11, s12, s13, p + KeyTile, e.P + KeyTile, e.Lse[1], e.Di[1], sc);
            ScoreGradientRow(s20, s21, s22, s23, p + 2 * KeyTile, e.P + 2 * KeyTile, e.Lse[2], e.Di[2], sc);
            ScoreGradientRow(s30, s31, s32, s33, p + 3 * KeyTile, e.P + 3 * KeyTile, e.Lse[3], e.Di[3], sc);
            return;
        }
        float* m = e.M;
        if (e.Kind == TileEpilogue.Store || NeedsRebase(RowMax4(s00, s01, s02, s03), m[0]) || NeedsRebase(RowMax4(s10, s11, s12, s13), m[1]) ||
            NeedsRebase(RowMax4(s20, s21, s22, s23), m[2]) || NeedsRebase(RowMax4(s30, s31, s32, s33), m[3]))
        {
            // Scores only, or a shift moves (a row's first tiles): through memory, so that no score is live across
            // Rebase's call (every zmm register is caller-saved, and the JIT then kept all 16 accumulators on the
            // stack).
            s00.Store(p); s01.Store(p + 16); s02.Store(p + 32); s03.Store(p + 48);
            s10.Store(p + 64); s11.Store(p + 80); s12.Store(p + 96); s13.Store(p + 112);
            s20.Store(p + 128); s21.Store(p + 144); s22.Store(p + 160); s23.Store(p + 176);
            s30.Store(p + 192); s31.Store(p + 208); s32.Store(p + 224); s33.Store(p + 240);
            if (e.Kind == TileEpilogue.Softmax) SoftmaxRows(p, m, e.Lsum, e.Acc, e.D);
            return;
        }
        ExpRowStore(s00, s01, s02, s03, p, m[0], e.Lsum);
        ExpRowStore(s10, s11, s12, s13, p + KeyTile, m[1], e.Lsum + 1);
        ExpRowStore(s20, s21, s22, s23, p + 2 * KeyTile, m[2], e.Lsum + 2);
        ExpRowStore(s30, s31, s32, s33, p + 3 * KeyTile, m[3], e.Lsum + 3);
    }

    // pr = exp(s - lse) for one row's 64 scores (the backward's P); 0 where lse is -inf (a row that sees no key).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ProbabilityRow(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3, float* pr, float lse)
    {
        if (float.IsNegativeInfinity(lse))
        {
            ClearRow64(pr);
            return;
        }
        var shift = Vector512.Create(-lse * VectorMath.Log2E);
        VectorMath.ExpShifted(s0, shift).Store(pr); VectorMath.ExpShifted(s1, shift).Store(pr + 16);
        VectorMath.ExpShifted(s2, shift).Store(pr + 32); VectorMath.ExpShifted(s3, shift).Store(pr + 48);
    }

    // dsr = P (dP - di) · scale for one row's 64 dP values (P from pr); 0 where lse is -inf.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoreGradientRow(Vector512<float> dp0, Vector512<float> dp1, Vector512<float> dp2, Vector512<float> dp3, float* dsr, float* pr, float lse, float di, Vector512<float> scale)
    {
        if (float.IsNegativeInfinity(lse))
        {
            ClearRow64(dsr);
            return;
        }
        var dv = Vector512.Create(di);
        (Vector512.Load(pr) * (dp0 - dv) * scale).Store(dsr); (Vector512.Load(pr + 16) * (dp1 - dv) * scale).Store(dsr + 16);
        (Vector512.Load(pr + 32) * (dp2 - dv) * scale).Store(dsr + 32); (Vector512.Load(pr + 48) * (dp3 - dv) * scale).Store(dsr + 48);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void SoftmaxRows(float* p, float* m, Vector512<float>* lsum, float* acc, int d)
    {
        for (int r = 0; r < RowGroup; r++)
        {
            float* pr = p + r * KeyTile;
            SoftmaxRow(Vector512.Load(pr), Vector512.Load(pr + 16), Vector512.Load(pr + 32), Vector512.Load(pr + 48), pr, m + r, lsum + r, acc + r * d, d);
        }
    }

    // S[4, 64] = q[4, D] · Kᵀ[D, 64 columns starting at kt] (rows of q are qs apart, rows of Kᵀ ld apart).
    internal static void Scores(float* q, int qs, int d, float* kt, int ld, float* s)
    {
        if (Vector512.IsHardwareAccelerated && d <= 512)
        {
            var store = new Epilogue { Kind = TileEpilogue.Store };
            ScoreTile4x64(q, qs, d, kt, ld, s, ref store);
            return;
        }
        if (Vector.IsHardwareAccelerated) { ScoresPortable(q, qs, d, kt, ld, KeyTile, s); return; }
        for (int r = 0; r < RowGroup; r++)
            for (int j = 0; j < KeyTile; j++)
            {
                float sum = 0;
                for (int c = 0; c < d; c++) sum += q[r * qs + c] * kt[(long)c * ld + j];
                s[r * KeyTile + j] = sum;
            }
    }

    // S[4, keys] = q[4, D] · Kᵀ[D, keys] (keys 16 or 64, rows of s KeyTile apart) where Vector512 is not accelerated:
    // AVX2 (8 lanes) and Arm64 (4), two vectors of keys at a time (Tile4xTwoVectors).
    private static void ScoresPortable(float* q, int qs, int d, float* kt, int ld, int keys, float* s)
    {
        for (int j = 0; j < keys; j += 2 * Vector<float>.Count) Tile4xTwoVectors(q, qs, kt + j, ld, d, s + j, KeyTile, accumulate: false);
    }

    // c[r, 0..2W) (+)= Σ_i a[r·lda + i] · b[i·ldb, 0..2W) for the four rows r and i < k, W the lanes of Vector<float>:
    // the portable register tile of the score product (ScoresPortable) and of P V (AccumulatePV). 8 accumulators,
    // since AVX2 has 16 registers (16 as in ScoreTile4x64 would spill); per i two loads of b and four broadcasts of a
    // for 8 FMAs. With accumulate, c's rows are loaded first; else the sums start at 0 and overwrite them.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4xTwoVectors(float* a, long lda, float* b, long ldb, int k, float* c, long ldc, bool accumulate)
    {
        int w = Vector<float>.Count;
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        Vector<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default, s30 = default, s31 = default;
        if (accumulate)
        {
            s00 = Vector.Load(c0); s01 = Vector.Load(c0 + w); s10 = Vector.Load(c1); s11 = Vector.Load(c1 + w);
            s20 = Vector.Load(c2); s21 = Vector.Load(c2 + w); s30 = Vector.Load(c3); s31 = Vector.Load(c3 + w);
        }
        for (int i = 0; i < k; i++, b += ldb)
        {
            var b0 = Vector.Load(b); var b1 = Vector.Load(b + w);
            var x = new Vector<float>(a[i]);
            s00 = Vector.MultiplyAddEstimate(x, b0, s00); s01 = Vector.MultiplyAddEstimate(x, b1, s01);
            x = new Vector<float>(a[lda + i]);
            s10 = Vector.MultiplyAddEstimate(x, b0, s10); s11 = Vector.MultiplyAddEstimate(x, b1, s11);
            x = new Vector<float>(a[2 * lda + i]);
            s20 = Vector.MultiplyAddEstimate(x, b0, s20); s21 = Vector.MultiplyAddEstimate(x, b1, s21);
            x = new Vector<float>(a[3 * lda + i]);
            s30 = Vector.MultiplyAddEstimate(x, b0, s30); s31 = Vector.MultiplyAddEstimate(x, b1, s31);
        }
        s00.Store(c0); s01.Store(c0 + w); s10.Store(c1); s11.Store(c1 + w);
        s20.Store(c2); s21.Store(c2 + w); s30.Store(c3); s31.Store(c3 + w);
    }

    // The row maximum of a score tile row (the path without any vector acceleration; the vector paths are
    // SoftmaxTileLazy and SoftmaxRowsPortable).
    private static float RowMax(float* p)
    {
        float max = float.NegativeInfinity;
        for (int c = 0; c < KeyTile; c++) max = MathF.Max(max, p[c]);
        return max;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector512<float> m)
    {
        var h = Vector256.Max(m.GetLower(), m.GetUpper());
        var q = Vector128.Max(h.GetLower(), h.GetUpper());
        return MathF.Max(MathF.Max(q[0], q[1]), MathF.Max(q[2], q[3]));
    }

    // p = exp(p - max) in place; returns the row sum (the path without any vector acceleration).
    internal static float ExpRow(float* p, float max)
    {
        float sum = 0;
        for (int c = 0; c < KeyTile; c++) { p[c] = VectorMath.Exp(p[c] - max); sum += p[c]; }
        return sum;
    }

    // dst[0..n) = s · src[0..n): a short row (a head's D floats), vectors then a scalar tail.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScaleRow(float* src, float s, float* dst, int n)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vs = Vector512.Create(s);
            for (; c + 16 <= n; c += 16) (Vector512.Load(src + c) * vs).Store(dst + c);
        }
        else if (Vector.IsHardwareAccelerated)
        {
            var vs = new Vector<float>(s);
            for (; c + Vector<float>.Count <= n; c += Vector<float>.Count) (Vector.Load(src + c) * vs).Store(dst + c);
        }
        for (; c < n; c++) dst[c] = src[c] * s;
    }

    // acc[4, D] += p[4, cols] · V[cols, D] (V rows ld apart), in 64-wide slices of D kept in registers.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AccumulatePV(float* p, float* v, long ld, int cols, int d, float* acc)
    {
        int c0 = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; c0 + 64 <= d; c0 += 64)
            {
                float* a0 = acc + c0, a1 = acc + d + c0, a2 = acc + 2 * d + c0, a3 = acc + 3 * d + c0;
                var o00 = Vector512.Load(a0); var o01 = Vector512.Load(a0 + 16); var o02 = Vector512.Load(a0 + 32); var o03 = Vector512.Load(a0 + 48);
                var o10 = Vector512.Load(a1); var o11 = Vector512.Load(a1 + 16); var o12 = Vector512.Load(a1 + 32); var o13 = Vector512.Load(a1 + 48);
                var o20 = Vector512.Load(a2); var o21 = Vector512.Load(a2 + 16); var o22 = Vector512.Load(a2 + 32); var o23 = Vector512.Load(a2 + 48);
                var o30 = Vector512.Load(a3); var o31 = Vector512.Load(a3 + 16); var o32 = Vector512.Load(a3 + 32); var o33 = Vector512.Load(a3 + 48);
                for (int j = 0; j < cols; j++)
                {
                    float* vr = v + j * ld + c0;
                    var v0 = Vector512.Load(vr); var v1 = Vector512.Load(vr + 16); var v2 = Vector512.Load(vr + 32); var v3 = Vector512.Load(vr + 48);
                    var x = Vector512.Create(p[j]);
                    o00 = Vector512.FusedMultiplyAdd(x, v0, o00); o01 = Vector512.FusedMultiplyAdd(x, v1, o01); o02 = Vector512.FusedMultiplyAdd(x, v2, o02); o03 = Vector512.FusedMultiplyAdd(x, v3, o03);
                    x = Vector512.Create(p[KeyTile + j]);
                    o10 = Vector512.FusedMultiplyAdd(x, v0, o10); o11 = Vector512.FusedMultiplyAdd(x, v1, o11); o12 = Vector512.FusedMultiplyAdd(x, v2, o12); o13 = Vector512.FusedMultiplyAdd(x, v3, o13);
                    x = Vector512.Create(p[2 * KeyTile + j]);
                    o20 = Vector512.FusedMultiplyAdd(x, v0, o20); o21 = Vector512.FusedMultiplyAdd(x, v1, o21); o22 = Vector512.FusedMultiplyAdd(x, v2, o22); o23 = Vector512.FusedMultiplyAdd(x, v3, o23);
                    x = Vector512.Create(p[3 * KeyTile + j]);
                    o30 = Vector512.FusedMultiplyAdd(x, v0, o30); o31 = Vector512.FusedMultiplyAdd(x, v1, o31); o32 = Vector512.FusedMultiplyAdd(x, v2, o32); o33 = Vector512.FusedMultiplyAdd(x, v3, o33);
                }
                o00.Store(a0); o01.Store(a0 + 16); o02.Store(a0 + 32); o03.Store(a0 + 48);
                o10.Store(a1); o11.Store(a1 + 16); o12.Store(a1 + 32); o13.Store(a1 + 48);
                o20.Store(a2); o21.Store(a2 + 16); o22.Store(a2 + 32); o23.Store(a2 + 48);
                o30.Store(a3); o31.Store(a3 + 16); o32.Store(a3 + 32); o33.Store(a3 + 48);
            }
        if (Vector512.IsHardwareAccelerated && c0 + 32 <= d)
        {
            // A 32-wide slice (head dim 32, GPT-baby's): each broadcast of p feeds two FMAs instead of one.
            float* a0 = acc + c0, a1 = acc + d + c0, a2 = acc + 2 * d + c0, a3 = acc + 3 * d + c0;
            var o00 = Vector512.Load(a0); var o01 = Vector512.Load(a0 + 16); var o10 = Vector512.Load(a1); var o11 = Vector512.Load(a1 + 16);
            var o20 = Vector512.Load(a2); var o21 = Vector512.Load(a2 + 16); var o30 = Vector512.Load(a3); var o31 = Vector512.Load(a3 + 16);
            for (int j = 0; j < cols; j++)
            {
                float* vr = v + j * ld + c0;
                var v0 = Vector512.Load(vr); var v1 = Vector512.Load(vr + 16);
                var x = Vector512.Create(p[j]);
                o00 = Vector512.FusedMultiplyAdd(x, v0, o00); o01 = Vector512.FusedMultiplyAdd(x, v1, o01);
                x = Vector512.Create(p[KeyTile + j]);
                o10 = Vector512.FusedMultiplyAdd(x, v0, o10); o11 = Vector512.FusedMultiplyAdd(x, v1, o11);
                x = Vector512.Create(p[2 * KeyTile + j]);
                o20 = Vector512.FusedMultiplyAdd(x, v0, o20); o21 = Vector512.FusedMultiplyAdd(x, v1, o21);
                x = Vector512.Create(p[3 * KeyTile + j]);
                o30 = Vector512.FusedMultiplyAdd(x, v0, o30); o31 = Vector512.FusedMultiplyAdd(x, v1, o31);
            }
            o00.Store(a0); o01.Store(a0 + 16); o10.Store(a1); o11.Store(a1 + 16);
            o20.Store(a2); o21.Store(a2 + 16); o30.Store(a3); o31.Store(a3 + 16);
            c0 += 32;
        }
        if (Vector512.IsHardwareAccelerated)
            for (; c0 + 16 <= d; c0 += 16)
            {
                // A 16-wide slice of D (head dims 16, 32, 48 ... and the rest after the 64-wide slices).
                float* a0 = acc + c0, a1 = acc + d + c0, a2 = acc + 2 * d + c0, a3 = acc + 3 * d + c0;
                var o0 = Vector512.Load(a0); var o1 = Vector512.Load(a1); var o2 = Vector512.Load(a2); var o3 = Vector512.Load(a3);
                for (int j = 0; j < cols; j++)
                {
                    var vv = Vector512.Load(v + j * ld + c0);
                    o0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), vv, o0);
                    o1 = Vector512.FusedMultiplyAdd(Vector512.Create(p[KeyTile + j]), vv, o1);
                    o2 = Vector512.FusedMultiplyAdd(Vector512.Create(p[2 * KeyTile + j]), vv, o2);
                    o3 = Vector512.FusedMultiplyAdd(Vector512.Create(p[3 * KeyTile + j]), vv, o3);
                }
                o0.Store(a0); o1.Store(a1); o2.Store(a2); o3.Store(a3);
            }
        if (!Vector512.IsHardwareAccelerated && Vector.IsHardwareAccelerated)
            for (; c0 + 2 * Vector<float>.Count <= d; c0 += 2 * Vector<float>.Count)   // AVX2, Arm64: two vectors of D per row
                Tile4xTwoVectors(p, KeyTile, v + c0, ld, cols, acc + c0, d, accumulate: true);
        if (Vector128.IsHardwareAccelerated)
            for (; c0 + 4 <= d; c0 += 4)
            {
                // A 4-wide slice: small heads (PatchTST's d_model 16 over 4 heads has D = 4) would otherwise run scalar.
                float* a0 = acc + c0, a1 = acc + d + c0, a2 = acc + 2 * d + c0, a3 = acc + 3 * d + c0;
                var o0 = Vector128.Load(a0); var o1 = Vector128.Load(a1); var o2 = Vector128.Load(a2); var o3 = Vector128.Load(a3);
                for (int j = 0; j < cols; j++)
                {
                    var vv = Vector128.Load(v + j * ld + c0);
                    o0 = Vector128.FusedMultiplyAdd(Vector128.Create(p[j]), vv, o0);
                    o1 = Vector128.FusedMultiplyAdd(Vector128.Create(p[KeyTile + j]), vv, o1);
                    o2 = Vector128.FusedMultiplyAdd(Vector128.Create(p[2 * KeyTile + j]), vv, o2);
                    o3 = Vector128.FusedMultiplyAdd(Vector128.Create(p[3 * KeyTile + j]), vv, o3);
                }
                o0.Store(a0); o1.Store(a1); o2.Store(a2); o3.Store(a3);
            }
        for (; c0 < d; c0++)
            for (int r = 0; r < RowGroup; r++)
            {
                float sum = acc[r * d + c0];
                for (int j = 0; j < cols; j++) sum += p[r * KeyTile + j] * v[j * ld + c0];
                acc[r * d + c0] = sum;
            }
    }

    /// <summary>
    /// The dropout decision for score (b, h, i, j): keep when the 24-bit hash of the five numbers
    /// (<see cref="AttentionDropout.Hash24"/>, shared with the device kernels) over 2^24 is at least p, so the
    /// backward pass regenerates the same mask without storing it. True means "keep".
    /// </summary>
    public static bool Keep(ulong seed, int b, int h, int i, int j, float p) => AttentionDropout.Hash24(seed, b, h, i, j) * (1.0 / (1UL << 24)) >= p;

    /// <summary>
    /// The smallest 24-bit hash that keeps a score at dropout rate p: Hash24 / 2^24 ≥ p holds exactly when Hash24 ≥
    /// ceil(p·2^24) (p·2^24 is exact in double), so <see cref="KeepMask16"/> compares integers and agrees with <see cref="Keep"/>.
    /// </summary>
    public static ulong KeepThreshold(float p) => (ulong)Math.Ceiling((double)p * (1UL << 24));

    /// <summary>
    /// <see cref="Keep"/> for the 16 keys j..j+15 of row (b, h, i) at once: all-ones float lanes where the score is
    /// kept. The SplitMix64 steps of <see cref="AttentionDropout.Hash24"/> run on eight 64-bit lanes per half, so a
    /// masked tile no longer pays one scalar hash per score.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeepMask16(ulong seed, int b, int h, int i, int j, ulong threshold)
    {
        ulong rowHash = seed ^ ((ulong)(uint)b << 48) ^ ((ulong)(uint)h << 32) ^ ((ulong)(uint)i << 16);
        ulong rowAdd = (ulong)(uint)i * 0xD1B54A32D192ED03UL;
        var lanes = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
        var th = Vector512.Create(threshold);
        var lo = Vector512.GreaterThanOrEqual(Hash24x8(rowHash, rowAdd, lanes + Vector512.Create((ulong)(uint)j)), th);
        var hi = Vector512.GreaterThanOrEqual(Hash24x8(rowHash, rowAdd, lanes + Vector512.Create((ulong)(uint)j + 8)), th);
        return Vector512.Narrow(lo, hi).AsSingle();
    }

    // AttentionDropout.Hash24 with the row's part folded in (rowHash = seed ^ b, h, i shifted; rowAdd = i's multiple).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Hash24x8(ulong rowHash, ulong rowAdd, Vector512<ulong> j)
    {
        var z = (Vector512.Create(rowHash) ^ (j * Vector512.Create(0x9E3779B97F4A7C15UL))) + Vector512.Create(rowAdd);
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(0x94D049BB133111EBUL);
        z ^= Vector512.ShiftRightLogical(z, 31);
        return Vector512.ShiftRightLogical(z, 40);
    }

    // Drops and rescales the first cols probabilities of a tile row; the columns past cols are hidden keys, already 0.
    private static void DropoutRow(float* pr, int cols, ulong seed, int b, int h, int i, int j0, float p)
    {
        float scale = 1 / (1 - p);
        if (Vector512.IsHardwareAccelerated)
        {
            ulong threshold = KeepThreshold(p);
            var sv = Vector512.Create(scale);
            for (int c = 0; c < cols; c += 16)
                Vector512.ConditionalSelect(KeepMask16(seed, b, h, i, j0 + c, threshold), Vector512.Load(pr + c) * sv, Vector512<float>.Zero).Store(pr + c);
            return;
        }
        for (int c = 0; c < KeyTile; c++) pr[c] = Keep(seed, b, h, i, j0 + c, p) ? pr[c] * scale : 0f;
    }
}
