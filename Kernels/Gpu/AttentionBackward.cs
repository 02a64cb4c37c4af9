// AttentionBackward (GPU): the backward kernels of the fused attention (the forward, the tiling and the
// conventions are described in Attention.cs). P is recomputed from the saved lse, never stored:
//   DeltaKernel          Di = rowsum(dO ∘ O), one thread per query row
//   KeyValueGradKernel   dK, dV of R keys of one (b, kv head) per group, over all query rows of the group's
//                        query heads (grouped-query attention) in steps of StepRows
//   QueryGradKernel      dQ of R query rows per group, over the visible keys in steps of StepKeys
// Each gradient element is summed by one thread in a fixed order (deterministic, no atomics); P and dP are
// computed once in each of the two gradient kernels.
// FLOPs: ~12·B·H·Lq·Lk·D (about half when causal). Bytes: Q and dO read Lk/R times, K and V Lq/R times.
// Bound: shared-memory bandwidth of the dot products. Reference: AttentionReference.Backward (float64) in
// Tests/Gpu/AttentionGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Gpu;

public static partial class Attention
{
    /// <summary>di[bh·Lq + i] = dO_i · O_i for every query row (launch B·H·Lq threads).</summary>
    public static void DeltaKernel(Index1D row, ArrayView<float> dout, ArrayView<float> o, ArrayView<float> di, AttentionArgs a)
    {
        int lq = a.QueryLength, bh = row / lq, i = row - bh * lq, b = bh / a.Heads, h = bh - b * a.Heads;
        long g = a.DO.Row(b, h, i), x = a.O.Row(b, h, i);
        float s = 0f;
        for (int c = 0; c < a.Dim; c++) s += dout[g + c] * o[x + c];
        di[row] = s;
    }

    private struct Grad
    {
        public float Kept, Ds;
    }

