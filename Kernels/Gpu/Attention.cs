// Attention (GPU): fused scaled dot-product attention, O = softmax(scale·Q Kᵀ + masks) V per (batch, head),
// FlashAttention-2 loop order (Dao 2023), forward and a deterministic backward; the CPU twin is
// Kernels/Cpu/Attention.cs and AttentionBackward.cs, whose conventions (masks, dropout hash, lse) this follows.
//
// Forward: one group of R x W threads owns R query rows of one (b, h) (grid = B·H·ceil(Lq/R), flattened);
// thread (r, w) works for row r. Grouped-query attention: query head h reads K/V head h / (H / Hkv) (indexed,
// never copied). Q rows are staged once, pre-scaled; key tiles of Bc run left to right:
//
//          keys j0 .. j0+Bc-1                    shared memory (GPU build: R=16, W=8, Bc=16, Dmax=128: 35 KB)
//        +-------------------+                   Q    R  x Dmax   scaled query rows
//   rows | S = Q Kᵀ (R x Bc) |  <- K tile          acc  R  x Dmax   unnormalised output rows
//   i0.. | lanes w, w+W, ... |     (Bc x Dmax)     K, V Bc x Dmax   the key tile and the value tile
//   +R-1 +-------------------+                   S|P  R  x Bc     scores, then probabilities
//          | online softmax per row (lane 0: m, l, correction; Bc exps)
//          v
//   acc[r, c] = acc[r, c]·exp(m_old - m_new) + P[r, :] · V[:, c]    lanes own columns c = w, w+W, ...
//
// K and V get separate buffers: with one buffer, V staged over K between the score and the P·V barriers, PoCL
// returned O = K for a single key (observed here; ILGPU emits Group.Barrier as
// work_group_barrier(CLK_GLOBAL_MEM_FENCE) in OpenCL C, a fence that does not cover local memory).
// masks: causal hides key j from query i when j > i + (Lk - Lq) (bottom-right aligned); the optional additive
// mask M[b, h, i, j] (read through broadcast strides, stride 0 on broadcast dims; -inf hides) is added to the
// scaled score; keys past Lk and rows past Lq are inert. Dropout
// scales P after its row sum, from Attention.Keep's hash, so a seed drops the same (b, h, i, j) here and on
// the CPU. Finally O = acc / l and lse = m + log l; a row that saw no key gets O = 0 and lse = -inf.
// Causal groups stop at the last key their last row may see.
//
// Backward, with P = exp(scale·Q Kᵀ - lse) recomputed from the saved lse and Di = rowsum(dO ∘ O):
//   DeltaKernel            Di, one thread per query row
//   KeyValueGradKernel     a group owns R keys of one (b, kv head) and walks the query rows of every query head
//                          of its group in steps of Sq (GPU: 16 keys, Sq=8, 41 KB):
//                          dV_j = Σ_h Σ_i P̃_ij dO_i,  dK_j = Σ_h Σ_i dS_ij Q_i   (P̃: P after dropout)
//   QueryGradKernel        a group owns R query rows and walks the keys in steps of Sk (GPU: 16 rows, Sk=16, 42 KB):
//                          dQ_i = Σ_j dS_ij K_j
//   with dP_ij = dO_i · V_j (through the dropout mask and 1/(1-p)) and dS_ij = scale · P_ij (dP_ij - Di).
// Every output element is summed by one thread in a fixed order: no atomics, the same bits on every run.
// The price is computing P and dP twice (once per backward kernel). The backward kernels are in AttentionBackward.cs.
//
// FLOPs: forward 4·B·H·Lq·Lk·D, backward ~12·B·H·Lq·Lk·D (about half each when causal). Bytes: the forward
// reads each K/V tile once per group of R query rows (K and V are read Lq/R times), Q and O once; the backward
// reads Q/dO Lk/R times and K/V Lq/R times. Bound: shared-memory bandwidth (each FMA reads two shared floats)
// and, at these tile sizes, the re-reads of K and V from L2; the exps are 1/D of the work. On the CPU
// accelerator (R=4, W=4: 16 threads) it is a correctness tool only.
// Reference: the CPU backend's fused kernel and the float64 AttentionReference (Tests/Gpu/AttentionGpuTests.cs).
using ILGPU;
using ILGPU.Algorithms;
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Gpu;

