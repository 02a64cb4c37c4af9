// ConvDirectStridedData: the backward-data pass of a stride-2 convolution (a transposed stride-2 convolution), direct,
// by the four row/column parity phases of dx, for the shapes whose forward runs through ConvDirect.cs's phases.
//
// Algorithm: the forward pass reads x[c, 2p + r − ph, 2q + t − pw] for output (p, q), so
//   dx[c, i, j] = Σ_k Σ_{r,t} w[k, c, r, t] · dy[k, p, q]   over the taps with 2p + r = i + ph and 2q + t = j + pw.
// Only taps with r ≡ i + ph and t ≡ j + pw (mod 2) reach (i, j). Writing i + ph = 2u + α and j + pw = 2v + β
// (α, β the parities), r = α + 2ρ and t = β + 2τ, the pixel is
//   dx[c, i, j] = Σ_k Σ_{ρ,τ} w[k, c, α + 2ρ, β + 2τ] · dy[k, u − ρ, v − τ]
// a stride-1 correlation of dy with the taps of phase (α, β): for a 3x3 kernel 2x2, 2x1, 1x2 and 1x1 taps, R·S in all,
// so no tap is computed twice and none is a zero of an upsampled dy (a transposed convolution run as a stride-1
// convolution over dy with zeros inserted would spend three quarters of its products on them). dy is staged once per
// image with one zero row above, zero rows below and one zero column before each row (Wq = Q + 1 apart, the column
// shared as the previous row's right padding, as in ConvDirect.cs); output (u, v) of a phase lies at u·Wq + v and its
// tap (ρ, τ) at the constant offset (1 − ρ)·Wq + (1 − τ). The register tiles of ConvDirect.cs (4 channels x 64 or 16
// positions, a tap-offset table) then run each phase over its rows of u with that phase's packed weights. Each dx row
// interleaves its two column phases (MergeColumns, two-source permutes: the inverse of SplitColumns).
// Threads: runs of whole images handed out as threads ask (as ConvDirect.cs); each thread owns its staged dy and phase
// outputs.
// FLOPs: 2·N·K·C·R·S·P·Q plus the thrown-away column of each row. Bytes: dy and dx once each, a staged copy of dy.
// Bound: FMA throughput and L1 loads, as the forward tiles.
// Reference: Conv2d.BackwardReference (float64 loops, ConvReference.cs), compared in Tests/Kernels/ConvDirectTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    // One parity phase (α, β) of dx: its taps (in the packed weights and the offset table, from First, Count of them)
    // and the range of phase rows u and columns v that fall inside dx.
    private struct DxPhase
    {
        public int Alpha, Beta, First, Count, ULo, UHi, VLo, VHi;
        public readonly bool Empty => UHi < ULo || VHi < VLo;
    }

    // Phase row/column stride of staged dy: Q plus the shared zero column.
    private static int StridedDataRowStride(in Conv2dShape s) => s.Q + 1;
    // One channel of staged dy: a zero row, P rows of dy, then two zero rows (a kept position reads at most one row past
    // dy, and column Q + 1 of that row is the next row's zero column).
    private static int StridedDataPlane(in Conv2dShape s) => (s.P + 3) * StridedDataRowStride(s);
    // Phase output length: at most P + 1 rows of u (the range of one parity in H), rounded up to whole vectors.
    private static int StridedDataPhaseLength(in Conv2dShape s) => ((s.P + 1) * StridedDataRowStride(s) + DirectVec - 1) / DirectVec * DirectVec;
    private static long StridedDataStaged(in Conv2dShape s) => (long)s.K * StridedDataPlane(s) + DirectTile + StridedDataRowStride(s) + 16;
    private static long StridedDataOut(in Conv2dShape s) => 4L * DirectRoundK(s.C) * StridedDataPhaseLength(s);

    // Workspace of the stride-2 backward data: the packed weights of the four phases, then per thread staged dy and the
    // four phase outputs.
    private static long DirectStridedDataWorkspace(in Conv2dShape s)
        => (long)DirectRoundK(s.C) * s.K * s.R * s.S + WorkerPool.ThreadCount * (StridedDataStaged(s) + StridedDataOut(s));

    // Phase (α, β) of a stride-2 shape: the taps r = α + 2ρ < R, t = β + 2τ < S and the rows i = 2u + α − ph in [0, H)
    // (columns likewise).
    private static DxPhase StridedDataPhase(in Conv2dShape s, int alpha, int beta, int first)
    {
        static (int Lo, int Hi) Range(int size, int pad, int parity)
        {
            int lo = ((parity - pad) % 2 + 2) % 2, hi = size - 1 - (((size - 1 + pad - parity) % 2 + 2) % 2);   // first and last index of the parity
            return ((lo + pad - parity) / 2, hi < lo ? (lo + pad - parity) / 2 - 1 : (hi + pad - parity) / 2);
        }
        var (ulo, uhi) = Range(s.H, s.PadH, alpha);
        var (vlo, vhi) = Range(s.W, s.PadW, beta);
        int count = ((s.R - alpha + 1) / 2) * ((s.S - beta + 1) / 2);
        return new DxPhase { Alpha = alpha, Beta = beta, First = first, Count = count, ULo = ulo, UHi = uhi, VLo = vlo, VHi = vhi };
    }

    [InlineArray(4)]
    private struct DxPhases { private DxPhase _first; }

    private struct StridedDataArgs
    {
        public float* Dy, Dx, Packed, Ws;
        public int* Taps;
        public DxPhases Phases;   // indexed α·2 + β
        public Conv2dShape S;
        public int* Ready;   // per thread: its staged dy has its zero rows and columns
        public int Items;    // work items (runs of images)
    }

    // dx (overwritten) from dy [N, K, P, Q] and w [K, C, R, S]; s the forward shape (stride 2, DirectStridedShape).
    private static void DirectStridedData(float* dy, float* w, float* dx, in Conv2dShape s, Span<float> workspace)
    {
        int wq = StridedDataRowStride(s), rs = s.R * s.S, cr = DirectRoundK(s.C);
        int* taps = stackalloc int[rs];
        var phases = new DxPhases();
        fixed (float* ws = workspace)
        {
            // packed[phase block][cb][k][e][i] = w[k, cb + i, r_e, t_e] (0 past C): each phase's weights in the tile's order.
            int first = 0;
            for (int ph = 0; ph < 4; ph++)
            {
                var d = phases[ph] = StridedDataPhase(s, ph >> 1, ph & 1, first);
                float* packed = ws + (long)cr * s.K * first;
                int e = 0;
                for (int r = d.Alpha; r < s.R; r += 2)
                    for (int t = d.Beta; t < s.S; t += 2, e++)
                    {
                        taps[first + e] = (1 - (r - d.Alpha) / 2) * wq + (1 - (t - d.Beta) / 2);
                        for (int cb = 0; cb < cr; cb += DirectTileK)
                            for (int k = 0; k < s.K; k++)
                                for (int i = 0; i < DirectTileK; i++)
                                    packed[(((long)cb * s.K + k * DirectTileK) * d.Count) + e * DirectTileK + i] =
                                        cb + i < s.C ? w[(((long)k * s.C + cb + i) * s.R + r) * s.S + t] : 0f;
                    }
                first += d.Count;
            }
            var a = new StridedDataArgs { Dy = dy, Dx = dx, Packed = ws, Ws = ws + (long)cr * s.K * rs, Taps = taps, S = s, Phases = phases };
            int threads = WorkerPool.ThreadCount;
            int* ready = stackalloc int[threads];
            new Span<int>(ready, threads).Clear();
            a.Ready = ready;
            a.Items = DirectItems(s, s.N);
            WorkerPool.For(a.Items, &StridedDataSlot, (nint)(&a));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StridedDataSlot(int item, nint state)
    {
        ref StridedDataArgs a = ref *(StridedDataArgs*)state;
        ref readonly Conv2dShape s = ref a.S;
        int wq = StridedDataRowStride(s), plane = StridedDataPlane(s), len = StridedDataPhaseLength(s), cr = DirectRoundK(s.C);
        int P = s.P, Q = s.Q, H = s.H, W = s.W, pq = P * Q, hw = H * W;
        int thread = WorkerPool.CurrentSlot;
        float* dyp = a.Ws + thread * (StridedDataStaged(s) + StridedDataOut(s)), outs = dyp + StridedDataStaged(s);
        // The zero rows and columns of staged dy, and the slack past its last channel, are written once per thread:
        // images only overwrite the dy columns.
        if (a.Ready[thread] == 0) { new Span<float>(dyp, (int)StridedDataStaged(s)).Clear(); a.Ready[thread] = 1; }
        DxPhases phases = a.Phases;
        for (int n = (int)((long)item * s.N / a.Items), last = (int)((long)(item + 1) * s.N / a.Items); n < last; n++)
        {
            float* dyn = a.Dy + (long)n * s.K * pq;
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    CopyRow(dyn + (long)k * pq + p * Q, dyp + (long)k * plane + (p + 1) * wq + 1, Q);
            for (int ph = 0; ph < 4; ph++)
            {
                DxPhase d = phases[ph];
                float* y = outs + (long)ph * cr * len;
                if (d.Empty) continue;
                // Phase rows ULo..UHi at positions u·Wq + v, computed from position ULo·Wq on (y row u − ULo).
                int count = ((d.UHi - d.ULo + 1) * wq + DirectVec - 1) / DirectVec * DirectVec;
                float* x = dyp + (long)d.ULo * wq, packed = a.Packed + (long)cr * s.K * d.First;
                int* tap = a.Taps + d.First;
                DirectTiles(x, packed, y, len, count, s.C, s.K, plane, tap, d.Count);
            }
            // dx row i = 2u + α − ph interleaves its even columns (phase β_e, column m + oe) and odd ones (β_o, m + oo).
            float* dxn = a.Dx + (long)n * s.C * hw;
            int be = s.PadW & 1, bo = 1 - be, oe = (s.PadW - be) / 2, oo = (1 + s.PadW - bo) / 2;
            for (int c = 0; c < s.C; c++)
                for (int i = 0; i < H; i++)
                {
                    int alpha = (i + s.PadH) & 1, u = (i + s.PadH - alpha) / 2;
                    DxPhase de = phases[alpha * 2 + be], dd = phases[alpha * 2 + bo];
                    float* even = outs + ((long)(alpha * 2 + be) * cr + c) * len + (u - de.ULo) * wq + oe;
                    float* odd = outs + ((long)(alpha * 2 + bo) * cr + c) * len + (u - dd.ULo) * wq + oo;
                    MergeColumns(even, odd, dxn + ((long)c * H + i) * W, W);
                }
        }
    }

    // row[2m] = even[m], row[2m + 1] = odd[m] for 2m, 2m + 1 < w.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeColumns(float* even, float* odd, float* row, int w)
    {
        int m = 0;
        if (Avx512F.IsSupported)
        {
            var low = Vector512.Create(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            var high = low + Vector512.Create(8);
            for (; 2 * m + 32 <= w; m += 16)
            {
                var e = Vector512.Load(even + m); var o = Vector512.Load(odd + m);
                Avx512F.PermuteVar16x32x2(e, low, o).Store(row + 2 * m);
                Avx512F.PermuteVar16x32x2(e, high, o).Store(row + 2 * m + 16);
            }
        }
        for (; 2 * m < w; m++)
        {
            row[2 * m] = even[m];
            if (2 * m + 1 < w) row[2 * m + 1] = odd[m];
        }
    }
}
