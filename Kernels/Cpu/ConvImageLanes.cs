// ConvImageLanes: the direct float32 convolution of ConvDirect.cs with sixteen images side by side, one in each lane of
// a Vector512, for small outputs (ResNet-20's 16x16 and 8x8 stages), where ConvDirect's flattened rows compute
// positions they throw away (at 8x8 outputs a row of 8 runs on a padded width of 9, and 72 positions round up to 80:
// 64 kept) and read their taps from unaligned addresses; here every load is one whole aligned vector.
//
// Algorithm: a group of 16 images n0 .. n0 + 15 is staged as xs[c][i][j][l] = x[n0 + l, c, i − ph, j − pw] over the
// padded image (Hp = H + 2·ph rows of Wp = W + 2·pw positions, zero outside the image and in lanes past N), so one
// position of one channel is one vector holding all sixteen images. Output position (p, q) reads tap (r, t) at position
// (p·sh + r)·Wp + q·sw + t, a fixed offset from the position's own, for every image at once:
//   ys[k][p][q][l] = Σ_c Σ_r Σ_t w[k, c, r, t] · xs[c][(p·sh + r)·Wp + q·sw + t][l]
// and only the P·Q real outputs are computed, for stride 1 and stride 2 alike (no phases: a stride is a step between
// the vectors a tile loads). The register tile is ConvDirect's own (DirectTile4x64 with a step between its four
// vectors): 4 output channels x 4 positions (q .. q + 3 of one output row) x 16 images, 16 accumulators; per channel
// and tap it loads 4 vectors and broadcasts 4 weights (packed by DirectPack). The rest of a row runs DirectTile4x16,
// one position at a time. Backward data for stride 1 is the same kernel on dy with the flipped weights (ConvDirect's
// DataShape).
// Backward weights, with dys[k][p][q][l] = dy[n0 + l, k, p, q]:
//   dw[k, c, r, t] = Σ_l Σ_p Σ_q dys[k][p][q][l] · xs[c][(p·sh + r)·Wp + q·sw + t][l]
// an 8 output channels x 3 taps tile (24 accumulators, 8 + 3 loads per 24 FMAs) runs over one group's positions, and
// its lanes are summed at the end (the sum over the group's images) by folding the 24 vectors into two (Sum16) and
// adding them to the run's sums in the tile's order, which go into dw once at the end: at 8x8 outputs a tile has only
// 64 positions, and 24 separate lane reductions plus scattered adds had cost a fifth of its time.
// Transposes: images move into and out of the lanes 8 columns x 16 images at a time, as two 8x8 transposes in one set
// of registers (Transpose8x8Halves); scalar copies were 6% of the 8x8 stage's time.
// Threads: runs of whole groups handed out as threads ask (as ConvDirect.cs); each thread owns its staged group and
// output, each run a dw partial, added up in run order.
// FLOPs: 2·N'·K·C·R·S·P·Q with N' = N rounded up to 16 (the empty lanes of a last partial group). Bytes: x, y once each
// plus the staged copies. Bound: FMA throughput.
// Used by ConvDirect.cs's drivers when LanesApply.
// Reference: Conv2d.ForwardReference / BackwardReference (float64 loops, ConvReference.cs), compared in
// Tests/Kernels/ConvDirectTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    private const int Lanes = 16, LanesTileQ = 4;

    // Outputs of at most this many positions per image take the lane layout (when there is at least one whole group of
    // images). Measured on ResNet-20's layers, one thread, batch 128, against the flattened rows: at 8x8 outputs forward
    // 85 -> 106 GFLOP/s, weight gradient 74 -> 105; at 16x16 (the rows waste 6% there) forward 100 -> 101, weights 94 ->
    // 101, the stride-2 layer into it 75 -> 83 forward and 69 -> 80 weights; at 32x32 the lanes lose (92 against 98:
    // a group's padded images no longer fit in L2).
    private const int LanesMaxOutputs = 256;

    internal static bool LanesApply(in Conv2dShape s) => Vector512.IsHardwareAccelerated && s.N >= Lanes && s.P * s.Q <= LanesMaxOutputs;

    private static int LanesGroups(in Conv2dShape s) => (s.N + Lanes - 1) / Lanes;
    private static int LanesPaddedWidth(in Conv2dShape s) => s.W + 2 * s.PadW;
    private static long LanesChannel(in Conv2dShape s) => (long)(s.H + 2 * s.PadH) * LanesPaddedWidth(s) * Lanes;
    // The staged group: C channels, plus two positions of slack (the weight tile's taps past S read on along the row).
    private static long LanesIn(in Conv2dShape s) => s.C * LanesChannel(s) + 2 * Lanes;
    // The group's output (or dy): K rounded up to 8 rows, the weight tile's height; rows past K stay zero.
    private static long LanesOut(in Conv2dShape s) => (long)(s.K + 7) / 8 * 8 * s.P * s.Q * Lanes;
    private static long LanesWorkspace(in Conv2dShape s) => DirectPacked(s) + WorkerPool.ThreadCount * (LanesIn(s) + LanesOut(s));
    // The weight gradient's per-thread sums in the tile's order: [K/8][C][R][ceil(S/3)][8 x 3].
    private static long LanesTileSums(in Conv2dShape s) => (long)(s.K + 7) / 8 * s.C * s.R * ((s.S + 2) / 3) * 24;
    private static long LanesWeightsWorkspace(in Conv2dShape s) => WorkerPool.ThreadCount * LanesWeightsScratch(s) + DirectMaxChunks * s.WLength;
    private static long LanesWeightsScratch(in Conv2dShape s) => LanesIn(s) + LanesOut(s) + LanesTileSums(s);

    // taps[r·S + t] = (r·Wp + t)·16: where tap (r, t) of an output position reads, in floats, from the position's own.
    private static void LanesTaps(in Conv2dShape s, int* taps)
    {
        int wp = LanesPaddedWidth(s);
        for (int r = 0; r < s.R; r++)
            for (int t = 0; t < s.S; t++)
                taps[r * s.S + t] = (r * wp + t) * Lanes;
    }

    // Forward (flip = false) or stride-1 backward data (flip = true, s the DataShape), as DirectRun.
    private static void LanesRun(float* x, float* w, float* bias, float* y, in Conv2dShape s, bool flip, Span<float> workspace)
    {
        fixed (float* ws = workspace)
        {
            int t = WorkerPool.ThreadCount;
            int* ready = stackalloc int[t];
            new Span<int>(ready, t).Clear();
            var a = new DirectArgs { X = x, Bias = bias, Y = y, S = s, Packed = ws, Ws = ws + DirectPacked(s), Ready = ready };
            DirectPack(w, a.Packed, s, flip);
            a.Items = DirectItems(s, LanesGroups(s));
            WorkerPool.For(a.Items, &LanesSlot, (nint)(&a));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LanesSlot(int item, nint state)
    {
        ref DirectArgs a = ref *(DirectArgs*)state;
        ref readonly Conv2dShape s = ref a.S;
        int P = s.P, Q = s.Q, pq = P * Q, taps = s.R * s.S, crs = s.C * taps, cs = (int)LanesChannel(s);
        int step = s.StrideW * Lanes, rowStep = s.StrideH * LanesPaddedWidth(s) * Lanes, ldy = pq * Lanes;
        int thread = WorkerPool.CurrentSlot;
        float* xs = a.Ws + thread * (LanesIn(s) + LanesOut(s)), ys = xs + LanesIn(s);
        int* tap = stackalloc int[taps];
        LanesTaps(s, tap);
        int groups = LanesGroups(s);
        for (int g = (int)((long)item * groups / a.Items), last = (int)((long)(item + 1) * groups / a.Items); g < last; g++)
        {
            int n0 = g * Lanes, images = Math.Min(Lanes, s.N - n0);
            // The padding is never written, so one clear per thread serves every whole group; a partial group clears the
            // lanes a whole one left behind.
            if (a.Ready[thread] == 0 || images < Lanes) { new Span<float>(xs, (int)LanesIn(s)).Clear(); a.Ready[thread] = 1; }
            LanesStage(a.X + (long)n0 * s.C * s.H * s.W, images, xs, s.C, s.H, s.W, s.PadH, s.PadW);
            for (int p = 0; p < P; p++)
            {
                float* row = xs + (long)p * rowStep, yrow = ys + (long)p * Q * Lanes;
                int q = 0;
                for (; q + LanesTileQ <= Q; q += LanesTileQ)
                    for (int kb = 0; kb < s.K; kb += DirectTileK)
                        DirectTile4x64(row + q * step, a.Packed + (long)kb * crs, yrow + (long)kb * ldy + q * Lanes, ldy, s.C, cs, tap, taps, step);
                for (; q < Q; q++)
                    for (int kb = 0; kb < s.K; kb += DirectTileK)
                        DirectTile4x16(row + q * step, a.Packed + (long)kb * crs, yrow + (long)kb * ldy + q * Lanes, ldy, s.C, cs, tap, taps);
            }
            LanesUnstage(ys, images, a.Y + (long)n0 * s.K * pq, s.K, pq, a.Bias);
        }
    }

    // xs[c][(i + ph)·Wp + pw + j][l] = x[l, c, i, j] for the group's first `images` images (x at the group's first image);
    // the padding and the lanes past `images` are left as they are (zero). A whole group moves 8 columns at a time
    // through Transpose8x8Halves; the rest of a row, and a partial group, value by value.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LanesStage(float* x, int images, float* xs, int channels, int h, int w, int ph, int pw)
    {
        int wp = w + 2 * pw, hw = h * w, whole = images == Lanes ? w / 8 * 8 : 0;
        long cs = (long)(h + 2 * ph) * wp * Lanes, image = (long)channels * hw;
        for (int c = 0; c < channels; c++)
            for (int i = 0; i < h; i++)
            {
                float* dst = xs + c * cs + ((long)(i + ph) * wp + pw) * Lanes;
                float* src = x + (long)c * hw + (long)i * w;
                for (int j0 = 0; j0 < whole; j0 += 8)
                {
                    // Row i of image l and of image l + 8 side by side, then transposed: vector j holds column j0 + j of all 16.
                    float* s0 = src + j0, s8 = s0 + 8 * image;
                    var r0 = Vector512.Create(Vector256.Load(s0), Vector256.Load(s8)); var r1 = Vector512.Create(Vector256.Load(s0 + image), Vector256.Load(s8 + image));
                    var r2 = Vector512.Create(Vector256.Load(s0 + 2 * image), Vector256.Load(s8 + 2 * image)); var r3 = Vector512.Create(Vector256.Load(s0 + 3 * image), Vector256.Load(s8 + 3 * image));
                    var r4 = Vector512.Create(Vector256.Load(s0 + 4 * image), Vector256.Load(s8 + 4 * image)); var r5 = Vector512.Create(Vector256.Load(s0 + 5 * image), Vector256.Load(s8 + 5 * image));
                    var r6 = Vector512.Create(Vector256.Load(s0 + 6 * image), Vector256.Load(s8 + 6 * image)); var r7 = Vector512.Create(Vector256.Load(s0 + 7 * image), Vector256.Load(s8 + 7 * image));
                    Transpose8x8Halves(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                    float* d = dst + j0 * Lanes;
                    r0.Store(d); r1.Store(d + 16); r2.Store(d + 32); r3.Store(d + 48); r4.Store(d + 64); r5.Store(d + 80); r6.Store(d + 96); r7.Store(d + 112);
                }
                float* srcl = src;
                for (int l = 0; l < images; l++, srcl += image)
                    for (int j = images == Lanes ? whole : 0; j < w; j++) dst[j * Lanes + l] = srcl[j];
            }
    }

    // y[l, k, j] = ys[k][j][l] (+ bias[k]) for the group's first `images` images and k < K, j < P·Q: the transposes of
    // LanesStage run backwards (vector j of 8 holds position j of all 16 images; transposed, half l of vector l holds 8
    // positions of image l, half 2 those of image l + 8).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LanesUnstage(float* ys, int images, float* y, int channels, int pq, float* bias)
    {
        int whole = images == Lanes ? pq / 8 * 8 : 0;
        long image = (long)channels * pq;
        for (int k = 0; k < channels; k++)
        {
            float b = bias == null ? 0f : bias[k];
            var vb = Vector512.Create(b);
            float* src = ys + (long)k * pq * Lanes, dst = y + (long)k * pq;
            for (int j0 = 0; j0 < whole; j0 += 8)
            {
                float* v = src + j0 * Lanes;
                var r0 = Vector512.Load(v); var r1 = Vector512.Load(v + 16); var r2 = Vector512.Load(v + 32); var r3 = Vector512.Load(v + 48);
                var r4 = Vector512.Load(v + 64); var r5 = Vector512.Load(v + 80); var r6 = Vector512.Load(v + 96); var r7 = Vector512.Load(v + 112);
                Transpose8x8Halves(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                float* d0 = dst + j0, d8 = d0 + 8 * image;
                StoreHalves(r0 + vb, d0, d8); StoreHalves(r1 + vb, d0 + image, d8 + image);
                StoreHalves(r2 + vb, d0 + 2 * image, d8 + 2 * image); StoreHalves(r3 + vb, d0 + 3 * image, d8 + 3 * image);
                StoreHalves(r4 + vb, d0 + 4 * image, d8 + 4 * image); StoreHalves(r5 + vb, d0 + 5 * image, d8 + 5 * image);
                StoreHalves(r6 + vb, d0 + 6 * image, d8 + 6 * image); StoreHalves(r7 + vb, d0 + 7 * image, d8 + 7 * image);
            }
            for (int l = 0; l < images; l++)
            {
                float* dl = dst + l * image;
                for (int j = whole; j < pq; j++) dl[j] = src[j * Lanes + l] + b;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreHalves(Vector512<float> v, float* lower, float* upper) { v.GetLower().Store(lower); v.GetUpper().Store(upper); }

    // Transposes the two 8x8 blocks held in r0 .. r7 at once: row i of the first block is the lower half of ri, of the
    // second the upper half; afterwards the lower half of rj is column j of the first block, the upper half of the
    // second (unpacks and shuffles within 128-bit blocks, then two-source permutes across them).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8Halves(ref Vector512<float> r0, ref Vector512<float> r1, ref Vector512<float> r2, ref Vector512<float> r3,
        ref Vector512<float> r4, ref Vector512<float> r5, ref Vector512<float> r6, ref Vector512<float> r7)
    {
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1); var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5); var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        // Per 128-bit block: u0 column 0 (block 1: column 4) of rows 0-3, u1 column 1, u2 column 2, u3 column 3; u4-u7 of rows 4-7.
        var u0 = Avx512F.Shuffle(t0, t2, 0x44); var u1 = Avx512F.Shuffle(t0, t2, 0xEE); var u2 = Avx512F.Shuffle(t1, t3, 0x44); var u3 = Avx512F.Shuffle(t1, t3, 0xEE);
        var u4 = Avx512F.Shuffle(t4, t6, 0x44); var u5 = Avx512F.Shuffle(t4, t6, 0xEE); var u6 = Avx512F.Shuffle(t5, t7, 0x44); var u7 = Avx512F.Shuffle(t5, t7, 0xEE);
        var lo = Vector512.Create(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        var hi = Vector512.Create(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        r0 = Avx512F.PermuteVar16x32x2(u0, lo, u4); r4 = Avx512F.PermuteVar16x32x2(u0, hi, u4);
        r1 = Avx512F.PermuteVar16x32x2(u1, lo, u5); r5 = Avx512F.PermuteVar16x32x2(u1, hi, u5);
        r2 = Avx512F.PermuteVar16x32x2(u2, lo, u6); r6 = Avx512F.PermuteVar16x32x2(u2, hi, u6);
        r3 = Avx512F.PermuteVar16x32x2(u3, lo, u7); r7 = Avx512F.PermuteVar16x32x2(u3, hi, u7);
    }

    // dw (overwritten) from dy [N, K, P, Q] and x [N, C, H, W]; s the forward shape (stride 1 or 2).
    private static void LanesWeights(float* dy, float* x, float* dw, in Conv2dShape s, Span<float> workspace)
    {
        fixed (float* ws = workspace)
        {
            int t = WorkerPool.ThreadCount;
            int* ready = stackalloc int[t];
            new Span<int>(ready, t).Clear();
            var a = new DirectArgs { X = x, Y = dy, S = s, Ws = ws, Ready = ready };
            a.Items = DirectItems(s, LanesGroups(s));
            WorkerPool.For(a.Items, &LanesWeightsSlot, (nint)(&a));
            SumPartials(LanesPartial(ref a, 0), a.Items, s.WLength, dw);
        }
    }

    private static float* LanesPartial(ref DirectArgs a, int item) => a.Ws + WorkerPool.ThreadCount * LanesWeightsScratch(a.S) + item * a.S.WLength;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LanesWeightsSlot(int item, nint state)
    {
        ref DirectArgs a = ref *(DirectArgs*)state;
        ref readonly Conv2dShape s = ref a.S;
        int P = s.P, Q = s.Q, pq = P * Q, rs = s.R * s.S, cs = (int)LanesChannel(s), ldk = pq * Lanes;
        int step = s.StrideW * Lanes, rowStep = s.StrideH * LanesPaddedWidth(s) * Lanes;
        int thread = WorkerPool.CurrentSlot;
        float* xs = a.Ws + thread * LanesWeightsScratch(s), dys = xs + LanesIn(s), sums = dys + LanesOut(s), dw = LanesPartial(ref a, item);
        int* tap = stackalloc int[rs];
        LanesTaps(s, tap);
        new Span<float>(sums, (int)LanesTileSums(s)).Clear();
        int groups = LanesGroups(s);
        for (int g = (int)((long)item * groups / a.Items), last = (int)((long)(item + 1) * groups / a.Items); g < last; g++)
        {
            int n0 = g * Lanes, images = Math.Min(Lanes, s.N - n0);
            // As LanesSlot; dy's rows past K stay 0 too.
            if (a.Ready[thread] == 0 || images < Lanes)
            {
                new Span<float>(xs, (int)LanesIn(s)).Clear();
                new Span<float>(dys, (int)LanesOut(s)).Clear();
                a.Ready[thread] = 1;
            }
            LanesStage(a.X + (long)n0 * s.C * s.H * s.W, images, xs, s.C, s.H, s.W, s.PadH, s.PadW);
            LanesStage(a.Y + (long)n0 * s.K * pq, images, dys, s.K, P, Q, 0, 0);
            float* tile = sums;
            for (int kb = 0; kb < s.K; kb += 8)
                for (int c = 0; c < s.C; c++)
                    for (int r = 0; r < s.R; r++)
                        for (int t0 = 0; t0 < s.S; t0 += 3, tile += 24)
                        {
                            // A tap past S reads on along the row (into the slack at the very end); its sums are dropped.
                            float* xc = xs + (long)c * cs + tap[r * s.S + t0];
                            LanesWeightTile8x3(dys + (long)kb * ldk, ldk, xc, xc + Lanes, xc + 2 * Lanes, P, Q, rowStep, step, tile);
                        }
        }
        // The tile-ordered sums into the dw partial.
        float* src = sums;
        for (int kb = 0; kb < s.K; kb += 8)
            for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                    for (int t0 = 0; t0 < s.S; t0 += 3, src += 24)
                        for (int i = 0; i < 8 && kb + i < s.K; i++)
                            for (int dt = 0; dt < 3 && t0 + dt < s.S; dt++)
                                dw[((long)(kb + i) * s.C + c) * rs + r * s.S + t0 + dt] = src[i * 3 + dt];
    }

    // sums[i·3 + d] += Σ over the P x Q output positions and the 16 lanes of dy[i·ldk + j] · x_d[j's input position] for 8
    // rows i of dys (position j = p·Q + q, 16 floats each) and the three taps x_0 = x, x_1 = xb, x_2 = xc (position (p, q)
    // at p·rowStep + q·step from each).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LanesWeightTile8x3(float* dy, int ldk, float* x, float* xb, float* xc, int P, int Q, int rowStep, int step, float* sums)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        Vector512<float> a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        float* d1 = dy + ldk, d2 = d1 + ldk, d3 = d2 + ldk, d4 = d3 + ldk, d5 = d4 + ldk, d6 = d5 + ldk, d7 = d6 + ldk;
        int o = 0;
        for (int p = 0; p < P; p++)
        {
            int ox = p * rowStep;
            for (int q = 0; q < Q; q++, o += Lanes, ox += step)
            {
                var x0 = Vector512.Load(x + ox); var x1 = Vector512.Load(xb + ox); var x2 = Vector512.Load(xc + ox);
                var v = Vector512.Load(dy + o);
                a00 = Vector512.FusedMultiplyAdd(v, x0, a00); a01 = Vector512.FusedMultiplyAdd(v, x1, a01); a02 = Vector512.FusedMultiplyAdd(v, x2, a02);
                v = Vector512.Load(d1 + o);
                a10 = Vector512.FusedMultiplyAdd(v, x0, a10); a11 = Vector512.FusedMultiplyAdd(v, x1, a11); a12 = Vector512.FusedMultiplyAdd(v, x2, a12);
                v = Vector512.Load(d2 + o);
                a20 = Vector512.FusedMultiplyAdd(v, x0, a20); a21 = Vector512.FusedMultiplyAdd(v, x1, a21); a22 = Vector512.FusedMultiplyAdd(v, x2, a22);
                v = Vector512.Load(d3 + o);
                a30 = Vector512.FusedMultiplyAdd(v, x0, a30); a31 = Vector512.FusedMultiplyAdd(v, x1, a31); a32 = Vector512.FusedMultiplyAdd(v, x2, a32);
                v = Vector512.Load(d4 + o);
                a40 = Vector512.FusedMultiplyAdd(v, x0, a40); a41 = Vector512.FusedMultiplyAdd(v, x1, a41); a42 = Vector512.FusedMultiplyAdd(v, x2, a42);
                v = Vector512.Load(d5 + o);
                a50 = Vector512.FusedMultiplyAdd(v, x0, a50); a51 = Vector512.FusedMultiplyAdd(v, x1, a51); a52 = Vector512.FusedMultiplyAdd(v, x2, a52);
                v = Vector512.Load(d6 + o);
                a60 = Vector512.FusedMultiplyAdd(v, x0, a60); a61 = Vector512.FusedMultiplyAdd(v, x1, a61); a62 = Vector512.FusedMultiplyAdd(v, x2, a62);
                v = Vector512.Load(d7 + o);
                a70 = Vector512.FusedMultiplyAdd(v, x0, a70); a71 = Vector512.FusedMultiplyAdd(v, x1, a71); a72 = Vector512.FusedMultiplyAdd(v, x2, a72);
            }
        }
        // sums[m] += the lanes of accumulator m = i·3 + d summed; Sum16 returns lane 4k + j from its argument 4j + k.
        var z = Vector512<float>.Zero;
        var lo = Sum16(a00, a11, a22, a40, a01, a12, a30, a41, a02, a20, a31, a42, a10, a21, a32, a50);
        var hi = Sum16(a51, a62, z, z, a52, a70, z, z, a60, a71, z, z, a61, a72, z, z);
        (Vector512.Load(sums) + lo).Store(sums);
        (Vector256.Load(sums + 16) + hi.GetLower()).Store(sums + 16);
    }

    // The sixteen lane sums of v0 .. v15 in one vector, by folding pairs of vectors into one (45 shuffles and adds in
    // place of sixteen separate reductions): lane 4k + j of the result is the sum of v(4j + k).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Sum16(Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3,
        Vector512<float> v4, Vector512<float> v5, Vector512<float> v6, Vector512<float> v7, Vector512<float> v8, Vector512<float> v9,
        Vector512<float> v10, Vector512<float> v11, Vector512<float> v12, Vector512<float> v13, Vector512<float> v14, Vector512<float> v15)
    {
        var q0 = Quarters(Halves(v0, v1), Halves(v2, v3)); var q1 = Quarters(Halves(v4, v5), Halves(v6, v7));
        var q2 = Quarters(Halves(v8, v9), Halves(v10, v11)); var q3 = Quarters(Halves(v12, v13), Halves(v14, v15));
        return Singles(Pairs(q0, q1), Pairs(q2, q3));
    }

    // [a.q0 + a.q2, a.q1 + a.q3, b.q0 + b.q2, b.q1 + b.q3] (q: 128-bit blocks): two 8-lane partials per source.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Halves(Vector512<float> a, Vector512<float> b) => Avx512F.Shuffle4x128(a, b, 0x44) + Avx512F.Shuffle4x128(a, b, 0xEE);

    // Of two Halves results (sources s0, s1 and s2, s3): block m holds a 4-lane partial of source m.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Quarters(Vector512<float> a, Vector512<float> b) => Avx512F.Shuffle4x128(a, b, 0x88) + Avx512F.Shuffle4x128(a, b, 0xDD);

    // Within each block: lanes 0 and 2 a partial of a's source, lanes 1 and 3 of b's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Pairs(Vector512<float> a, Vector512<float> b) => Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);

    // Within each block: a's two sources, then b's, each fully summed.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Singles(Vector512<float> a, Vector512<float> b)
        => Avx512F.UnpackLow(a.AsDouble(), b.AsDouble()).AsSingle() + Avx512F.UnpackHigh(a.AsDouble(), b.AsDouble()).AsSingle();
}
