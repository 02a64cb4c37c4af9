// AttentionBackward: the FlashAttention-2 backward pass, recomputing the probabilities tile by tile from
// the saved log-sum-exp instead of storing the L x L matrix.
//
// Per (b, h), with S = scale·Q Kᵀ, P = exp(S - lse) and D_i = rowsum(dO_i ∘ O_i):
//   dV_j += P_ijᵀ dO_i            (P after dropout, as it entered O)
//   dP_ij = dO_i V_jᵀ             (through the dropout mask and its 1/(1-p) scale)
//   dS_ij = P_ij ∘ (dP_ij - D_i)
//   dQ_i += scale · dS_ij K_j      dK_j += scale · dS_ijᵀ Q_i
// with S including the additive mask (S += M[b, h, i, j]; the mask itself gets no gradient) and P = 0 where
// S = -inf, so a fully masked row has zero gradients. Query groups of 4 rows against key tiles of 64, the
// same micro-kernels as the forward pass (Scores for the two "row times transposed tile" products,
// AccumulatePV for dQ, a transposed accumulation for dK and dV).
// Loop order: blocks of 64 query rows, then key tiles, then the block's groups of 4, so the tile's dK and dV
// rows stay in L1 across 16 groups. Each (b, key/value head) is one task: Kᵀ and Vᵀ are packed once, then the G = H / Hkv query heads of the
// group run one after the other, so dK and dV sum over the group's query heads in a fixed order without races
// (grouped-query attention; G = 1 is ordinary multi-head attention). Tasks are spread over WorkerPool; with
// fewer tasks than threads (multi-query attention at B = 1) some threads idle, the price of race-free dK/dV.
// dQ, dK, dV are overwritten (not accumulated). FLOPs: 2.5x the forward pass. Bound: FMA throughput.
// Reference: AttentionReference.Backward (float64, materialised).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Attention
{
    private const int BlockRows = 16 * RowGroup;   // query rows whose groups share one pass over a key tile

    private struct BackArgs
    {
        public float* Q, K, V, O, DO, Lse, DQ, DK, DV, Mask;
        public AttentionOperand Qo, Ko, Vo, Oo, DOo, DQo, DKo, DVo;
        public AttentionMaskOperand Mo;
        public AttentionShape S;
    }

    /// <summary>
    /// Backward pass: gradients of Q, K, V given dO, the forward inputs, O and the saved lse. The same
    /// shape/mask/dropout seed as the forward call must be passed. dK and dV have the key/value heads of k and v.
    /// </summary>
    public static void Backward(in AttentionShape shape, ReadOnlySpan<float> q, in AttentionOperand qo, ReadOnlySpan<float> k, in AttentionOperand ko,
        ReadOnlySpan<float> v, in AttentionOperand vo, ReadOnlySpan<float> o, in AttentionOperand oo, ReadOnlySpan<float> dout, in AttentionOperand doo,
        ReadOnlySpan<float> lse, ReadOnlySpan<float> mask, in AttentionMaskOperand maskOperand,
        Span<float> dq, in AttentionOperand dqo, Span<float> dk, in AttentionOperand dko, Span<float> dv, in AttentionOperand dvo)
    {
        shape.Validate("Attention.Backward", q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, mask.Length, maskOperand);
        shape.Validate("Attention.Backward", dout.Length, doo, dk.Length, dko, dv.Length, dvo, dq.Length, dqo, lse.Length, mask.Length, maskOperand);
        if (shape.Batch == 0 || shape.Heads == 0) return;
        fixed (float* pq = q) fixed (float* pk = k) fixed (float* pv = v) fixed (float* po = o) fixed (float* pdo = dout) fixed (float* pl = lse)
        fixed (float* pdq = dq) fixed (float* pdk = dk) fixed (float* pdv = dv) fixed (float* pm = mask)
        {
            var a = new BackArgs
            {
                Q = pq, K = pk, V = pv, O = po, DO = pdo, Lse = pl, DQ = pdq, DK = pdk, DV = pdv, Mask = mask.IsEmpty ? null : pm,
                Qo = qo, Ko = ko, Vo = vo, Oo = oo, DOo = doo, DQo = dqo, DKo = dko, DVo = dvo, Mo = maskOperand, S = shape,
            };
            WorkerPool.For(shape.Batch * shape.KeyValueHeads, &BackwardKeyValueHead, (nint)(&a));
        }
    }

    // One key/value head (b, hk): pack Kᵀ and Vᵀ, zero dK and dV, then accumulate every query head of its group.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardKeyValueHead(int bhk, nint state)
    {
        ref BackArgs a = ref *(BackArgs*)state;
        int kvHeads = a.S.KeyValueHeads, b = bhk / kvHeads, hk = bhk % kvHeads, d = a.S.Dim, lq = a.S.QueryLength, lk = a.S.KeyLength;
        int pk = PaddedKeys(lk);
        long KvHead(in AttentionOperand op) => op.Offset + b * op.StrideB + hk * op.StrideH;
        float* k = a.K + KvHead(a.Ko), v = a.V + KvHead(a.Vo), dk = a.DK + KvHead(a.DKo), dv = a.DV + KvHead(a.DVo);

        // K's rows (read by dQ += dS K) and the dK/dV accumulators are kept as contiguous [Lk, D] copies when their
        // rows lie far apart (CopiesRows; [B, L, H, D] from a fused projection: H·D). A 64-key tile of them is then one
        // 16 KiB block; 64 rows 2 KiB apart (H 8, D 64) fall into 8 of L1's 64 sets, so the tile of dK and dV that
        // the loop order keeps "in L1" across 16 query groups was in fact read back from L2 for each one.
        bool kCopy = CopiesRows(a.Ko.StrideL, d, lk), dkCopy = CopiesRows(a.DKo.StrideL, d, lk), dvCopy = CopiesRows(a.DVo.StrideL, d, lk);
        long rowsFloats = (long)lk * d;
        // Scratch: Kᵀ and Vᵀ (D x pk each, in key tiles: PackTransposed), D_i [lq], tiles p/dp [4, 64], staged rows
        // [BlockRows, 512] x 3, dQ accumulators [BlockRows, D], then the row copies above.
        long need = 2L * d * pk + lq + 2 * RowGroup * KeyTile + 3 * BlockRows * 512 + BlockRows * d + 64
            + ((kCopy ? 1 : 0) + (dkCopy ? 1 : 0) + (dvCopy ? 1 : 0)) * rowsFloats;
        float* scratch = Scratch((int)need);
        float* kt = scratch, vt = kt + (long)d * pk, di = vt + (long)d * pk, p = di + lq, dp = p + RowGroup * KeyTile;
        float* qs = dp + RowGroup * KeyTile, qRaw = qs + BlockRows * 512, dOr = qRaw + BlockRows * 512, dqAcc = dOr + BlockRows * 512;
        float* rowCopies = dqAcc + BlockRows * d;
        PackTransposed(k, a.Ko.StrideL, lk, d, pk, kt);
        PackTransposed(v, a.Vo.StrideL, lk, d, pk, vt);
        var kRows = new RowBlock(k, a.Ko.StrideL);
        if (kCopy)
        {
            kRows = new RowBlock(rowCopies, d);
            CopyRows(k, a.Ko.StrideL, rowCopies, d, lk, d);
            rowCopies += rowsFloats;
        }
        var dkAcc = dkCopy ? new RowBlock(rowCopies, d) : new RowBlock(dk, a.DKo.StrideL);
        if (dkCopy) rowCopies += rowsFloats;
        var dvAcc = dvCopy ? new RowBlock(rowCopies, d) : new RowBlock(dv, a.DVo.StrideL);
        for (int j = 0; j < lk; j++) { new Span<float>(dkAcc.Row(j), d).Clear(); new Span<float>(dvAcc.Row(j), d).Clear(); }
        int group = a.S.GroupSize;
        for (int h = hk * group; h < (hk + 1) * group; h++)
            QueryHeadBackward(ref a, b, h, kRows, kt, vt, dkAcc, dvAcc, di, p, dp, qs, qRaw, dOr, dqAcc);
        if (dkCopy) CopyRows(dkAcc.Start, d, dk, a.DKo.StrideL, lk, d);
        if (dvCopy) CopyRows(dvAcc.Start, d, dv, a.DVo.StrideL, lk, d);
    }

    // Rows of D floats, Ld apart.
    private readonly struct RowBlock(float* start, long ld)
    {
        public readonly float* Start = start;
        public readonly long Ld = ld;
        public float* Row(int j) => Start + j * Ld;
    }

    // Adds query head (b, h)'s share to dK and dV (zeroed by the caller) and writes its dQ. The arguments after h
    // are the key/value head's K rows, packed Kᵀ/Vᵀ, dK/dV accumulators and the caller's scratch.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QueryHeadBackward(ref BackArgs a, int b, int h, RowBlock k, float* kt, float* vt, RowBlock dk, RowBlock dv,
        float* di, float* p, float* dp, float* qs, float* qRaw, float* dOr, float* dqAcc)
    {
        int d = a.S.Dim, lq = a.S.QueryLength, lk = a.S.KeyLength;
        int pk = PaddedKeys(lk);
        long Head(in AttentionOperand op) => op.Offset + b * op.StrideB + h * op.StrideH;
        float* q = a.Q + Head(a.Qo), o = a.O + Head(a.Oo), dO = a.DO + Head(a.DOo), dq = a.DQ + Head(a.DQo);
        float* lse = a.Lse + ((long)b * a.S.Heads + h) * lq;
        float* mask = a.Mask == null ? null : a.Mask + a.Mo.Offset + b * a.Mo.StrideB + h * a.Mo.StrideH;
        for (int i = 0; i < lq; i++)
            di[i] = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + i * a.DOo.StrideL, d), new ReadOnlySpan<float>(o + i * a.Oo.StrideL, d));

        float scale = (float)a.S.Scale, keepScale = a.S.Dropout > 0 ? 1 / (1 - a.S.Dropout) : 1;
        for (int blk0 = 0; blk0 < lq; blk0 += BlockRows)
        {
            int blockEnd = Math.Min(lq, blk0 + BlockRows), groups = (blockEnd - blk0 + RowGroup - 1) / RowGroup;
            for (int g = 0; g < groups; g++)
            {
                int i0 = blk0 + g * RowGroup, rows = Math.Min(RowGroup, lq - i0);
                float* gqs = qs + g * RowGroup * 512, gqRaw = qRaw + g * RowGroup * 512, gdOr = dOr + g * RowGroup * 512, gdq = dqAcc + g * RowGroup * d;
                for (int r = 0; r < RowGroup; r++)
                {
                    int src = i0 + Math.Min(r, rows - 1);
                    for (int c = 0; c < d; c++)
                    {
                        float qv = q[src * a.Qo.StrideL + c];
                        gqRaw[r * 512 + c] = r < rows ? qv : 0;
                        gqs[r * 512 + c] = qv * scale;
                        gdOr[r * 512 + c] = r < rows ? dO[src * a.DOo.StrideL + c] : 0;
                    }
                    for (int c = 0; c < d; c++) gdq[r * d + c] = 0;
                }
            }
            // Key tiles outside, the block's query groups inside: the dK and dV rows of a tile stay in L1 while
            // all groups add to them (they would stream from L2 once per group the other way round). Every dK/dV
            // row still receives the groups in increasing order, so the sums are the same as group by group.
            int blockLastKey = a.S.Causal ? Math.Min(lk - 1, blockEnd - 1 + a.S.CausalShift) : lk - 1;
            for (int j0 = 0; j0 <= blockLastKey; j0 += KeyTile)
            {
                int cols = Math.Min(KeyTile, lk - j0);
                for (int g = 0; g < groups; g++)
                {
                    int i0 = blk0 + g * RowGroup, rows = Math.Min(RowGroup, lq - i0);
                    int lastKey = a.S.Causal ? Math.Min(lk - 1, i0 + rows - 1 + a.S.CausalShift) : lk - 1;
                    if (j0 > lastKey) continue;
                    float* gqs = qs + g * RowGroup * 512, gqRaw = qRaw + g * RowGroup * 512, gdOr = dOr + g * RowGroup * 512, gdq = dqAcc + g * RowGroup * d;
                    ScoreTile(gqs, d, kt + (long)j0 * d, TileWidth(pk), p);     // S
                    ScoreTile(gdOr, d, vt + (long)j0 * d, TileWidth(pk), dp);   // dP = dO Vᵀ
                    if (mask != null) AddMask(p, mask, a.Mo, i0, rows, j0, cols);
                    // A -inf from the mask needs no special case: exp(-inf - lse) is 0 on both paths.
                    bool masked = a.S.Causal && j0 + KeyTile - 1 > i0 + a.S.CausalShift;
                    if (Vector512.IsHardwareAccelerated)
                    {
                        // P and scale·dS sixteen lanes at a time, over the 16-key slices that hold visible keys (one for
                        // a 7-key attention, not four). A row's visible keys are a prefix of the tile: all its columns,
                        // or on a tile the causal diagonal crosses those up to the row's limit (every tile when Lk < 64,
                        // as SASRec's n = 50, so the diagonal tile is the whole causal backward there). Rows past the
                        // last query count as fully masked; the columns past the prefix are zeroed after the row.
                        // Dropout: the keep mask of the same hash as the forward pass, sixteen keys at a time
                        // (KeepMask16 agrees with Keep bit for bit); P after dropout feeds dV, dP goes through the mask.
                        var sc = Vector512.Create(scale);
                        bool dropout = a.S.Dropout > 0;
                        ulong threshold = dropout ? KeepThreshold(a.S.Dropout) : 0;
                        var ks = Vector512.Create(keepScale);
                        for (int r = 0; r < RowGroup; r++)
                        {
                            float l = r < rows ? lse[i0 + r] : float.NegativeInfinity;
                            int visible = masked ? Math.Min(cols, i0 + r + a.S.CausalShift - j0 + 1) : cols;
                            if (float.IsNegativeInfinity(l) || visible <= 0) { new Span<float>(p + r * KeyTile, KeyTile).Clear(); new Span<float>(dp + r * KeyTile, KeyTile).Clear(); continue; }
                            var lv = Vector512.Create(l); var dv0 = Vector512.Create(di[i0 + r]);
                            for (int c = 0; c < visible; c += 16)
                            {
                                float* pr = p + r * KeyTile + c, dpr = dp + r * KeyTile + c;
                                var prob = VectorMath.ExpNonPositive(Vector512.Load(pr) - lv);
                                var dpv = Vector512.Load(dpr);
                                if (dropout)
                                {
                                    var keep = KeepMask16(a.S.Seed, b, h, i0 + r, j0 + c, threshold);
                                    Vector512.ConditionalSelect(keep, prob * ks, Vector512<float>.Zero).Store(pr);
                                    dpv = Vector512.ConditionalSelect(keep, dpv * ks, Vector512<float>.Zero);
                                }
                                else prob.Store(pr);
                                (prob * (dpv - dv0) * sc).Store(dpr);
                            }
                            if (visible < KeyTile) { new Span<float>(p + r * KeyTile + visible, KeyTile - visible).Clear(); new Span<float>(dp + r * KeyTile + visible, KeyTile - visible).Clear(); }
                        }
                    }
                    else
                    for (int r = 0; r < RowGroup; r++)
                    {
                        float* pr = p + r * KeyTile, dpr = dp + r * KeyTile;
                        float l = r < rows ? lse[i0 + r] : float.NegativeInfinity;
                        float dRow = r < rows ? di[i0 + r] : 0;
                        int limit = a.S.Causal ? i0 + r + a.S.CausalShift - j0 : int.MaxValue;
                        for (int c = 0; c < KeyTile; c++)
                        {
                            bool hidden = c >= cols || c > limit || float.IsNegativeInfinity(l) || float.IsNegativeInfinity(pr[c]);
                            float prob = hidden ? 0 : MathF.Exp(pr[c] - l);
                            float pd = prob, dpv = dpr[c];
                            if (a.S.Dropout > 0 && !hidden)
                            {
                                bool keep = Keep(a.S.Seed, b, h, i0 + r, j0 + c, a.S.Dropout);
                                pd = keep ? prob * keepScale : 0;
                                dpv = keep ? dpv * keepScale : 0;
                            }
                            pr[c] = pd;                                     // P after dropout: feeds dV
                            dpr[c] = prob * (dpv - dRow) * scale;           // scale·dS: feeds dQ and dK
                        }
                    }
                    AccumulateTransposed(p, cols, gdOr, d, dv.Row(j0), dv.Ld);
                    AccumulateTransposed(dp, cols, gqRaw, d, dk.Row(j0), dk.Ld);
                    AccumulatePV(dp, k.Row(j0), k.Ld, cols, d, gdq);
                }
            }
            for (int i = blk0; i < blockEnd; i++)
                new ReadOnlySpan<float>(dqAcc + (long)(i - blk0) * d, d).CopyTo(new Span<float>(dq + i * a.DQo.StrideL, d));
        }
    }

    // dst[j, :] += sum_r coef[r, j] · x[r, :] for j < cols (x rows in 512-float slots, dst rows ld apart).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateTransposed(float* coef, int cols, float* x, int d, float* dst, long ld)
    {
        if (Vector512.IsHardwareAccelerated && d == 64) { AccumulateTransposedSlice64(coef, cols, x, dst, ld); return; }
        if (Vector512.IsHardwareAccelerated && d == 32) { AccumulateTransposedSlice32(coef, cols, x, dst, ld); return; }
        for (int j = 0; j < cols; j++)
        {
            float c0 = coef[j], c1 = coef[KeyTile + j], c2 = coef[2 * KeyTile + j], c3 = coef[3 * KeyTile + j];
            if (c0 == 0 && c1 == 0 && c2 == 0 && c3 == 0) continue;
            float* row = dst + j * ld;
            int c = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var w0 = Vector512.Create(c0); var w1 = Vector512.Create(c1); var w2 = Vector512.Create(c2); var w3 = Vector512.Create(c3);
                for (; c + 16 <= d; c += 16)
                {
                    var acc = Vector512.Load(row + c);
                    acc = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x + c), acc);
                    acc = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x + 512 + c), acc);
                    acc = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x + 1024 + c), acc);
                    acc = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x + 1536 + c), acc);
                    acc.Store(row + c);
                }
            }
            if (Vector128.IsHardwareAccelerated)
            {
                var w0 = Vector128.Create(c0); var w1 = Vector128.Create(c1); var w2 = Vector128.Create(c2); var w3 = Vector128.Create(c3);
                for (; c + 4 <= d; c += 4)
                {
                    var acc = Vector128.Load(row + c);
                    acc = Vector128.FusedMultiplyAdd(w0, Vector128.Load(x + c), acc);
                    acc = Vector128.FusedMultiplyAdd(w1, Vector128.Load(x + 512 + c), acc);
                    acc = Vector128.FusedMultiplyAdd(w2, Vector128.Load(x + 1024 + c), acc);
                    acc = Vector128.FusedMultiplyAdd(w3, Vector128.Load(x + 1536 + c), acc);
                    acc.Store(row + c);
                }
            }
            for (; c < d; c++) row[c] += c0 * x[c] + c1 * x[512 + c] + c2 * x[1024 + c] + c3 * x[1536 + c];
        }
    }

    // AccumulateTransposed for D = 64 and D = 32 (GPT-small's and GPT-baby's heads): the four x rows (16 or 8 zmm) are
    // loaded once and stay in registers across the keys, so a key costs 4 broadcasts, one pass over its dst row and the
    // FMAs, where the general loop reloads x for every key. L 1024, one thread: the backward 1.33x faster at D 64, 1.3x
    // at D 32; at D 128, run as two 64-column slices, it was 1.2x slower, so wider heads keep the general loop. Each
    // dst element gets the same FMAs in the same order, so the same bits.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateTransposedSlice64(float* coef, int cols, float* x, float* dst, long ld)
    {
        Vector512<float> x00 = Vector512.Load(x), x01 = Vector512.Load(x + 16), x02 = Vector512.Load(x + 32), x03 = Vector512.Load(x + 48);
        Vector512<float> x10 = Vector512.Load(x + 512), x11 = Vector512.Load(x + 528), x12 = Vector512.Load(x + 544), x13 = Vector512.Load(x + 560);
        Vector512<float> x20 = Vector512.Load(x + 1024), x21 = Vector512.Load(x + 1040), x22 = Vector512.Load(x + 1056), x23 = Vector512.Load(x + 1072);
        Vector512<float> x30 = Vector512.Load(x + 1536), x31 = Vector512.Load(x + 1552), x32 = Vector512.Load(x + 1568), x33 = Vector512.Load(x + 1584);
        for (int j = 0; j < cols; j++)
        {
            if (!KeyWeights(coef, j, out var w0, out var w1, out var w2, out var w3)) continue;
            float* row = dst + j * ld;
            Update16(row, w0, w1, w2, w3, x00, x10, x20, x30);
            Update16(row + 16, w0, w1, w2, w3, x01, x11, x21, x31);
            Update16(row + 32, w0, w1, w2, w3, x02, x12, x22, x32);
            Update16(row + 48, w0, w1, w2, w3, x03, x13, x23, x33);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateTransposedSlice32(float* coef, int cols, float* x, float* dst, long ld)
    {
        Vector512<float> x00 = Vector512.Load(x), x01 = Vector512.Load(x + 16), x10 = Vector512.Load(x + 512), x11 = Vector512.Load(x + 528);
        Vector512<float> x20 = Vector512.Load(x + 1024), x21 = Vector512.Load(x + 1040), x30 = Vector512.Load(x + 1536), x31 = Vector512.Load(x + 1552);
        for (int j = 0; j < cols; j++)
        {
            if (!KeyWeights(coef, j, out var w0, out var w1, out var w2, out var w3)) continue;
            float* row = dst + j * ld;
            Update16(row, w0, w1, w2, w3, x00, x10, x20, x30);
            Update16(row + 16, w0, w1, w2, w3, x01, x11, x21, x31);
        }
    }

    // Key j's four coefficients (one per query row of the group), broadcast; false when all four are zero (a key
    // no row of the group sees, or dropped for all of them), which the caller skips.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool KeyWeights(float* coef, int j, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3)
    {
        float c0 = coef[j], c1 = coef[KeyTile + j], c2 = coef[2 * KeyTile + j], c3 = coef[3 * KeyTile + j];
        w0 = Vector512.Create(c0); w1 = Vector512.Create(c1); w2 = Vector512.Create(c2); w3 = Vector512.Create(c3);
        return c0 != 0 || c1 != 0 || c2 != 0 || c3 != 0;
    }

    // row[0..16) += w0·x0 + w1·x1 + w2·x2 + w3·x3, as four FMAs in that order (the general loop's order).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update16(float* row, Vector512<float> w0, Vector512<float> w1, Vector512<float> w2, Vector512<float> w3,
        Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3) =>
        Vector512.FusedMultiplyAdd(w3, x3, Vector512.FusedMultiplyAdd(w2, x2, Vector512.FusedMultiplyAdd(w1, x1, Vector512.FusedMultiplyAdd(w0, x0, Vector512.Load(row))))).Store(row);
}
