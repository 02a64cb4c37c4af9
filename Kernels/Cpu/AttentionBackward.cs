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
// same micro-kernels as the forward pass (ScoreTile4x64 for the two "row times transposed tile" products,
// AccumulatePV for dQ), and for dK and dV a product over the block's rows with the dK/dV rows in registers. On the
// common tile (64 keys, no mask, clear of the diagonal, no dropout) P and scale·dS come straight from the score
// registers (its Probabilities and ScoreGradients epilogues); other tiles store S and dP and convert them after.
// Loop order: blocks of 64 query rows (staged back to back), then key tiles, then three passes over the block's
// groups of 4: P and dS of every group (kept for the block, 16 KiB each), dQ, then dV and dK. On a tile the causal
// diagonal crosses, dQ's product stops at each group's last visible key and dK/dV's starts at each key's first
// visible row (P and dS are 0 outside). Each pass's data fits L1; one pass doing all of it per group did not.
// Each (b, key/value head) is one task: Kᵀ and Vᵀ are packed once, then the G = H / Hkv query heads of the
// group run one after the other, so dK and dV sum over the group's query heads in a fixed order without races
// (grouped-query attention; G = 1 is ordinary multi-head attention). Tasks are spread over WorkerPool; with
// fewer tasks than threads (multi-query attention at B = 1) some threads idle, the price of race-free dK/dV.
// dQ, dK, dV are overwritten (not accumulated). FLOPs: 2.5x the forward pass. Bound: FMA throughput.
// Reference: AttentionReference.Backward (float64, materialised).
// Without Vector512: ProbabilitiesAndGradientsPortable and TransposedPortable at Vector<float>'s width (AVX2, Arm64).
using System.Numerics;
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
        // Scratch: Kᵀ and Vᵀ (D x pk each, in key tiles: PackTransposed), D_i [lq], the block's P and scale·dS
        // [BlockRows, 64] each, staged rows [BlockRows, StagedStride(D)] x 3, dQ accumulators [BlockRows, D], then the
        // row copies above.
        int xs = StagedStride(d);
        long need = 2L * d * pk + lq + 16 + 2 * BlockRows * KeyTile + 3L * BlockRows * xs + BlockRows * d + 64
            + ((kCopy ? 1 : 0) + (dkCopy ? 1 : 0) + (dvCopy ? 1 : 0)) * rowsFloats;
        float* scratch = Scratch((int)need);
        float* kt = scratch, vt = kt + (long)d * pk, di = vt + (long)d * pk;
        float* p = (float*)(((nint)(di + lq) + 63) & ~(nint)63), dp = p + BlockRows * KeyTile;
        float* qs = dp + BlockRows * KeyTile, qRaw = qs + BlockRows * xs, dOr = qRaw + BlockRows * xs, dqAcc = dOr + BlockRows * xs;
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

    // Row stride of the staged query/dO rows: D rounded up to whole vectors, so a block's rows lie back to back. (They
    // were 512-float slots, 2 KiB apart: the 192 staged rows of a block then fell into 8 of L1's 64 sets and were read
    // from L2 again by every key tile.)
    internal static int StagedStride(int d) => (d + 15) & ~15;

    // Adds query head (b, h)'s share to dK and dV (zeroed by the caller) and writes its dQ. The arguments after h
    // are the key/value head's K rows, packed Kᵀ/Vᵀ, dK/dV accumulators and the caller's scratch: p and dp hold the
    // block's P and scale·dS ([BlockRows, 64]), qs/qRaw/dOr its staged rows (StagedStride apart).
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
        int xs = StagedStride(d);
        float* rowLse = stackalloc float[RowGroup], rowDi = stackalloc float[RowGroup];
        for (int blk0 = 0; blk0 < lq; blk0 += BlockRows)
        {
            int blockEnd = Math.Min(lq, blk0 + BlockRows), groups = (blockEnd - blk0 + RowGroup - 1) / RowGroup;
            for (int g = 0; g < groups; g++)
            {
                int i0 = blk0 + g * RowGroup, rows = Math.Min(RowGroup, lq - i0);
                float* gqs = qs + g * RowGroup * xs, gqRaw = qRaw + g * RowGroup * xs, gdOr = dOr + g * RowGroup * xs, gdq = dqAcc + g * RowGroup * d;
                // Rows past the last query: Q scaled repeats the last row (its scores stay finite), Q and dO are 0.
                // (Vector copies: as a scalar loop this staging was a tenth of the backward at GPT-small's T 256.)
                for (int r = 0; r < RowGroup; r++)
                {
                    float* qRow = q + (i0 + Math.Min(r, rows - 1)) * a.Qo.StrideL;
                    ScaleRow(qRow, scale, gqs + r * xs, d);
                    if (r < rows)
                    {
                        new ReadOnlySpan<float>(qRow, d).CopyTo(new Span<float>(gqRaw + r * xs, d));
                        new ReadOnlySpan<float>(dO + (i0 + r) * a.DOo.StrideL, d).CopyTo(new Span<float>(gdOr + r * xs, d));
                    }
                    else { new Span<float>(gqRaw + r * xs, d).Clear(); new Span<float>(gdOr + r * xs, d).Clear(); }
                }
                new Span<float>(gdq, RowGroup * d).Clear();
            }
            // Per key tile, in three passes over the block's query groups, each with a working set that fits L1: the
            // scores (Kᵀ and Vᵀ tiles, 32 KiB at D 64) give P and scale·dS for the whole block; dQ += dS K (K's tile
            // rows); then dV += Pᵀ dO and dK += dSᵀ Q, each a product whose dK/dV rows stay in registers over all the
            // block's rows (AccumulateTransposedBlock). One pass per group touching all of it (80 KiB) missed L1 at
            // every group, and its dK/dV rows were loaded and stored once per four query rows.
            int blockLastKey = a.S.Causal ? Math.Min(lk - 1, blockEnd - 1 + a.S.CausalShift) : lk - 1;
            for (int j0 = 0; j0 <= blockLastKey; j0 += KeyTile)
            {
                int cols = Math.Min(KeyTile, lk - j0);
                int firstGroup = groups;   // causal: the groups before it see no key of this tile
                for (int g = 0; g < groups; g++)
                {
                    int i0 = blk0 + g * RowGroup, rows = Math.Min(RowGroup, lq - i0);
                    int lastKey = a.S.Causal ? Math.Min(lk - 1, i0 + rows - 1 + a.S.CausalShift) : lk - 1;
                    if (j0 > lastKey) continue;
                    firstGroup = Math.Min(firstGroup, g);
                    float* gqs = qs + g * RowGroup * xs, gdOr = dOr + g * RowGroup * xs;
                    float* gp = p + g * RowGroup * KeyTile, gdp = dp + g * RowGroup * KeyTile;
                    bool masked = a.S.Causal && j0 + KeyTile - 1 > i0 + a.S.CausalShift;
                    if (IsCommonTile(d, mask != null, masked, cols, a.S.Dropout, pk))
                    {
                        // The common tile: P and scale·dS straight from the score registers (ScoreTile4x64's backward
                        // epilogues), S and dP never stored. Rows past the last query count as fully masked.
                        // A full group reads its lse and D where they lie; only a short last group needs the padded copy.
                        float* gLse = lse + i0, gDi = di + i0;
                        if (rows < RowGroup)
                        {
                            for (int r = 0; r < RowGroup; r++) { rowLse[r] = r < rows ? lse[i0 + r] : float.NegativeInfinity; rowDi[r] = r < rows ? di[i0 + r] : 0; }
                            gLse = rowLse; gDi = rowDi;
                        }
                        var probabilities = new Epilogue { Kind = TileEpilogue.Probabilities, Lse = gLse };
                        ScoreTile4x64(gqs, xs, d, kt + (long)j0 * d, KeyTile, gp, ref probabilities);                    // P
                        var gradients = new Epilogue { Kind = TileEpilogue.ScoreGradients, Lse = gLse, Di = gDi, P = gp, Scale = scale };
                        ScoreTile4x64(gdOr, xs, d, vt + (long)j0 * d, KeyTile, gdp, ref gradients);                     // scale·dS from dP = dO Vᵀ
                        continue;
                    }
                    ScoreTile(gqs, xs, d, kt + (long)j0 * d, TileWidth(pk), gp);     // S
                    ScoreTile(gdOr, xs, d, vt + (long)j0 * d, TileWidth(pk), gdp);   // dP = dO Vᵀ
                    if (mask != null) AddMask(gp, mask, a.Mo, i0, rows, j0, cols);
                    // A -inf from the mask needs no special case: exp(-inf - lse) is 0 on both paths.
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
                            int visible = masked ? VisibleKeys(i0 + r, a.S.CausalShift, j0, cols) : cols;
                            if (float.IsNegativeInfinity(l) || visible <= 0) { new Span<float>(gp + r * KeyTile, KeyTile).Clear(); new Span<float>(gdp + r * KeyTile, KeyTile).Clear(); continue; }
                            var lv = Vector512.Create(l); var dv0 = Vector512.Create(di[i0 + r]);
                            for (int c = 0; c < visible; c += 16)
                            {
                                float* pr = gp + r * KeyTile + c, dpr = gdp + r * KeyTile + c;
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
                            if (visible < KeyTile) { new Span<float>(gp + r * KeyTile + visible, KeyTile - visible).Clear(); new Span<float>(gdp + r * KeyTile + visible, KeyTile - visible).Clear(); }
                        }
                    }
                    else if (Vector.IsHardwareAccelerated && a.S.Dropout == 0)
                        ProbabilitiesAndGradientsPortable(gp, gdp, lse, di, i0, rows, j0, cols, masked ? a.S.CausalShift : int.MaxValue / 2, scale);
                    else
                    for (int r = 0; r < RowGroup; r++)
                    {
                        float* pr = gp + r * KeyTile, dpr = gdp + r * KeyTile;
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
                }
                if (firstGroup == groups) continue;
                for (int g = firstGroup; g < groups; g++)
                {
                    // dS is 0 past the group's last visible key (the causal diagonal), so dQ's product stops there.
                    int visible = a.S.Causal ? VisibleKeys(blk0 + g * RowGroup + RowGroup - 1, a.S.CausalShift, j0, cols) : cols;
                    AccumulatePV(dp + g * RowGroup * KeyTile, k.Row(j0), k.Ld, visible, d, dqAcc + g * RowGroup * d);
                }
                int r0 = firstGroup * RowGroup, n = (groups - firstGroup) * RowGroup;
                // Causal: key j0 + j is seen from row r0 + (j + firstRow) of the block on (its P and dS are 0 above it).
                int firstRow = a.S.Causal ? j0 - a.S.CausalShift - blk0 - r0 : int.MinValue / 2;
                AccumulateTransposedBlock(p + r0 * KeyTile, n, cols, dOr + r0 * xs, xs, d, dv.Row(j0), dv.Ld, firstRow);
                AccumulateTransposedBlock(dp + r0 * KeyTile, n, cols, qRaw + r0 * xs, xs, d, dk.Row(j0), dk.Ld, firstRow);
            }
            for (int i = blk0; i < blockEnd; i++)
                new ReadOnlySpan<float>(dqAcc + (long)(i - blk0) * d, d).CopyTo(new Span<float>(dq + i * a.DQo.StrideL, d));
        }
    }

    // P = exp(S - lse) and scale·dS = P ∘ (dP - D_i) · scale in place of a group's stored S (p) and dP (dp), without
    // dropout, where Vector512 is not accelerated (AVX2: 8 lanes, Arm64: 4): the vector loop of the Vector512 branch
    // above at the portable width. Row r sees the tile's keys up to VisibleKeys (causalShift int.MaxValue / 2: all
    // cols); the columns past them are zeroed, and rows past the last query (or fully masked) are zero.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ProbabilitiesAndGradientsPortable(float* p, float* dp, float* lse, float* di, int i0, int rows, int j0, int cols, int causalShift, float scale)
    {
        int w = Vector<float>.Count;
        var sc = new Vector<float>(scale);
        for (int r = 0; r < RowGroup; r++)
        {
            float* pr = p + r * KeyTile, dpr = dp + r * KeyTile;
            float l = r < rows ? lse[i0 + r] : float.NegativeInfinity;
            int visible = VisibleKeys(i0 + r, causalShift, j0, cols);
            if (float.IsNegativeInfinity(l) || visible <= 0) { new Span<float>(pr, KeyTile).Clear(); new Span<float>(dpr, KeyTile).Clear(); continue; }
            var lv = new Vector<float>(l); var dv0 = new Vector<float>(di[i0 + r]);
            int c = 0;
            for (; c + w <= visible; c += w)
            {
                var prob = VectorMath.ExpNonPositive(Vector.Load(pr + c) - lv);
                prob.Store(pr + c);
                (prob * (Vector.Load(dpr + c) - dv0) * sc).Store(dpr + c);
            }
            for (; c < visible; c++)
            {
                float prob = VectorMath.Exp(pr[c] - l);
                pr[c] = prob;
                dpr[c] = prob * (dpr[c] - di[i0 + r]) * scale;
            }
            new Span<float>(pr + visible, KeyTile - visible).Clear(); new Span<float>(dpr + visible, KeyTile - visible).Clear();
        }
    }

    // dst[j, :] += Σ_r coef[r, j] · x[r, :] for j < cols, r < n: the [cols, D] += coefᵀ [cols, n] · x [n, D] product of
    // dV += Pᵀ dO and dK += dSᵀ Q over a block's rows (coef rows KeyTile apart, x rows xs apart, dst rows ld apart).
    // A group of keys' dst rows is held in registers while every row r streams past (per row: one broadcast per
    // key, the x row's vectors, keys x D/16 FMAs), then added to dst once: D 64 takes 4 keys (16 zmm), D 32 takes 8.
    // Each dst element gets Σ_r in increasing r, then one add: the same bits for any thread count.
    // Key j's coefficients are 0 in the rows before j + firstRow (the causal diagonal; firstRow very negative: none),
    // so at D 64 and 32 a group of keys starts at its first key's row: on a diagonal tile that halves the work, and
    // leaving out leading terms 0·x changes no bit of the sums.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateTransposedBlock(float* coef, int n, int cols, float* x, int xs, int d, float* dst, long ld, int firstRow)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated && d == 64)
            for (; j < cols; j += 4)
            {
                int r = Math.Clamp(j + firstRow, 0, n);
                TransposedKeys4x64(coef + r * KeyTile + j, n - r, Math.Min(4, cols - j), x + r * xs, xs, dst + j * ld, ld);
            }
        else if (Vector512.IsHardwareAccelerated && d == 32)
            for (; j < cols; j += 8)
            {
                int r = Math.Clamp(j + firstRow, 0, n);
                TransposedKeys8x32(coef + r * KeyTile + j, n - r, Math.Min(8, cols - j), x + r * xs, xs, dst + j * ld, ld);
            }
        else if (Vector512.IsHardwareAccelerated) { TransposedByKeys(coef, n, cols, x, xs, d, dst, ld); return; }
        else if (Vector.IsHardwareAccelerated) { TransposedPortable(coef, n, cols, x, xs, d, dst, ld, firstRow); return; }
        for (; j < cols; j++)
        {
            float* row = dst + j * ld;
            for (int c = 0; c < d; c++)
            {
                float acc = 0;
                for (int r = 0; r < n; r++) acc = MathF.FusedMultiplyAdd(coef[r * KeyTile + j], x[r * xs + c], acc);
                row[c] += acc;
            }
        }
    }

    // AccumulateTransposedBlock at the other head sizes (PatchTST's D 4, SASRec's 50, ...): sixteen keys per vector
    // instead, since a row's coefficients are contiguous, and two columns of x at a time: 8 accumulators (2 columns x
    // the tile's 64 keys) over the rows, then each sum added into its dst element. (A vector across D was one
    // dependent FMA chain per key at these sizes, and at D 4 a quarter-empty vector: PatchTST's backward, B·C 896,
    // H 4, L 42, took 25 ms that way against 19.5 ms now; four columns at a time measured slower than two.)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedByKeys(float* coef, int n, int cols, float* x, int xs, int d, float* dst, long ld)
    {
        float* sums = stackalloc float[2 * KeyTile];
        for (int c = 0; c < d; c += 2)
        {
            bool two = c + 1 < d;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int r = 0; r < n; r++)
            {
                float* cr = coef + r * KeyTile, xr = x + r * xs + c;
                var k0 = Vector512.Load(cr); var k1 = Vector512.Load(cr + 16); var k2 = Vector512.Load(cr + 32); var k3 = Vector512.Load(cr + 48);
                var w = Vector512.Create(xr[0]);
                a0 = Vector512.FusedMultiplyAdd(w, k0, a0); a1 = Vector512.FusedMultiplyAdd(w, k1, a1); a2 = Vector512.FusedMultiplyAdd(w, k2, a2); a3 = Vector512.FusedMultiplyAdd(w, k3, a3);
                w = Vector512.Create(two ? xr[1] : 0f);
                b0 = Vector512.FusedMultiplyAdd(w, k0, b0); b1 = Vector512.FusedMultiplyAdd(w, k1, b1); b2 = Vector512.FusedMultiplyAdd(w, k2, b2); b3 = Vector512.FusedMultiplyAdd(w, k3, b3);
            }
            a0.Store(sums); a1.Store(sums + 16); a2.Store(sums + 32); a3.Store(sums + 48);
            b0.Store(sums + 64); b1.Store(sums + 80); b2.Store(sums + 96); b3.Store(sums + 112);
            for (int j = 0; j < cols; j++)
            {
                float* row = dst + j * ld + c;
                row[0] += sums[j];
                if (two) row[1] += sums[KeyTile + j];
            }
        }
    }

    // AccumulateTransposedBlock where Vector512 is not accelerated (AVX2: 8 lanes, Arm64: 4): for each slice of two
    // vectors of D, four keys' dst rows in 8 accumulators while the rows stream past (per row two loads of x and four
    // broadcasts of coef for 8 FMAs), starting at the group's first visible row as at D 64; the columns of D past the
    // last whole slice (and the keys of a short last group) one at a time.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedPortable(float* coef, int n, int cols, float* x, int xs, int d, float* dst, long ld, int firstRow)
    {
        int w = Vector<float>.Count, c0 = 0;
        for (; c0 + 2 * w <= d; c0 += 2 * w)
            for (int j = 0; j < cols; j += 4)
            {
                int r0 = Math.Clamp(j + firstRow, 0, n), keys = Math.Min(4, cols - j);
                Vector<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
                for (int r = r0; r < n; r++)
                {
                    float* xr = x + r * xs + c0, cr = coef + r * KeyTile + j;
                    var x0 = Vector.Load(xr); var x1 = Vector.Load(xr + w);
                    var k = new Vector<float>(cr[0]); a00 = Vector.MultiplyAddEstimate(k, x0, a00); a01 = Vector.MultiplyAddEstimate(k, x1, a01);
                    k = new Vector<float>(cr[1]); a10 = Vector.MultiplyAddEstimate(k, x0, a10); a11 = Vector.MultiplyAddEstimate(k, x1, a11);
                    k = new Vector<float>(cr[2]); a20 = Vector.MultiplyAddEstimate(k, x0, a20); a21 = Vector.MultiplyAddEstimate(k, x1, a21);
                    k = new Vector<float>(cr[3]); a30 = Vector.MultiplyAddEstimate(k, x0, a30); a31 = Vector.MultiplyAddEstimate(k, x1, a31);
                }
                float* row = dst + j * ld + c0;
                (Vector.Load(row) + a00).Store(row); (Vector.Load(row + w) + a01).Store(row + w);
                if (keys > 1) { row += ld; (Vector.Load(row) + a10).Store(row); (Vector.Load(row + w) + a11).Store(row + w); }
                if (keys > 2) { row += ld; (Vector.Load(row) + a20).Store(row); (Vector.Load(row + w) + a21).Store(row + w); }
                if (keys > 3) { row += ld; (Vector.Load(row) + a30).Store(row); (Vector.Load(row + w) + a31).Store(row + w); }
            }
        for (int j = 0; j < cols && c0 < d; j++)
        {
            float* row = dst + j * ld;
            for (int c = c0; c < d; c++)
            {
                float acc = 0;
                for (int r = 0; r < n; r++) acc = MathF.FusedMultiplyAdd(coef[r * KeyTile + j], x[r * xs + c], acc);
                row[c] += acc;
            }
        }
    }

    // Keys j..j+keys-1 (keys <= 4) of AccumulateTransposedBlock at D 64: 4 x 4 zmm accumulators. Coefficients of the
    // columns past the last key are zero in P and dS (cleared after each row), so the missing keys compute zeros and
    // are not stored.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedKeys4x64(float* coef, int n, int keys, float* x, int xs, float* dst, long ld)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default,
                         a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        for (int r = 0; r < n; r++)
        {
            float* xr = x + r * xs, cr = coef + r * KeyTile;
            var x0 = Vector512.Load(xr); var x1 = Vector512.Load(xr + 16); var x2 = Vector512.Load(xr + 32); var x3 = Vector512.Load(xr + 48);
            var w = Vector512.Create(cr[0]);
            a00 = Vector512.FusedMultiplyAdd(w, x0, a00); a01 = Vector512.FusedMultiplyAdd(w, x1, a01); a02 = Vector512.FusedMultiplyAdd(w, x2, a02); a03 = Vector512.FusedMultiplyAdd(w, x3, a03);
            w = Vector512.Create(cr[1]);
            a10 = Vector512.FusedMultiplyAdd(w, x0, a10); a11 = Vector512.FusedMultiplyAdd(w, x1, a11); a12 = Vector512.FusedMultiplyAdd(w, x2, a12); a13 = Vector512.FusedMultiplyAdd(w, x3, a13);
            w = Vector512.Create(cr[2]);
            a20 = Vector512.FusedMultiplyAdd(w, x0, a20); a21 = Vector512.FusedMultiplyAdd(w, x1, a21); a22 = Vector512.FusedMultiplyAdd(w, x2, a22); a23 = Vector512.FusedMultiplyAdd(w, x3, a23);
            w = Vector512.Create(cr[3]);
            a30 = Vector512.FusedMultiplyAdd(w, x0, a30); a31 = Vector512.FusedMultiplyAdd(w, x1, a31); a32 = Vector512.FusedMultiplyAdd(w, x2, a32); a33 = Vector512.FusedMultiplyAdd(w, x3, a33);
        }
        AddRow64(dst, a00, a01, a02, a03);
        if (keys > 1) AddRow64(dst + ld, a10, a11, a12, a13);
        if (keys > 2) AddRow64(dst + 2 * ld, a20, a21, a22, a23);
        if (keys > 3) AddRow64(dst + 3 * ld, a30, a31, a32, a33);
    }

    // Keys j..j+keys-1 (keys <= 8) of AccumulateTransposedBlock at D 32: 8 x 2 zmm accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedKeys8x32(float* coef, int n, int keys, float* x, int xs, float* dst, long ld)
    {
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default,
                         a40 = default, a41 = default, a50 = default, a51 = default, a60 = default, a61 = default, a70 = default, a71 = default;
        for (int r = 0; r < n; r++)
        {
            float* xr = x + r * xs, cr = coef + r * KeyTile;
            var x0 = Vector512.Load(xr); var x1 = Vector512.Load(xr + 16);
            var w = Vector512.Create(cr[0]); a00 = Vector512.FusedMultiplyAdd(w, x0, a00); a01 = Vector512.FusedMultiplyAdd(w, x1, a01);
            w = Vector512.Create(cr[1]); a10 = Vector512.FusedMultiplyAdd(w, x0, a10); a11 = Vector512.FusedMultiplyAdd(w, x1, a11);
            w = Vector512.Create(cr[2]); a20 = Vector512.FusedMultiplyAdd(w, x0, a20); a21 = Vector512.FusedMultiplyAdd(w, x1, a21);
            w = Vector512.Create(cr[3]); a30 = Vector512.FusedMultiplyAdd(w, x0, a30); a31 = Vector512.FusedMultiplyAdd(w, x1, a31);
            w = Vector512.Create(cr[4]); a40 = Vector512.FusedMultiplyAdd(w, x0, a40); a41 = Vector512.FusedMultiplyAdd(w, x1, a41);
            w = Vector512.Create(cr[5]); a50 = Vector512.FusedMultiplyAdd(w, x0, a50); a51 = Vector512.FusedMultiplyAdd(w, x1, a51);
            w = Vector512.Create(cr[6]); a60 = Vector512.FusedMultiplyAdd(w, x0, a60); a61 = Vector512.FusedMultiplyAdd(w, x1, a61);
            w = Vector512.Create(cr[7]); a70 = Vector512.FusedMultiplyAdd(w, x0, a70); a71 = Vector512.FusedMultiplyAdd(w, x1, a71);
        }
        AddRow32(dst, a00, a01);
        if (keys > 1) AddRow32(dst + ld, a10, a11);
        if (keys > 2) AddRow32(dst + 2 * ld, a20, a21);
        if (keys > 3) AddRow32(dst + 3 * ld, a30, a31);
        if (keys > 4) AddRow32(dst + 4 * ld, a40, a41);
        if (keys > 5) AddRow32(dst + 5 * ld, a50, a51);
        if (keys > 6) AddRow32(dst + 6 * ld, a60, a61);
        if (keys > 7) AddRow32(dst + 7 * ld, a70, a71);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow64(float* row, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3)
    {
        (Vector512.Load(row) + v0).Store(row); (Vector512.Load(row + 16) + v1).Store(row + 16);
        (Vector512.Load(row + 32) + v2).Store(row + 32); (Vector512.Load(row + 48) + v3).Store(row + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow32(float* row, Vector512<float> v0, Vector512<float> v1)
    {
        (Vector512.Load(row) + v0).Store(row); (Vector512.Load(row + 16) + v1).Store(row + 16);
    }
}
