// ConvDirect: direct float32 convolution for stride-1, undilated, ungrouped kernels (ResNet's 3x3 padding-1 layers),
// forward, backward data and backward weights, with no im2col matrix; and for stride-2 3x3 kernels (the downsampling
// layers), forward and backward weights (their backward data: ConvDirectStridedData.cs).
//
// Algorithm: each image's channels are copied once into a zero-padded buffer xp[c] of Hp x Wp (Hp = H + 2·ph,
// Wp = W + pw: the pw zeros between two rows pad both, see DirectRowStride). With the output laid out on the padded
// width too, y'[k, j] for j = p·Wp + q, every output is a 1-d correlation of the flattened buffer:
//   y'[k, j] = Σ_c Σ_r Σ_t w[k, c, r, t] · xp[c, j + r·Wp + t]
// so the taps are plain offsets r·Wp + t and j runs over P·Wp contiguous positions without row ends (the q ≥ Q
// columns it also computes are thrown away when y' is copied into y, with the bias). The hot loop keeps a tile of
// 4 output channels x 64 positions (16 Vector512 accumulators) and, per channel and tap, loads 4 vectors of xp and
// broadcasts 4 weights: 16 FMAs per 8 loads, where the im2col GEMM with K = 16 output channels ran a skinny product
// after writing R·S copies of the image. Weights are packed first as [K/4][C][R][S][4] (zero rows pad K to a multiple
// of 4), so the tile reads them in order.
// Backward data is the same kernel: for stride 1, dx = conv(dy, w'), w'[c, k, r, t] = w[k, c, R−1−r, S−1−t], with
// padding R−1−ph, S−1−pw, which gives back H x W; only the packing differs.
// Backward weights correlates the same buffers: with dy' = dy on the padded width (zero in the q ≥ Q columns and
// past P·Wp, so the extra positions add nothing),
//   dw[k, c, r, t] = Σ_n Σ_j dy'[n, k, j] · xp[n, c, j + r·Wp + t]
// a tile of 8 output channels x 3 taps of one kernel row (24 vector accumulators; dy' has K rounded up to 8 rows)
// streams j, loading 8 dy' vectors and 3 xp vectors per 16 positions; taps past S are computed and dropped. Images
// are staged in chunks that fill about 1 MiB (L2), and the tile runs over the whole chunk before it reduces its lanes:
// reducing once per image cost more than the products at 8x8 outputs (5 vectors an image), where im2col + GEMM had
// been used instead.
// Each work item sums its images into its own dw partial, added up in item order (results do not depend on timing).
// The flattened length is rounded up to whole vectors; whole 64-position tiles run first, the rest 16 positions at a
// time (DirectTile4x16). Slack: the last vector may read up to 15 + S positions past the buffer; the workspace holds
// them (their values only reach discarded lanes).
// Stride 2: the padded image is split into its four row/column parity phases (DirectPhaseImage), each
// ceil(Hp/2) x ceil(Wp/2); padded pixel (2p + r, 2q + t) is phase (r mod 2, t mod 2) at (p + r/2, q + t/2), so with
// y' on the phase width every tap is again a fixed offset (DirectTaps) and the same tiles run over a channel stride of
// four phases. No tap is computed twice and none is zero. Backward data (a transposed stride-2 convolution) runs by the
// phases of dx instead: ConvDirectStridedData.cs.
// Threads: whole images, in runs of about N / (4 · threads) handed out as threads ask (DirectChunksPerThread); each
// thread owns its padded buffer and y'.
// FLOPs: 2·N·K·C·R·S·P·Wp (the Wp/Q overhead is the discarded columns). Bytes: x and y once each plus one padded
// copy of x and of y'. Bound: FMA throughput and L1 loads for C·R·S in the hundreds.
// Small outputs (8x8) with sixteen images or more run the same tiles with one image per lane: ConvImageLanes.cs.
// Used by Conv.cs (all three passes) when DirectApplies.
// Without Vector512 the same loops run DirectTilePortable (4 channels x two vectors of positions) and
// DirectWeightTilePortable (4 rows x 3 taps) at Vector<float>'s width; the image lanes stay AVX-512 only.
// Reference: Conv2d.ForwardReference / BackwardReference (float64 loops, ConvReference.cs), compared in
// Tests/Kernels/ConvDirectTests.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    private const int DirectTileK = 4, DirectTile = 64, DirectVec = 16;   // output channels x flattened positions per register tile; one vector
    // Work items per thread: the images (or groups) are cut into about this many runs per thread and handed out as the
    // threads ask, so a thread that starts late or runs slow takes fewer; scratch buffers are per thread
    // (WorkerPool.CurrentSlot), weight-gradient partials per run, added up in run order (results do not depend on timing).
    private const int DirectChunksPerThread = 4;
    private static int DirectMaxChunks => DirectChunksPerThread * WorkerPool.ThreadCount;

    // Work items of a direct pass over `units` images (or lane groups): one where a second thread would not pay, else
    // about DirectChunksPerThread per thread. WorkerPool.For runs a single item inline.
    private static int DirectItems(in Conv2dShape s, int units)
    {
        long flops = 2L * s.N * s.K * s.C * s.R * s.S * s.P * s.Q;
        return WorkerPool.ThreadCount == 1 || flops < MinParallelFlops ? 1 : Math.Min(DirectMaxChunks, units);
    }

    // dw = the work items' partials (length floats apart) added up in item order, whichever thread ran which item.
    private static void SumPartials(float* partials, int items, long length, float* dw)
    {
        var total = new Span<float>(dw, (int)length);
        new ReadOnlySpan<float>(partials, total.Length).CopyTo(total);
        for (int item = 1; item < items; item++)
            System.Numerics.Tensors.TensorPrimitives.Add(total, new ReadOnlySpan<float>(partials + item * length, total.Length), total);
    }

    // The direct path is taken for float32 stride-1 convolutions with a real window, one group, padding smaller than
    // the window (so the backward-data padding R−1−p is not negative) and thin channels (C·K ≤ 64·64): there the
    // im2col GEMM has only K rows and loses to the direct tile (about 1.4-2x at 16-32 channels, even at 64, measured on
    // ResNet-20's layers); wider layers keep im2col + GEMM, whose GEMM is efficient there.
    internal static bool DirectApplies<T>(in Conv2dShape s) where T : unmanaged => typeof(T) == typeof(float) && DirectShape(s);

    // Both strides also run at the portable width (DirectTilePortable, DirectWeightTilePortable) where Vector512 is not
    // accelerated; the image lanes are AVX-512 code only.
    private static bool DirectShape(in Conv2dShape s)
        => (Vector512.IsHardwareAccelerated || Vector.IsHardwareAccelerated) && s.Groups == 1 && s.R * s.S > 1 && s.R * s.S <= MaxDirectTaps && (long)s.C * s.K <= 64 * 64
        && s.StrideH == 1 && s.StrideW == 1 && s.DilationH == 1 && s.DilationW == 1 && s.PadH < s.R && s.PadW < s.S;

    // Stride-2 3x3 convolutions (ResNet's downsampling layers) take the direct forward and weight gradient through the
    // four phases of the padded image (DirectPhaseImage), backward data by the phases of dx (ConvDirectStridedData.cs).
    internal static bool DirectStridedApplies<T>(in Conv2dShape s) where T : unmanaged => typeof(T) == typeof(float) && DirectStridedShape(s);

    private static bool DirectStridedShape(in Conv2dShape s)
        => (Vector512.IsHardwareAccelerated || Vector.IsHardwareAccelerated) && s.Groups == 1 && s.R == 3 && s.S == 3 && (long)s.C * s.K <= 64 * 64 && s.W <= MaxPhasedWidth
        && s.StrideH == 2 && s.StrideW == 2 && s.DilationH == 1 && s.DilationW == 1 && s.PadH < s.R && s.PadW < s.S;

    // All three passes run direct for both kinds (backward data of the strided kind in ConvDirectStridedData.cs).
    internal static bool DirectForwardApplies<T>(in Conv2dShape s) where T : unmanaged => typeof(T) == typeof(float) && DirectForwardShape(s);
    private static bool DirectForwardShape(in Conv2dShape s) => DirectShape(s) || DirectStridedShape(s);

    private static bool Phased(in Conv2dShape s) => s.StrideH == 2;

    // The tap-offset table and a phased image row's even/odd halves live on the stack: bounds that keep them small (a
    // kernel or an image wider than this takes im2col + GEMM).
    private const int MaxDirectTaps = 1024, MaxPhasedWidth = 8192;
    // Rows and columns of one phase of the padded image: ceil((H + 2·ph) / 2) x ceil((W + 2·pw) / 2).
    private static int PhaseRows(in Conv2dShape s) => (s.H + 2 * s.PadH + 1) / 2;
    private static int PhaseCols(in Conv2dShape s) => (s.W + 2 * s.PadW + 1) / 2;

    // The convolution backward data runs: input dy [N, K, P, Q], weights w', output dx [N, C, H, W].
    private static Conv2dShape DataShape(in Conv2dShape s) => new(s.N, s.K, s.P, s.Q, s.C, s.R, s.S, 1, 1, s.R - 1 - s.PadH, s.S - 1 - s.PadW);

    private static int DirectRoundK(int k) => (k + DirectTileK - 1) / DirectTileK * DirectTileK;
    private static long DirectPacked(in Conv2dShape s) => (long)DirectRoundK(s.K) * s.C * s.R * s.S;
    private static long DirectPadded(in Conv2dShape s) => (long)s.C * DirectChannelStride(s) + DirectTile + s.S + 16;
    // y' (forward) or dy' (weight gradient) of one image: K rounded up to 8 rows, the weight tile's height (the rows past K
    // stay zero).
    private static long DirectOut(in Conv2dShape s) => (long)(s.K + 7) / 8 * 8 * DirectFlatLength(s);
    // P·Wp rounded up to whole vectors (not whole 64-position tiles: at 8x8 outputs, P·Wp = 80 would compute 128).
    private static int DirectFlatLength(in Conv2dShape s) => (s.P * DirectRowStride(s) + DirectVec - 1) / DirectVec * DirectVec;

    // Row stride of the padded image and of y': W + pw, not W + 2·pw, because one run of pw zeros between two rows is
    // both the right padding of one and the left padding of the next (a tap reaches at most pw columns past either
    // edge). Fewer thrown-away columns: at 8x8 outputs a row is 9 positions instead of 10.
    // With stride 2 the rows are those of one phase.
    private static int DirectRowStride(in Conv2dShape s) => Phased(s) ? PhaseCols(s) : s.W + s.PadW;

    // Floats per input channel in the staged image: Hp rows of W + pw, or four phases of PhaseRows x PhaseCols.
    private static long DirectChannelStride(in Conv2dShape s) => Phased(s) ? 4L * PhaseRows(s) * PhaseCols(s) : (long)(s.H + 2 * s.PadH) * (s.W + s.PadW);

    // taps[r·S + t]: where tap (r, t) of output position j reads, relative to j in the channel's staged image. Stride 1:
    // r·Wp + t. Stride 2: padded pixel (2p + r, 2q + t) lies in phase (r mod 2, t mod 2) at row p + r/2, column q + t/2.
    private static void DirectTaps(in Conv2dShape s, int* taps)
    {
        int wp = DirectRowStride(s), phase = PhaseRows(s) * PhaseCols(s);
        for (int r = 0; r < s.R; r++)
            for (int t = 0; t < s.S; t++)
                taps[r * s.S + t] = Phased(s) ? ((r & 1) * 2 + (t & 1)) * phase + (r >> 1) * wp + (t >> 1) : r * wp + t;
    }

    // Stages one image for the shape: padded rows (stride 1) or the four phases of the padded image (stride 2).
    private static void DirectStage(float* x, float* xp, in Conv2dShape s)
    {
        if (Phased(s)) DirectPhaseImage(x, xp, s.C, s.H, s.W, s.PadH, s.PadW, PhaseRows(s), PhaseCols(s));
        else DirectPadImage(x, xp, s.C, s.H, s.W, s.PadH, s.PadW);
    }

    // xp[c][a·2 + b][i][j] = x[c, 2i + a − ph, 2j + b − pw] (0 outside the image): the padded image split by row and
    // column parity, so that a stride-2 tap becomes a fixed offset into one phase. Each image row is split into its even
    // and odd columns once (two-source permutes, 32 values at a time), then each column phase is a shifted copy of one.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectPhaseImage(float* x, float* xp, int channels, int h, int w, int ph, int pw, int rows, int cols)
    {
        int half = (w + 1) / 2;
        float* even = stackalloc float[half + 16], odd = stackalloc float[half + 16];
        for (int c = 0; c < channels; c++)
            for (int a = 0; a < 2; a++)
                for (int i = 0; i < rows; i++)
                {
                    float* d0 = xp + ((long)c * 4 + a * 2) * rows * cols + (long)i * cols, d1 = d0 + (long)rows * cols;
                    int hi = 2 * i + a - ph;
                    if ((uint)hi >= (uint)h) { new Span<float>(d0, cols).Clear(); new Span<float>(d1, cols).Clear(); continue; }
                    SplitColumns(x + ((long)c * h + hi) * w, w, even, odd);
                    PhaseRow(even, odd, w, -pw, d0, cols);       // column phase 0: x column 2j − pw
                    PhaseRow(even, odd, w, 1 - pw, d1, cols);    // column phase 1: x column 2j + 1 − pw
                }
    }

    // even[m] = row[2m], odd[m] = row[2m + 1].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SplitColumns(float* row, int w, float* even, float* odd)
    {
        int m = 0;
        if (Avx512F.IsSupported)
        {
            var pickEven = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var pickOdd = pickEven + Vector512<int>.One;
            for (; 2 * m + 32 <= w; m += 16)
            {
                var lo = Vector512.Load(row + 2 * m); var hi = Vector512.Load(row + 2 * m + 16);
                Avx512F.PermuteVar16x32x2(lo, pickEven, hi).Store(even + m);
                Avx512F.PermuteVar16x32x2(lo, pickOdd, hi).Store(odd + m);
            }
        }
        for (; 2 * m < w; m++)
        {
            even[m] = row[2 * m];
            if (2 * m + 1 < w) odd[m] = row[2 * m + 1];
        }
    }

    // dst[j] = x column 2j + o of the split row (0 outside [0, w)), for j < cols.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PhaseRow(float* even, float* odd, int w, int o, float* dst, int cols)
    {
        // 2j + o in [0, w)  <=>  j in [lo, hi)
        int lo = o >= 0 ? 0 : (-o + 1) / 2, hi = Math.Min(cols, (w - o + 1) / 2);
        if (hi < lo) hi = lo;
        for (int j = 0; j < lo; j++) dst[j] = 0f;
        if (hi > lo)
        {
            int first = 2 * lo + o;   // the x column of dst[lo]
            float* src = (first & 1) == 0 ? even + first / 2 : odd + first / 2;
            CopyRow(src, dst + lo, hi - lo);
        }
        for (int j = hi; j < cols; j++) dst[j] = 0f;
    }

    // Workspace of one direct pass: packed weights plus, per thread, the padded image and y'.
    private static long DirectWorkspace(in Conv2dShape s) => LanesApply(s) ? LanesWorkspace(s) : DirectPacked(s) + WorkerPool.ThreadCount * (DirectPadded(s) + DirectOut(s));

    // Images the weight gradient stages together: as many padded images and dy' rows as fit about 1 MiB (L2), so the
    // register tile runs over all of them before it reduces its lanes.
    private static int DirectWeightsChunk(in Conv2dShape s) => (int)Math.Clamp(256 * 1024 / (DirectPadded(s) + DirectOut(s)), 1, Math.Max(1, s.N));

    // Workspace of the direct weight gradient: per thread a chunk of padded images and dy', per work item a dw partial.
    private static long DirectWeightsWorkspace(in Conv2dShape s) => LanesApply(s) ? LanesWeightsWorkspace(s)
        : WorkerPool.ThreadCount * DirectWeightsStaged(s) + DirectMaxChunks * s.WLength;
    private static long DirectWeightsStaged(in Conv2dShape s) => DirectWeightsChunk(s) * (DirectPadded(s) + DirectOut(s));

    private struct DirectArgs
    {
        public float* X, Packed, Bias, Y, Ws;
        public int* Ready;   // per thread: its scratch buffer is prepared (zeroed where staging never writes)
        public Conv2dShape S;
        public int Items;    // work items (runs of images or groups)
    }

    // Forward (flip = false) or backward data (flip = true, s the DataShape, w still [K_fwd, C_fwd, R, S]).
    private static void DirectRun(float* x, float* w, float* bias, float* y, in Conv2dShape s, bool flip, Span<float> workspace)
    {
        if (LanesApply(s)) { LanesRun(x, w, bias, y, s, flip, workspace); return; }
        fixed (float* ws = workspace)
        {
            var a = new DirectArgs { X = x, Bias = bias, Y = y, S = s, Packed = ws, Ws = ws + DirectPacked(s) };
            DirectPack(w, a.Packed, s, flip);
            a.Items = DirectItems(s, s.N);
            WorkerPool.For(a.Items, &DirectSlot, (nint)(&a));
        }
    }

    // packed[kb][c][r][t][i] = weight of output channel kb·4 + i (0 past K). s is the shape the pass runs: for the
    // backward-data pass its K is the forward C and w is read transposed and flipped.
    private static void DirectPack(float* w, float* packed, in Conv2dShape s, bool flip)
    {
        int K = s.K, C = s.C, R = s.R, S = s.S, rs = R * S;
        for (int kb = 0; kb < DirectRoundK(K); kb += DirectTileK)
            for (int c = 0; c < C; c++)
                for (int r = 0; r < R; r++)
                    for (int t = 0; t < S; t++)
                    {
                        float* dst = packed + (((long)kb * C + c * DirectTileK) * rs) + (r * S + t) * DirectTileK;
                        for (int i = 0; i < DirectTileK; i++)
                        {
                            int k = kb + i;
                            dst[i] = k >= K ? 0f : flip ? w[((long)c * K + k) * rs + (R - 1 - r) * S + (S - 1 - t)] : w[((long)k * C + c) * rs + r * S + t];
                        }
                    }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectSlot(int item, nint state)
    {
        ref DirectArgs a = ref *(DirectArgs*)state;
        ref readonly Conv2dShape s = ref a.S;
        int wp = DirectRowStride(s), cs = (int)DirectChannelStride(s), hw = s.H * s.W, P = s.P, Q = s.Q, pq = P * Q, len = DirectFlatLength(s);
        float* xp = a.Ws + WorkerPool.CurrentSlot * (DirectPadded(s) + DirectOut(s)), yp = xp + DirectPadded(s);
        new Span<float>(xp + (long)s.C * cs, (int)(DirectPadded(s) - (long)s.C * cs)).Clear();
        int taps = s.R * s.S;
        int* tap = stackalloc int[taps];
        DirectTaps(s, tap);
        for (int n = (int)((long)item * s.N / a.Items), last = (int)((long)(item + 1) * s.N / a.Items); n < last; n++)
        {
            DirectStage(a.X + (long)n * s.C * hw, xp, s);
            // Positions outer, channel blocks inner: the padded rows one position tile reads (C x R rows of 64 + S − 1)
            // stay in L1 for all K/4 channel blocks, where blocks outer streamed the whole image from L2 K/4 times.
            DirectTiles(xp, a.Packed, yp, len, len, s.K, s.C, cs, tap, taps);
            float* yn = a.Y + (long)n * s.K * pq;
            for (int k = 0; k < s.K; k++)
            {
                float b = a.Bias == null ? 0f : a.Bias[k];
                for (int p = 0; p < P; p++)
                {
                    float* src = yp + (long)k * len + p * wp, dst = yn + (long)k * pq + p * Q;
                    if (b == 0f) CopyRow(src, dst, Q);   // rows are tens of values: vector moves, not Span.CopyTo calls
                    else System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(src, Q), b, new Span<float>(dst, Q));
                }
            }
        }
    }

    // xp[c] = x[c] with ph zero rows above and below, and rows w + pw apart with pw zeros before each (the previous row's
    // right padding and this row's left padding in one).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectPadImage(float* x, float* xp, int channels, int h, int w, int ph, int pw)
    {
        int wp = w + pw, hp = h + 2 * ph;
        for (int c = 0; c < channels; c++)
        {
            float* dst = xp + (long)c * hp * wp;
            new Span<float>(dst, ph * wp + pw).Clear();
            for (int r = 0; r < h; r++)
            {
                float* row = dst + (r + ph) * wp + pw;
                CopyRow(x + ((long)c * h + r) * w, row, w);
                for (int i = 0; i < pw; i++) row[w + i] = 0f;   // this row's right pad, which is the next row's left pad
            }
            if (ph > 0) new Span<float>(dst + (h + ph) * wp + pw, ph * wp - pw).Clear();
        }
    }

    // y'[k, j] for the outChannels rows of y' (ldy apart) and positions j < count (a multiple of DirectVec), from the staged
    // channels of x (channelStride apart) and packed weights [outChannels/4][channels][taps][4]: whole 64-position tiles,
    // then 16 at a time; where Vector512 is not accelerated, DirectTilePortable's two vectors at a time (16 or 8, which
    // divide count).
    private static void DirectTiles(float* x, float* packed, float* y, int ldy, int count, int outChannels, int channels, int channelStride, int* tap, int taps)
    {
        long crs = (long)channels * taps;
        int j0 = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j0 + DirectTile <= count; j0 += DirectTile)
                for (int kb = 0; kb < outChannels; kb += DirectTileK)
                    DirectTile4x64(x + j0, packed + kb * crs, y + (long)kb * ldy + j0, ldy, channels, channelStride, tap, taps, DirectVec);
            for (; j0 < count; j0 += DirectVec)
                for (int kb = 0; kb < outChannels; kb += DirectTileK)
                    DirectTile4x16(x + j0, packed + kb * crs, y + (long)kb * ldy + j0, ldy, channels, channelStride, tap, taps);
        }
        else
            for (; j0 < count; j0 += 2 * Vector<float>.Count)
                for (int kb = 0; kb < outChannels; kb += DirectTileK)
                    DirectTilePortable(x + j0, packed + kb * crs, y + (long)kb * ldy + j0, ldy, channels, channelStride, tap, taps);
    }

    // One register tile: y'[i, j] for 4 output channels i and 64 positions j from x (the padded buffer shifted to the
    // tile's first position), summed over channels and taps; packed holds this channel block's [C][R][S][4] weights.
    // The tile's four vectors of x are `step` floats apart: 16 here (contiguous positions), one position per vector in
    // ConvImageLanes.cs (16 images in the lanes; 32 for stride 2). y's four vectors are always contiguous.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectTile4x64(float* x, float* packed, float* y, int ldy, int channels, int channelStride, int* tap, int taps, int step)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        float* w = packed;
        int step2 = 2 * step, step3 = 3 * step;
        for (int c = 0; c < channels; c++, x += channelStride)
            for (int e = 0; e < taps; e++, w += DirectTileK)
                {
                    float* xs = x + tap[e];
                    var x0 = Vector512.Load(xs); var x1 = Vector512.Load(xs + step); var x2 = Vector512.Load(xs + step2); var x3 = Vector512.Load(xs + step3);
                    var w0 = Vector512.Create(w[0]);
                    a00 = Vector512.FusedMultiplyAdd(x0, w0, a00); a01 = Vector512.FusedMultiplyAdd(x1, w0, a01); a02 = Vector512.FusedMultiplyAdd(x2, w0, a02); a03 = Vector512.FusedMultiplyAdd(x3, w0, a03);
                    var w1 = Vector512.Create(w[1]);
                    a10 = Vector512.FusedMultiplyAdd(x0, w1, a10); a11 = Vector512.FusedMultiplyAdd(x1, w1, a11); a12 = Vector512.FusedMultiplyAdd(x2, w1, a12); a13 = Vector512.FusedMultiplyAdd(x3, w1, a13);
                    var w2 = Vector512.Create(w[2]);
                    a20 = Vector512.FusedMultiplyAdd(x0, w2, a20); a21 = Vector512.FusedMultiplyAdd(x1, w2, a21); a22 = Vector512.FusedMultiplyAdd(x2, w2, a22); a23 = Vector512.FusedMultiplyAdd(x3, w2, a23);
                    var w3 = Vector512.Create(w[3]);
                    a30 = Vector512.FusedMultiplyAdd(x0, w3, a30); a31 = Vector512.FusedMultiplyAdd(x1, w3, a31); a32 = Vector512.FusedMultiplyAdd(x2, w3, a32); a33 = Vector512.FusedMultiplyAdd(x3, w3, a33);
                }
        a00.Store(y); a01.Store(y + 16); a02.Store(y + 32); a03.Store(y + 48); y += ldy;
        a10.Store(y); a11.Store(y + 16); a12.Store(y + 32); a13.Store(y + 48); y += ldy;
        a20.Store(y); a21.Store(y + 16); a22.Store(y + 32); a23.Store(y + 48); y += ldy;
        a30.Store(y); a31.Store(y + 16); a32.Store(y + 32); a33.Store(y + 48);
    }

    // The tail of a row of positions shorter than a whole tile: 4 output channels x 16 positions, one vector each.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectTile4x16(float* x, float* packed, float* y, int ldy, int channels, int channelStride, int* tap, int taps)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float* w = packed;
        for (int c = 0; c < channels; c++, x += channelStride)
            for (int e = 0; e < taps; e++, w += DirectTileK)
                {
                    var x0 = Vector512.Load(x + tap[e]);
                    a0 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(w[0]), a0);
                    a1 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(w[1]), a1);
                    a2 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(w[2]), a2);
                    a3 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(w[3]), a3);
                }
        a0.Store(y); a1.Store(y + ldy); a2.Store(y + 2 * ldy); a3.Store(y + 3 * ldy);
    }

    // DirectTile4x16 where Vector512 is not accelerated (AVX2: 8 lanes, Arm64: 4): 4 output channels x two vectors of
    // positions, 8 accumulators (AVX2 has 16 registers), per channel and tap two loads of x and four broadcasts of w.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectTilePortable(float* x, float* packed, float* y, int ldy, int channels, int channelStride, int* tap, int taps)
    {
        int n = Vector<float>.Count;
        Vector<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        float* w = packed;
        for (int c = 0; c < channels; c++, x += channelStride)
            for (int e = 0; e < taps; e++, w += DirectTileK)
            {
                float* xs = x + tap[e];
                var x0 = Vector.Load(xs); var x1 = Vector.Load(xs + n);
                var v = new Vector<float>(w[0]); a00 = Vector.MultiplyAddEstimate(x0, v, a00); a01 = Vector.MultiplyAddEstimate(x1, v, a01);
                v = new Vector<float>(w[1]); a10 = Vector.MultiplyAddEstimate(x0, v, a10); a11 = Vector.MultiplyAddEstimate(x1, v, a11);
                v = new Vector<float>(w[2]); a20 = Vector.MultiplyAddEstimate(x0, v, a20); a21 = Vector.MultiplyAddEstimate(x1, v, a21);
                v = new Vector<float>(w[3]); a30 = Vector.MultiplyAddEstimate(x0, v, a30); a31 = Vector.MultiplyAddEstimate(x1, v, a31);
            }
        a00.Store(y); a01.Store(y + n); y += ldy;
        a10.Store(y); a11.Store(y + n); y += ldy;
        a20.Store(y); a21.Store(y + n); y += ldy;
        a30.Store(y); a31.Store(y + n);
    }

    // DirectWeightTile8x3 for 4 rows of dy' (sums[i·3 + d], i < 4) where Vector512 is not accelerated: 12 accumulators,
    // per W positions three loads of x and one of dy' per row; the caller runs it for both halves of an 8-row block.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectWeightTilePortable(float* dy, int ldy, float* x, float* xb, float* xc, int images, long stride, float* sums)
    {
        int n = Vector<float>.Count;
        Vector<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        for (int m = 0; m < images; m++, dy += stride, x += stride, xb += stride, xc += stride)
        {
            float* d1 = dy + ldy, d2 = d1 + ldy, d3 = d2 + ldy;
            for (int j = 0; j < ldy; j += n)
            {
                var x0 = Vector.Load(x + j); var x1 = Vector.Load(xb + j); var x2 = Vector.Load(xc + j);
                var v = Vector.Load(dy + j);
                a00 = Vector.MultiplyAddEstimate(v, x0, a00); a01 = Vector.MultiplyAddEstimate(v, x1, a01); a02 = Vector.MultiplyAddEstimate(v, x2, a02);
                v = Vector.Load(d1 + j);
                a10 = Vector.MultiplyAddEstimate(v, x0, a10); a11 = Vector.MultiplyAddEstimate(v, x1, a11); a12 = Vector.MultiplyAddEstimate(v, x2, a12);
                v = Vector.Load(d2 + j);
                a20 = Vector.MultiplyAddEstimate(v, x0, a20); a21 = Vector.MultiplyAddEstimate(v, x1, a21); a22 = Vector.MultiplyAddEstimate(v, x2, a22);
                v = Vector.Load(d3 + j);
                a30 = Vector.MultiplyAddEstimate(v, x0, a30); a31 = Vector.MultiplyAddEstimate(v, x1, a31); a32 = Vector.MultiplyAddEstimate(v, x2, a32);
            }
        }
        sums[0] = Vector.Sum(a00); sums[1] = Vector.Sum(a01); sums[2] = Vector.Sum(a02);
        sums[3] = Vector.Sum(a10); sums[4] = Vector.Sum(a11); sums[5] = Vector.Sum(a12);
        sums[6] = Vector.Sum(a20); sums[7] = Vector.Sum(a21); sums[8] = Vector.Sum(a22);
        sums[9] = Vector.Sum(a30); sums[10] = Vector.Sum(a31); sums[11] = Vector.Sum(a32);
    }

    // dw (overwritten) from dy [N, K, P, Q] and x [N, C, H, W]; s the forward shape.
    private static void DirectWeights(float* dy, float* x, float* dw, in Conv2dShape s, Span<float> workspace)
    {
        if (LanesApply(s)) { LanesWeights(dy, x, dw, s, workspace); return; }
        fixed (float* ws = workspace)
        {
            int t = WorkerPool.ThreadCount;
            int* ready = stackalloc int[t];
            new Span<int>(ready, t).Clear();
            var a = new DirectArgs { X = x, Y = dy, S = s, Ws = ws, Ready = ready };
            a.Items = DirectItems(s, s.N);
            WorkerPool.For(a.Items, &DirectWeightsSlot, (nint)(&a));
            SumPartials(DirectPartial(ref a, 0), a.Items, s.WLength, dw);
        }
    }

    private static float* DirectPartial(ref DirectArgs a, int item) => a.Ws + WorkerPool.ThreadCount * DirectWeightsStaged(a.S) + item * a.S.WLength;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectWeightsSlot(int item, nint state)
    {
        ref DirectArgs a = ref *(DirectArgs*)state;
        ref readonly Conv2dShape s = ref a.S;
        int wp = DirectRowStride(s), cs = (int)DirectChannelStride(s), hw = s.H * s.W, P = s.P, Q = s.Q, pq = P * Q, len = DirectFlatLength(s), rs = s.R * s.S;
        int* tap = stackalloc int[rs];
        DirectTaps(s, tap);
        int chunk = DirectWeightsChunk(s);
        long padded = DirectPadded(s), outLen = DirectOut(s);
        // Staged per image: the padded image (padded floats), then its dy' (outLen floats).
        int thread = WorkerPool.CurrentSlot;
        float* staged = a.Ws + thread * DirectWeightsStaged(s), dw = DirectPartial(ref a, item);
        if (a.Ready[thread] == 0)
        {
            for (int i = 0; i < chunk; i++)
            {
                float* xp = staged + i * (padded + outLen);
                new Span<float>(xp + (long)s.C * cs, (int)(padded - (long)s.C * cs)).Clear();
                new Span<float>(xp + padded, (int)outLen).Clear();   // the q ≥ Q columns, the tail past P·Wp and the rows past K stay 0
            }
            a.Ready[thread] = 1;
        }
        new Span<float>(dw, (int)s.WLength).Clear();
        var sums = stackalloc float[8 * 3];
        for (int n0 = (int)((long)item * s.N / a.Items), last = (int)((long)(item + 1) * s.N / a.Items); n0 < last; n0 += chunk)
        {
            int images = Math.Min(chunk, last - n0);
            for (int i = 0; i < images; i++)
            {
                float* xp = staged + i * (padded + outLen), dyp = xp + padded;
                DirectStage(a.X + (long)(n0 + i) * s.C * hw, xp, s);
                float* dyn = a.Y + (long)(n0 + i) * s.K * pq;
                for (int k = 0; k < s.K; k++)
                    for (int p = 0; p < P; p++)
                        CopyRow(dyn + (long)k * pq + p * Q, dyp + (long)k * len + p * wp, Q);
            }
            // Eight output channels per tile (24 accumulators: 11 loads per 24 FMAs; four channels took 7 per 12).
            for (int kb = 0; kb < s.K; kb += 8)
                for (int c = 0; c < s.C; c++)
                    for (int r = 0; r < s.R; r++)
                        for (int t0 = 0; t0 < s.S; t0 += 3)
                        {
                            // The three taps' image pointers; a tap past S (stride 1 only) reads on along the row.
                            float* xc = staged + (long)c * cs, x0 = xc + tap[r * s.S + t0];
                            float* x1 = t0 + 1 < s.S ? xc + tap[r * s.S + t0 + 1] : x0 + 1, x2 = t0 + 2 < s.S ? xc + tap[r * s.S + t0 + 2] : x0 + 2;
                            float* dyk = staged + padded + (long)kb * len;
                            if (Vector512.IsHardwareAccelerated) DirectWeightTile8x3(dyk, len, x0, x1, x2, images, padded + outLen, sums);
                            else
                            {
                                DirectWeightTilePortable(dyk, len, x0, x1, x2, images, padded + outLen, sums);
                                DirectWeightTilePortable(dyk + 4L * len, len, x0, x1, x2, images, padded + outLen, sums + 12);
                            }
                            for (int i = 0; i < 8 && kb + i < s.K; i++)
                                for (int dt = 0; dt < 3 && t0 + dt < s.S; dt++)
                                    dw[((long)(kb + i) * s.C + c) * rs + r * s.S + t0 + dt] += sums[i * 3 + dt];
                        }
        }
    }

    // sums[i·3 + d] = Σ_m Σ_{j < ldy} dy[m·stride + i·ldy + j] · x_d[m·stride + j] for 8 rows i of dy', the image rows
    // x_0 = x, x_1 = xb, x_2 = xc of three taps (stride 1: one row at shifts 0, 1, 2; stride 2: two phases) and the
    // chunk's images m (staged stride floats apart); ldy is a multiple of 16. The lanes are reduced once per chunk, not
    // once per image: at 8x8 outputs an image is only 5 vectors long.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DirectWeightTile8x3(float* dy, int ldy, float* x, float* xb, float* xc, int images, long stride, float* sums)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        Vector512<float> a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        for (int m = 0; m < images; m++, dy += stride, x += stride, xb += stride, xc += stride)
        {
            float* d1 = dy + ldy, d2 = d1 + ldy, d3 = d2 + ldy, d4 = d3 + ldy, d5 = d4 + ldy, d6 = d5 + ldy, d7 = d6 + ldy;
            for (int j = 0; j < ldy; j += 16)
            {
                var x0 = Vector512.Load(x + j); var x1 = Vector512.Load(xb + j); var x2 = Vector512.Load(xc + j);
                var v = Vector512.Load(dy + j);
                a00 = Vector512.FusedMultiplyAdd(v, x0, a00); a01 = Vector512.FusedMultiplyAdd(v, x1, a01); a02 = Vector512.FusedMultiplyAdd(v, x2, a02);
                v = Vector512.Load(d1 + j);
                a10 = Vector512.FusedMultiplyAdd(v, x0, a10); a11 = Vector512.FusedMultiplyAdd(v, x1, a11); a12 = Vector512.FusedMultiplyAdd(v, x2, a12);
                v = Vector512.Load(d2 + j);
                a20 = Vector512.FusedMultiplyAdd(v, x0, a20); a21 = Vector512.FusedMultiplyAdd(v, x1, a21); a22 = Vector512.FusedMultiplyAdd(v, x2, a22);
                v = Vector512.Load(d3 + j);
                a30 = Vector512.FusedMultiplyAdd(v, x0, a30); a31 = Vector512.FusedMultiplyAdd(v, x1, a31); a32 = Vector512.FusedMultiplyAdd(v, x2, a32);
                v = Vector512.Load(d4 + j);
                a40 = Vector512.FusedMultiplyAdd(v, x0, a40); a41 = Vector512.FusedMultiplyAdd(v, x1, a41); a42 = Vector512.FusedMultiplyAdd(v, x2, a42);
                v = Vector512.Load(d5 + j);
                a50 = Vector512.FusedMultiplyAdd(v, x0, a50); a51 = Vector512.FusedMultiplyAdd(v, x1, a51); a52 = Vector512.FusedMultiplyAdd(v, x2, a52);
                v = Vector512.Load(d6 + j);
                a60 = Vector512.FusedMultiplyAdd(v, x0, a60); a61 = Vector512.FusedMultiplyAdd(v, x1, a61); a62 = Vector512.FusedMultiplyAdd(v, x2, a62);
                v = Vector512.Load(d7 + j);
                a70 = Vector512.FusedMultiplyAdd(v, x0, a70); a71 = Vector512.FusedMultiplyAdd(v, x1, a71); a72 = Vector512.FusedMultiplyAdd(v, x2, a72);
            }
        }
        sums[0] = Vector512.Sum(a00); sums[1] = Vector512.Sum(a01); sums[2] = Vector512.Sum(a02);
        sums[3] = Vector512.Sum(a10); sums[4] = Vector512.Sum(a11); sums[5] = Vector512.Sum(a12);
        sums[6] = Vector512.Sum(a20); sums[7] = Vector512.Sum(a21); sums[8] = Vector512.Sum(a22);
        sums[9] = Vector512.Sum(a30); sums[10] = Vector512.Sum(a31); sums[11] = Vector512.Sum(a32);
        sums[12] = Vector512.Sum(a40); sums[13] = Vector512.Sum(a41); sums[14] = Vector512.Sum(a42);
        sums[15] = Vector512.Sum(a50); sums[16] = Vector512.Sum(a51); sums[17] = Vector512.Sum(a52);
        sums[18] = Vector512.Sum(a60); sums[19] = Vector512.Sum(a61); sums[20] = Vector512.Sum(a62);
        sums[21] = Vector512.Sum(a70); sums[22] = Vector512.Sum(a71); sums[23] = Vector512.Sum(a72);
    }

}