/// <summary>Compile-time tiling of the attention kernels (shared-memory extents must be constants).</summary>
public interface IAttentionTiles
{
    /// <summary>Query rows per group (forward, dQ) and keys per group (dK/dV).</summary>
    int Rows { get; }
    /// <summary>Threads per row; a group has Rows x Lanes threads.</summary>
    int Lanes { get; }
    /// <summary>Keys per step of the forward pass.</summary>
    int Keys { get; }
    /// <summary>Query rows per step of the dK/dV kernel.</summary>
    int StepRows { get; }
    /// <summary>Keys per step of the dQ kernel.</summary>
    int StepKeys { get; }
    /// <summary>Largest head dimension (the row length of the shared tiles).</summary>
    int MaxDim { get; }
}

/// <summary>GPU tiling: 128-thread groups, at most ~42 KB of shared memory per kernel (the CUDA cap is 48 KB; a test reads it from the PTX).</summary>
public struct AttentionGpuTiles : IAttentionTiles
{
    /// <inheritdoc/>
    public readonly int Rows => 16;
    /// <inheritdoc/>
    public readonly int Lanes => 8;
    /// <inheritdoc/>
    public readonly int Keys => 16;
    /// <inheritdoc/>
    public readonly int StepRows => 8;
    /// <inheritdoc/>
    public readonly int StepKeys => 16;
    /// <inheritdoc/>
    public readonly int MaxDim => Attention.MaxDim;
}

/// <summary>CPU-accelerator tiling: 16-thread groups (its limit).</summary>
public struct AttentionSmallTiles : IAttentionTiles
{
    /// <inheritdoc/>
    public readonly int Rows => 4;
    /// <inheritdoc/>
    public readonly int Lanes => 4;
    /// <inheritdoc/>
    public readonly int Keys => 8;
    /// <inheritdoc/>
    public readonly int StepRows => 4;
    /// <inheritdoc/>
    public readonly int StepKeys => 4;
    /// <inheritdoc/>
    public readonly int MaxDim => Attention.MaxDim;
}

/// <summary>Where one operand sits: element [b, h, i, d] is at Offset + b·StrideB + h·StrideH + i·StrideL + d.</summary>
public struct AttentionView
{
    /// <summary>Element index of [0, 0, 0, 0], and the elements between consecutive batch entries, heads and rows (the head dim is contiguous).</summary>
    public long Offset, StrideB, StrideH, StrideL;

    /// <summary>Element index of row i of head (b, h).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly long Row(int b, int h, int i) => Offset + b * StrideB + h * StrideH + i * StrideL;
}

/// <summary>Sizes, options and operand layouts of one attention launch.</summary>
public struct AttentionArgs
{
    /// <summary>Query heads H, query rows Lq and key rows Lk per head, and the head dimension D.</summary>
    public int Heads, QueryLength, KeyLength, Dim;
    /// <summary>Multiplier of q·k before the softmax (1/sqrt(D) unless the caller gave another).</summary>
    public float Scale;
    /// <summary>1 when causal; key j is hidden from query i when j &gt; i + CausalShift.</summary>
    public int Causal, CausalShift;
    /// <summary>Key/value heads, and query heads per key/value head (grouped-query attention; 1 otherwise).</summary>
    public int KvHeads, Group;
    /// <summary>1 when the mask view holds an additive mask placed by <see cref="Mask"/>.</summary>
    public int HasMask;
    /// <summary>1 when dropout is on; a score is kept when the top 24 bits of its hash are &gt;= DropThreshold.</summary>
    public int HasDropout;
    /// <summary>Dropout: the seed of the per-score hash, and the threshold its top 24 bits are compared with (p · 2^24).</summary>
    public ulong Seed, DropThreshold;
    /// <summary>1 / (1 - p), applied to kept probabilities.</summary>
    public float KeepScale;
    /// <summary>Groups per (b, h): ceil(Lq / Rows), or ceil(Lk / Rows) for the dK/dV kernel.</summary>
    public int Tiles;
    /// <summary>Layouts of the inputs q, k, v, the output O, its gradient dO, and the gradients dQ, dK, dV (unused ones are zero).</summary>
    public AttentionView Q, K, V, O, DO, DQ, DK, DV;
    /// <summary>Layout of the additive mask, read only when <see cref="HasMask"/> is 1.</summary>
    public AttentionMaskView Mask;
}

