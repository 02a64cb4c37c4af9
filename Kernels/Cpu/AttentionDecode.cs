// AttentionDecode: the forward pass for a few queries against many keys (a decoder step over its key/value cache),
// where the FlashAttention loop of Attention.cs wastes its work: it packs all of Kᵀ for every call and computes
// four query rows per group when there is one.
//
// Algorithm, per (b, query head h), for each of the Lq <= DecodeMaxQueries queries i:
//   s_j = scale · q_i · k_j (+ M[b, h, i, j])  for the keys j it may see (causal: j <= i + Lk - Lq), each a dot
//                                              product over the contiguous head dim, read straight from K's rows
//   m = max s, p_j = exp(s_j - m), l = Σ p_j    two passes over the Lk scores, kept in per-thread scratch
//   o_i = (Σ p_j v_j) / l, lse_i = m + log l   one pass over V's rows (axpy)
// Grouped-query heads read K/V head h / (H / Hkv), as in Attention.cs. A query that sees no key gets o = 0 and
// lse = -inf (the fused kernel's convention). No dropout: calls with dropout take the fused kernel.
// FLOPs: 4·B·H·Lq·Lk·D. Bytes: K and V read once per query (they stay in L1/L2 across the queries of a head).
// Threads: (b, h) pairs over the WorkerPool when there is enough work; a short cache runs on the calling thread.
// Reference: AttentionReference.Forward, compared in Tests/Kernels/AttentionTests.cs (the decode_* cases).
using System.Numerics.Tensors;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Attention
{
    /// <summary>Calls with at most this many queries and no dropout take the decode kernel.</summary>
    public const int DecodeMaxQueries = 2;

    // Below this many multiply-adds (B·H·Lq·Lk·D) the pool's hand-off costs more than it saves.
    private const long DecodeParallelWork = 1L << 16;

    private static bool TakesDecode(in AttentionShape shape) => shape.QueryLength <= DecodeMaxQueries && shape.Dropout == 0;

    private static void DecodeForward(ref Args a)
    {
        long work = (long)a.S.Batch * a.S.Heads * a.S.QueryLength * a.S.KeyLength * a.S.Dim;
        int heads = a.S.Batch * a.S.Heads;
        fixed (Args* pa = &a)
        {
            if (WorkerPool.ThreadCount > 1 && work >= DecodeParallelWork) WorkerPool.For(heads, &DecodeTask, (nint)pa);
            else for (int bh = 0; bh < heads; bh++) DecodeTask(bh, (nint)pa);
        }
    }

    private static void DecodeTask(int bh, nint state)
    {
        ref Args a = ref *(Args*)state;
        int b = bh / a.S.Heads, h = bh % a.S.Heads, hk = h / a.S.GroupSize, d = a.S.Dim, lk = a.S.KeyLength;
        float* scores = Scratch(lk + 16);
        float* kBase = a.K + a.Ko.Offset + b * a.Ko.StrideB + hk * a.Ko.StrideH;
        float* vBase = a.V + a.Vo.Offset + b * a.Vo.StrideB + hk * a.Vo.StrideH;
        float scale = (float)a.S.Scale;
        for (int i = 0; i < a.S.QueryLength; i++)
        {
            var q = new ReadOnlySpan<float>(a.Q + a.Qo.Offset + b * a.Qo.StrideB + h * a.Qo.StrideH + i * a.Qo.StrideL, d);
            var o = new Span<float>(a.O + a.Oo.Offset + b * a.Oo.StrideB + h * a.Oo.StrideH + i * a.Oo.StrideL, d);
            int visible = a.S.Causal ? Math.Clamp(i + a.S.CausalShift + 1, 0, lk) : lk;
            for (int j = 0; j < visible; j++) scores[j] = scale * TensorPrimitives.Dot(q, new ReadOnlySpan<float>(kBase + j * a.Ko.StrideL, d));
            var s = new Span<float>(scores, visible);
            if (a.Mask != null)
            {
                float* m = a.Mask + a.Mo.Offset + b * a.Mo.StrideB + h * a.Mo.StrideH + i * a.Mo.StrideQ;
                for (int j = 0; j < visible; j++) s[j] += m[j * a.Mo.StrideK];
            }
            float max = visible == 0 ? float.NegativeInfinity : TensorPrimitives.Max(s);
            o.Clear();
            long lseAt = ((long)b * a.S.Heads + h) * a.S.QueryLength + i;
            if (float.IsNegativeInfinity(max)) { a.Lse[lseAt] = float.NegativeInfinity; continue; }
            TensorPrimitives.Subtract(s, max, s);
            TensorPrimitives.Exp(s, s);
            float sum = TensorPrimitives.Sum(s), inv = 1 / sum;
            for (int j = 0; j < visible; j++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vBase + j * a.Vo.StrideL, d), s[j] * inv, o, o);
            a.Lse[lseAt] = max + MathF.Log(sum);
        }
    }
}