    // P̃_ij (P after dropout) and dS_ij = scale·P_ij·(dP̃_ij - Di) for one (i, j) the causal flag leaves visible,
    // with additive mask entry m (-inf gives P = 0); the q, dO, k and v rows are in shared memory at the given starts.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Grad Probability(ArrayView<float> qs, int qAt, ArrayView<float> dos, int doAt, ArrayView<float> ks, int kAt, ArrayView<float> vs, int vAt,
        float lse, float di, float m, AttentionArgs a, int b, int h, int i, int j)
    {
        Grad g;
        if (m == float.NegativeInfinity) { g.Kept = 0f; g.Ds = 0f; return g; }
        float s = 0f, dp = 0f;
        for (int c = 0; c < a.Dim; c++) { s += qs[qAt + c] * ks[kAt + c]; dp += dos[doAt + c] * vs[vAt + c]; }
        float prob = XMath.Exp(s * a.Scale + m - lse), kept = prob;
        if (a.HasDropout != 0)
        {
            bool keep = Keep(a.Seed, b, h, i, j, a.DropThreshold);
            kept = keep ? prob * a.KeepScale : 0f;
            dp = keep ? dp * a.KeepScale : 0f;
        }
        g.Kept = kept;
        g.Ds = prob * (dp - di) * a.Scale;
        return g;
    }

    /// <summary>
    /// dK and dV for the R keys of group Grid.IdxX (tile Grid.IdxX % Tiles of key/value head Grid.IdxX / Tiles, Tiles =
    /// ceil(Lk/R)), summing over all query rows of the Group query heads it serves in steps of StepRows. Launch
    /// Tiles·B·KvHeads groups of Rows x Lanes threads.
    /// </summary>
    [GpuTypeArguments(typeof(AttentionGpuTiles))]
    public static void KeyValueGradKernel<T>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dout, ArrayView<float> lse,
        ArrayView<float> di, ArrayView<float> mask, ArrayView<float> dk, ArrayView<float> dv, AttentionArgs a) where T : struct, IAttentionTiles
    {
        T t = default;
        var ks = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + 1));
        var vs = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + 1));
        var dks = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + t.Lanes));
        var dvs = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + t.Lanes));
        var qs = SharedMemory.Allocate<float>(t.StepRows * (t.MaxDim + 1));
        var dos = SharedMemory.Allocate<float>(t.StepRows * (t.MaxDim + 1));
        var pt = SharedMemory.Allocate<float>(t.StepRows * t.Rows);
        var dst = SharedMemory.Allocate<float>(t.StepRows * t.Rows);
        var rowLse = SharedMemory.Allocate<float>(t.StepRows);
        var rowD = SharedMemory.Allocate<float>(t.StepRows);
        int keys = t.Rows, lanes = t.Lanes, steps = t.StepRows, ld = t.MaxDim + 1, rs = t.MaxDim + t.Lanes, threads = keys * lanes;
        int tile = Grid.IdxX % a.Tiles, bhk = Grid.IdxX / a.Tiles, b = bhk / a.KvHeads, hk = bhk % a.KvHeads;
        int tid = Group.IdxX, kr = tid / lanes, lane = tid - kr * lanes;
        int d = a.Dim, lq = a.QueryLength, lk = a.KeyLength, j0 = tile * keys;
        long kBase = a.K.Row(b, hk, 0), vBase = a.V.Row(b, hk, 0);

        for (int e = tid; e < keys * d; e += threads)
        {
            int jj = e / d, c = e - jj * d;
            bool inside = j0 + jj < lk;
            ks[jj * ld + c] = inside ? k[kBase + (long)(j0 + jj) * a.K.StrideL + c] : 0f;
            vs[jj * ld + c] = inside ? v[vBase + (long)(j0 + jj) * a.V.StrideL + c] : 0f;
            dks[jj * rs + c] = 0f;
            dvs[jj * rs + c] = 0f;
        }
        Group.Barrier();

        // Causal: query i sees key j0 only when i >= j0 - shift; earlier query steps contribute nothing.
        int first = a.Causal != 0 ? j0 - a.CausalShift : 0;
        int start = first <= 0 ? 0 : first / steps * steps;
        for (int h = hk * a.Group; h < (hk + 1) * a.Group; h++)
        {
            long qBase = a.Q.Row(b, h, 0), gBase = a.DO.Row(b, h, 0);
            int bh = b * a.Heads + h;
            for (int i0 = start; i0 < lq; i0 += steps)
            {
                for (int e = tid; e < steps * d; e += threads)
                {
                    int rr = e / d, c = e - rr * d;
                    bool inside = i0 + rr < lq;
                    qs[rr * ld + c] = inside ? q[qBase + (long)(i0 + rr) * a.Q.StrideL + c] : 0f;
                    dos[rr * ld + c] = inside ? dout[gBase + (long)(i0 + rr) * a.DO.StrideL + c] : 0f;
                }
                if (tid < steps)
                {
                    bool inside = i0 + tid < lq;
                    rowLse[tid] = inside ? lse[(long)bh * lq + i0 + tid] : float.NegativeInfinity;
                    rowD[tid] = inside ? di[(long)bh * lq + i0 + tid] : 0f;
                }
                Group.Barrier();
                for (int e = tid; e < steps * keys; e += threads)
                {
                    int rr = e / keys, jj = e - rr * keys, i = i0 + rr, j = j0 + jj;
                    float kept = 0f, ds = 0f, l = rowLse[rr];
                    if (j < lk && l != float.NegativeInfinity && Visible(a, i, j))
                    {
                        var g = Probability(qs, rr * ld, dos, rr * ld, ks, jj * ld, vs, jj * ld, l, rowD[rr], MaskAt(mask, a, b, h, i, j), a, b, h, i, j);
                        kept = g.Kept;
                        ds = g.Ds;
                    }
                    pt[rr * keys + jj] = kept;
                    dst[rr * keys + jj] = ds;
                }
                Group.Barrier();
                for (int c = lane; c < d; c += lanes)
                {
                    float gv = dvs[kr * rs + c], gk = dks[kr * rs + c];
                    for (int rr = 0; rr < steps; rr++)
                    {
                        gv += pt[rr * keys + kr] * dos[rr * ld + c];
                        gk += dst[rr * keys + kr] * qs[rr * ld + c];
                    }
                    dvs[kr * rs + c] = gv;
                    dks[kr * rs + c] = gk;
                }
                Group.Barrier();
            }
        }

        if (j0 + kr < lk)
        {
            long kRow = a.DK.Row(b, hk, j0 + kr), vRow = a.DV.Row(b, hk, j0 + kr);
            for (int c = lane; c < d; c += lanes) { dk[kRow + c] = dks[kr * rs + c]; dv[vRow + c] = dvs[kr * rs + c]; }
        }
    }

    /// <summary>
    /// dQ for the R query rows of group Grid.IdxX (Tiles = ceil(Lq/R)), summing over the visible keys in steps
    /// of StepKeys. Launch Tiles·B·H groups of Rows x Lanes threads.
    /// </summary>
    [GpuTypeArguments(typeof(AttentionGpuTiles))]
    public static void QueryGradKernel<T>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dout, ArrayView<float> lse,
        ArrayView<float> di, ArrayView<float> mask, ArrayView<float> dq, AttentionArgs a) where T : struct, IAttentionTiles
    {
        T t = default;
        var qs = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + 1));
        var dos = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + 1));
        var dqs = SharedMemory.Allocate<float>(t.Rows * (t.MaxDim + t.Lanes));
        var ks = SharedMemory.Allocate<float>(t.StepKeys * (t.MaxDim + 1));
        var vs = SharedMemory.Allocate<float>(t.StepKeys * (t.MaxDim + 1));
        var dst = SharedMemory.Allocate<float>(t.Rows * t.StepKeys);
        var rowLse = SharedMemory.Allocate<float>(t.Rows);
        var rowD = SharedMemory.Allocate<float>(t.Rows);
        int rows = t.Rows, lanes = t.Lanes, steps = t.StepKeys, ld = t.MaxDim + 1, rs = t.MaxDim + t.Lanes, threads = rows * lanes;
        int tile = Grid.IdxX % a.Tiles, bh = Grid.IdxX / a.Tiles, b = bh / a.Heads, h = bh % a.Heads;
        int tid = Group.IdxX, r = tid / lanes, lane = tid - r * lanes;
        int d = a.Dim, lq = a.QueryLength, lk = a.KeyLength, i0 = tile * rows;
        long qBase = a.Q.Row(b, h, 0), kBase = a.K.Row(b, h / a.Group, 0), vBase = a.V.Row(b, h / a.Group, 0), gBase = a.DO.Row(b, h, 0);

        for (int e = tid; e < rows * d; e += threads)
        {
            int rr = e / d, c = e - rr * d;
            bool inside = i0 + rr < lq;
            qs[rr * ld + c] = inside ? q[qBase + (long)(i0 + rr) * a.Q.StrideL + c] : 0f;
            dos[rr * ld + c] = inside ? dout[gBase + (long)(i0 + rr) * a.DO.StrideL + c] : 0f;
            dqs[rr * rs + c] = 0f;
        }
        if (tid < rows)
        {
            bool inside = i0 + tid < lq;
            rowLse[tid] = inside ? lse[(long)bh * lq + i0 + tid] : float.NegativeInfinity;
            rowD[tid] = inside ? di[(long)bh * lq + i0 + tid] : 0f;
        }
        Group.Barrier();

        int lastRow = i0 + rows - 1 < lq ? i0 + rows - 1 : lq - 1;
        int lastKey = a.Causal != 0 && lastRow + a.CausalShift < lk - 1 ? lastRow + a.CausalShift : lk - 1;
        for (int j0 = 0; j0 <= lastKey; j0 += steps)
        {
            for (int e = tid; e < steps * d; e += threads)
            {
                int jj = e / d, c = e - jj * d;
                bool inside = j0 + jj < lk;
                ks[jj * ld + c] = inside ? k[kBase + (long)(j0 + jj) * a.K.StrideL + c] : 0f;
                vs[jj * ld + c] = inside ? v[vBase + (long)(j0 + jj) * a.V.StrideL + c] : 0f;
            }
            Group.Barrier();
            for (int e = tid; e < rows * steps; e += threads)
            {
                int rr = e / steps, jj = e - rr * steps, i = i0 + rr, j = j0 + jj;
                float ds = 0f, l = rowLse[rr];
                if (i < lq && j < lk && l != float.NegativeInfinity && Visible(a, i, j))
                    ds = Probability(qs, rr * ld, dos, rr * ld, ks, jj * ld, vs, jj * ld, l, rowD[rr], MaskAt(mask, a, b, h, i, j), a, b, h, i, j).Ds;
                dst[rr * steps + jj] = ds;
            }
            Group.Barrier();
            for (int c = lane; c < d; c += lanes)
            {
                float g = dqs[r * rs + c];
                for (int jj = 0; jj < steps; jj++) g += dst[r * steps + jj] * ks[jj * ld + c];
                dqs[r * rs + c] = g;
            }
            Group.Barrier();
        }

        if (i0 + r < lq)
        {
            long row = a.DQ.Row(b, h, i0 + r);
            for (int c = lane; c < d; c += lanes) dq[row + c] = dqs[r * rs + c];
        }
    }
}