/// <summary>Where the additive mask sits: entry [b, h, i, j] is at Offset + b·StrideB + h·StrideH + i·StrideQ + j·StrideK (stride 0 broadcasts).</summary>
public struct AttentionMaskView
{
    /// <summary>Element index of [0, 0, 0, 0], and the steps along batch, head, query row and key column (0 broadcasts that dim).</summary>
    public long Offset, StrideB, StrideH, StrideQ, StrideK;
}

/// <summary>Fused attention forward and backward kernels for ILGPU devices (see the file header).</summary>
public static partial class Attention
{
    /// <summary>Largest head dimension the device kernels take (larger heads use the composite path).</summary>
    public const int MaxDim = 128;

    /// <summary>
    /// The dropout decision of the CPU kernels with integer arithmetic only: they keep when
    /// <see cref="AttentionDropout.Hash24"/> / 2^24 &gt;= p, i.e. when the 24-bit hash is at least
    /// <paramref name="threshold"/> = ceil(p · 2^24) (exact: p · 2^24 is exact in double).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ulong seed, int b, int h, int i, int j, ulong threshold) => AttentionDropout.Hash24(seed, b, h, i, j) >= threshold;

    /// <summary>The threshold <see cref="Keep"/> compares with, for dropout probability <paramref name="p"/>.</summary>
    public static ulong DropThreshold(float p) => (ulong)Math.Ceiling(p * 16777216.0);

    // Key j is not hidden from query i by the causal flag (i < Lq, j < Lk checked by the caller). Helpers take
    // everything by value: a by-ref argument that escaped inlining would need the generic address space PoCL lacks.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Visible(AttentionArgs a, int i, int j) => !(a.Causal != 0 && j > i + a.CausalShift);

    // The additive mask entry for (b, h, i, j), 0 without a mask.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaskAt(ArrayView<float> mask, AttentionArgs a, int b, int h, int i, int j) =>
        a.HasMask != 0 ? mask[a.Mask.Offset + b * a.Mask.StrideB + h * a.Mask.StrideH + i * a.Mask.StrideQ + j * a.Mask.StrideK] : 0f;

    /// <summary>
    /// O and lse for the R query rows of group Grid.IdxX (tile Grid.IdxX % Tiles of head Grid.IdxX / Tiles).
    /// Launch with Tiles·B·H groups of Rows x Lanes threads (1D).
    /// </summary>
    [GpuTypeArguments(typeof(AttentionGpuTiles))]
    public static void ForwardKernel<T>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse,
        ArrayView<float> mask, AttentionArgs a) where T : struct, IAttentionTiles
    {
        T t = default;
        var qs = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + t.Lanes));   // rows padded so a warp's rows hit different banks
        var acc = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + t.Lanes));
        var ks = SharedMemory.Allocate<float>(t.Keys * (t.MaxDim + 1));         // +1: lanes read different key rows
        var vs = SharedMemory.Allocate<float>(t.Keys * (t.MaxDim + 1));
        var p = SharedMemory.Allocate<float>(t.Rows * t.Keys);
        var rowM = SharedMemory.Allocate<float>(t.Rows);
        var rowL = SharedMemory.Allocate<float>(t.Rows);
        var rowC = SharedMemory.Allocate<float>(t.Rows);
        int rows = t.Rows, lanes = t.Lanes, keys = t.Keys, rs = t.MaxDim + t.Lanes, ld = t.MaxDim + 1, threads = rows * lanes;
        int tile = Grid.IdxX % a.Tiles, bh = Grid.IdxX / a.Tiles, b = bh / a.Heads, h = bh % a.Heads;
        int tid = Group.IdxX, r = tid / lanes, lane = tid - r * lanes;
        int d = a.Dim, lq = a.QueryLength, lk = a.KeyLength, i0 = tile * rows, i = i0 + r;
        long qBase = a.Q.Row(b, h, 0), kBase = a.K.Row(b, h / a.Group, 0), vBase = a.V.Row(b, h / a.Group, 0);

        for (int e = tid; e < rows * d; e += threads)
        {
            int rr = e / d, c = e - rr * d;
            qs[rr * rs + c] = i0 + rr < lq ? q[qBase + (long)(i0 + rr) * a.Q.StrideL + c] * a.Scale : 0f;
            acc[rr * rs + c] = 0f;
        }
        if (lane == 0) { rowM[r] = float.NegativeInfinity; rowL[r] = 0f; }
        Group.Barrier();

        int lastRow = i0 + rows - 1 < lq ? i0 + rows - 1 : lq - 1;
        int lastKey = a.Causal != 0 && lastRow + a.CausalShift < lk - 1 ? lastRow + a.CausalShift : lk - 1;
        for (int j0 = 0; j0 <= lastKey; j0 += keys)
        {
            int cols = lk - j0 < keys ? lk - j0 : keys;
            for (int e = tid; e < cols * d; e += threads)
            {
                int jj = e / d, c = e - jj * d;
                ks[jj * ld + c] = k[kBase + (long)(j0 + jj) * a.K.StrideL + c];
                vs[jj * ld + c] = v[vBase + (long)(j0 + jj) * a.V.StrideL + c];
            }
            Group.Barrier();
            for (int jj = lane; jj < keys; jj += lanes)
            {
                float s = float.NegativeInfinity;
                if (i < lq && jj < cols && Visible(a, i, j0 + jj))
                {
                    float dot = 0f;
                    for (int c = 0; c < d; c++) dot += qs[r * rs + c] * ks[jj * ld + c];
                    s = dot + MaskAt(mask, a, b, h, i, j0 + jj);
                }
                p[r * keys + jj] = s;
            }
            Group.Barrier();
            if (lane == 0)
            {
                float m = rowM[r], mNew = m;
                for (int jj = 0; jj < keys; jj++) mNew = XMath.Max(mNew, p[r * keys + jj]);
                float correction = 1f;
                if (mNew != float.NegativeInfinity)
                {
                    correction = m == float.NegativeInfinity ? 0f : XMath.Exp(m - mNew);
                    float sum = 0f;
                    for (int jj = 0; jj < keys; jj++)
                    {
                        float s = p[r * keys + jj];
                        float e = s == float.NegativeInfinity ? 0f : XMath.Exp(s - mNew);
                        sum += e;
                        // l sums the undropped probabilities (as the CPU kernel and the reference do).
                        if (a.HasDropout != 0 && e != 0f) e = Keep(a.Seed, b, h, i, j0 + jj, a.DropThreshold) ? e * a.KeepScale : 0f;
                        p[r * keys + jj] = e;
                    }
                    rowL[r] = rowL[r] * correction + sum;
                    rowM[r] = mNew;
                }
                else
                    for (int jj = 0; jj < keys; jj++) p[r * keys + jj] = 0f;
                rowC[r] = correction;
            }
            Group.Barrier();
            float cr = rowC[r];
            for (int c = lane; c < d; c += lanes)
            {
                float s = acc[r * rs + c] * cr;
                for (int jj = 0; jj < cols; jj++) s += p[r * keys + jj] * vs[jj * ld + c];
                acc[r * rs + c] = s;
            }
            Group.Barrier();
        }

        if (i < lq)
        {
            float l = rowL[r], inv = l > 0f ? 1f / l : 0f;
            long oRow = a.O.Row(b, h, i);
            for (int c = lane; c < d; c += lanes) o[oRow + c] = acc[r * rs + c] * inv;
            if (lane == 0) lse[(long)bh * lq + i] = l > 0f ? rowM[r] + XMath.Log(l) : float.NegativeInfinity;
        }
    }
}
