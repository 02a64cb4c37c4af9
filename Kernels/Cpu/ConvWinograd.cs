// ConvWinograd: float32 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), all three passes.
//
// Algorithm. Cut the output into 2x2 tiles; tile t = (n, tp, tq) reads the 4x4 patch d of each input channel at rows
// 2·tp − 1 .. 2·tp + 2 and columns 2·tq − 1 .. 2·tq + 2 (zero outside the image). For one 3x3 filter g,
//   y_tile = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The product ⊙ is element-wise over the 16 positions ξ of the 4x4 tile, so the sum over input channels moves inside
// it and becomes one GEMM per position:
//   forward:          M[ξ] (K x T) = U[ξ] (K x C) · V[ξ] (C x T),   U[ξ][k, c] = (G g_kc Gᵀ)_ξ,   V[ξ][c, t] = (Bᵀ d_ct B)_ξ,
//                     then y_kt = Aᵀ M_kt A.
//   backward data:    dx is dy correlated with the filter turned by 180° and K, C swapped (padding 3 − 1 − 1 = 1): the
//                     forward algorithm on dy with that filter.
//   backward weights: y is linear in U, so dU[ξ] (K x C) = E[ξ] (K x T) · V[ξ]ᵀ with E_kt = A dy_kt Aᵀ (the 2x2 output
//                     gradient spread onto the 4x4 positions), and dw_kc = Gᵀ dU_kc G.
// Cost: 16 multiply-adds per 2x2 output tile and channel pair against 36 for the direct sum (2.25x fewer). The
// transforms are additions, one per input channel and tile (Bᵀ d B) or output channel and tile (Aᵀ M A), amortised
// over K and C. So the path is taken only for the wide layers that the direct kernel leaves to im2col + GEMM (C·K > 64·64:
// ResNet-18/34/50's 128-512-channel 3x3 layers), where it was 1.4-1.9x faster than im2col + GEMM in every pass
// (docs/vision.md); on 32-64-channel layers the direct kernel (ConvDirect.cs) was 1.9-3.4x faster than this.
// Blocking: tiles go in blocks small enough that V and M of a block (16·(C + K) floats a tile) stay within the L3
// cache. A block: each input channel of the block's images is copied into a zero-padded buffer, its patches are
// gathered sixteen tiles at a time (AVX2 gathers, no bounds tests) and transformed with one Vector512 per position;
// the 16 GEMMs (Gemm.SgemmStridedBatched); the output transform and scatter, with the bias.
// Threads: where U is no larger than a thread's share of the transformed tiles, each thread runs whole blocks on its
// own V and M (and its own dU, summed at the end); otherwise (few tiles, as the 7x7 layers at batch 8) the blocks go
// one at a time, the transforms split over channels and the GEMMs over the pool. On ResNet-50's 28x28 layers the
// first was 1.5x faster on two threads than the second, which synchronises three times a block.
// Accuracy: the coefficients are ±1 and ±½, so float32 results stay within a few rounding steps of the direct sum's;
// Tests/Kernels/ConvWinogradTests.cs compares all three passes with the float64 reference (ConvReference.cs).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    private const int WinoPositions = 16;            // the 4x4 positions ξ of a transformed tile
    private const int WinoLanes = 16;                // tiles per Vector512<float> in the transforms
    private const long WinoBlockFloats = 2L << 20;   // V and M of one block of tiles: at most 8 MiB (the L3 holds 32)

    /// <summary>
    /// Whether 3x3 stride-1 convolutions too wide for the direct kernel take Winograd F(2x2, 3x3) (true, the default)
    /// or im2col + GEMM; for measuring one against the other.
    /// </summary>
    public static bool WinogradEnabled { get; set; } = true;

    internal static bool WinogradApplies<T>(in Conv2dShape s) where T : unmanaged => typeof(T) == typeof(float) && WinogradShape(s);

    private static bool WinogradShape(in Conv2dShape s)
        => WinogradEnabled && Vector512.IsHardwareAccelerated && Avx2.IsSupported && s.Groups == 1 && s.R == 3 && s.S == 3 && s.StrideH == 1 && s.StrideW == 1
        && s.DilationH == 1 && s.DilationW == 1 && s.PadH == 1 && s.PadW == 1 && (long)s.C * s.K > 64 * 64;

    // Tiles of the whole batch, and per block: tiles (the last block may have fewer) and the row length of V, M and E
    // (rounded up to whole vectors; the lanes past a block's tiles hold zeros). The number of blocks is a multiple of
    // the threads, so that each thread gets as many.
    private static (int Tiles, int Blocks, int PerBlock, int Ld) WinogradBlocks(in Conv2dShape s, int threads)
    {
        int tiles = s.N * ((s.P + 1) / 2) * ((s.Q + 1) / 2);
        long fit = Math.Max(WinoLanes, WinoBlockFloats / (WinoPositions * (long)(s.C + s.K)));
        int blocks = (int)((tiles + fit - 1) / fit);
        blocks = Math.Min(tiles, (blocks + threads - 1) / threads * threads);
        int perBlock = (tiles + blocks - 1) / blocks;
        return (tiles, (tiles + perBlock - 1) / perBlock, perBlock, (perBlock + WinoLanes - 1) / WinoLanes * WinoLanes);
    }

    // The distance between two positions' matrices: rows·cols and one vector more. Without the extra vector, the 16
    // stores of one transformed tile can land a multiple of 4 KiB apart, all in one L1 set (which holds 12 lines): with
    // 128 x 400 matrices that made the input transform several times slower.
    private static long WinoPlane(int rows, int cols) => (long)rows * cols + WinoLanes;

    // U (forward, data) or dU (weights), then per thread V and M (forward, data) or V and E (weights) of one block,
    // then the other threads' partial dU (weights, one block per thread).
    private static long WinogradWorkspace(in Conv2dShape s, int threads)
    {
        int ld = WinogradBlocks(s, threads).Ld;
        return WinoPositions * (threads * WinoPlane(s.K, s.C) + threads * (WinoPlane(s.C, ld) + WinoPlane(s.K, ld)));
    }

    // Whether each thread runs whole blocks (transforms and GEMMs on its own V and M, no barrier), or the blocks go one
    // at a time with every phase split over the threads. Whole blocks scale better, but every thread then packs all of
    // U for its GEMMs: they are chosen where U is no larger than one thread's share of the transformed tiles (ResNet-50
    // at batch 8: the 28x28 and 14x14 layers, not the 7x7 ones, whose U is 4M floats against 1M).
    private static bool WinoBlockPerThread(in Conv2dShape s, int tiles, int threads)
        => threads > 1 && (long)s.K * s.C <= (long)tiles / threads * (s.C + s.K);

    private struct WinoJob
    {
        public float* In, Out, Bias, U, V, M, Filters;   // forward: In [N, Cin, H, W] -> Out [N, Cout, H, W]; weights: In = x, Out = dy
        public long PlaneU, PlaneV, PlaneM;              // distances between the positions' matrices (WinoPlane)
        public int Cin, Cout, H, W, TilesP, TilesQ, First, Count, Ld, Parts;
        public int Tiles, Blocks, PerBlock, FirstBlock;  // the blocks of tiles, handed out to the threads in turn; this dU's first
        public delegate*<ref WinoJob, int, void> Block;  // what a thread does with each of its blocks (WinoThreadBlocks)
        public bool Flip;                                // the filters are the backward-data pass's (Filters is w [Cin, Cout, 3, 3])
        public bool PerThreadU;                          // weight pass: with a block per thread, each thread has its own dU
    }

    // y = conv(x, w) + bias (forward) or dx = conv(dy, w turned) (backward data, flip): U from the filter (threads over
    // its rows), then the blocks of tiles through the input transform, the 16 GEMMs and the output transform: each
    // thread every Parts-th block on its own V and M, or one block at a time with each phase split over the threads
    // (WinoBlockPerThread).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinogradRun(float* input, float* w, float* bias, float* output, in Conv2dShape s, bool flip, Span<float> ws)
    {
        int cin = flip ? s.K : s.C, cout = flip ? s.C : s.K;
        fixed (float* pws = ws)
        {
            var j = WinoJobFor(s, cin, cout, input, output, pws, ws.Length);
            j.Bias = bias; j.Filters = w; j.Flip = flip;
            WorkerPool.For(Math.Min(j.Parts, cout), &WinoFilterPart, (nint)(&j));
            WinoBlocks(ref j, s, &WinoForwardBlock);
        }
    }

    // dw (overwritten) = Σ over tiles of Gᵀ (E ⊙ V) G: the blocks of tiles through the input and gradient transforms
    // and the 16 GEMMs that accumulate dU, as in WinogradRun; with a block per thread each thread has its own dU, and
    // they are summed before dw = Gᵀ dU G (threads over output channels).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinogradWeights(float* dy, float* x, float* dw, in Conv2dShape s, Span<float> ws)
    {
        fixed (float* pws = ws)
        {
            var j = WinoJobFor(s, s.C, s.K, x, dy, pws, ws.Length);
            j.PerThreadU = true;
            int threads = WinoBlocks(ref j, s, &WinoWeightsBlock);
            long length = WinoPositions * j.PlaneU;
            for (int t = 1; t < threads; t++)
                System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(j.U, (int)length),
                    new ReadOnlySpan<float>(WinoOwnU(ref j, t), (int)length), new Span<float>(j.U, (int)length));
            j.Out = dw;
            WorkerPool.For(Math.Min(j.Parts, s.K), &WinoWeightsPart, (nint)(&j));
        }
    }

    // The job of a pass over the whole batch: U (or dU) at the start of the workspace, thread 0's V and M after it.
    // The thread count is read once, here: the blocks, the buffers' layout and the workspace check all use it.
    private static WinoJob WinoJobFor(in Conv2dShape s, int cin, int cout, float* input, float* output, float* workspace, int workspaceLength)
    {
        int threads = WorkerPool.ThreadCount;
        long need = WinogradWorkspace(s, threads);
        if (workspaceLength < need)
            throw new InvalidOperationException($"Conv2d (Winograd): the workspace has {workspaceLength} floats, {s} needs {need} on {threads} threads (was WorkerPool.ThreadCount changed during the call?)");
        var (tiles, blocks, perBlock, ld) = WinogradBlocks(s, threads);
        var j = new WinoJob
        {
            In = input, Out = output, U = workspace, Cin = cin, Cout = cout, H = s.H, W = s.W,
            TilesP = (s.H + 1) / 2, TilesQ = (s.W + 1) / 2, Ld = ld, Parts = threads,
            PlaneU = WinoPlane(cout, cin), PlaneV = WinoPlane(cin, ld), PlaneM = WinoPlane(cout, ld),
            Tiles = tiles, Blocks = blocks, PerBlock = perBlock,
        };
        j.V = j.U + WinoPositions * j.PlaneU;
        j.M = j.V + WinoPositions * j.PlaneV;
        return j;
    }

    // Runs `block` over every block of tiles: each thread its own blocks (WinoThreadBlocks) or one block at a time with
    // the phases split over the threads. Returns how many threads kept their own dU (1 when one block at a time).
    private static int WinoBlocks(ref WinoJob j, in Conv2dShape s, delegate*<ref WinoJob, int, void> block)
    {
        if (WinoBlockPerThread(s, j.Tiles, j.Parts))
        {
            int threads = Math.Min(j.Parts, j.Blocks);
            j.Block = block;
            fixed (WinoJob* pj = &j) WorkerPool.For(threads, &WinoThreadBlocks, (nint)pj);
            return threads;
        }
        for (int b = 0; b < j.Blocks; b++) block(ref j, b);
        return 1;
    }

    // Thread `slot`'s blocks, one after another on its own V and M (or E) and, in the weight pass, its own dU; the
    // phases inside run on this thread alone.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoThreadBlocks(int slot, nint state)
    {
        ref WinoJob shared = ref *(WinoJob*)state;
        var j = shared;
        j.Parts = 1;
        j.V = shared.V + slot * WinoPositions * (j.PlaneV + j.PlaneM);
        j.M = j.V + WinoPositions * j.PlaneV;
        j.U = WinoOwnU(ref shared, slot);
        j.FirstBlock = slot;
        for (int b = slot; b < j.Blocks; b += Math.Min(shared.Parts, j.Blocks)) j.Block(ref j, b);
    }

    // Thread `slot`'s dU in the weight pass (thread 0's is U itself; the others follow all the threads' V and M). In
    // the forward and data passes every thread reads the one U.
    private static float* WinoOwnU(ref WinoJob j, int slot)
        => slot == 0 || !j.PerThreadU ? j.U : j.U + WinoPositions * (j.PlaneU + j.Parts * (j.PlaneV + j.PlaneM) + (slot - 1) * j.PlaneU);

    // Block b of a forward or backward-data pass: input transform, M[ξ] = U[ξ] V[ξ], output transform.
    private static void WinoForwardBlock(ref WinoJob j, int b)
    {
        j.First = b * j.PerBlock;
        j.Count = Math.Min(j.PerBlock, j.Tiles - j.First);
        fixed (WinoJob* pj = &j)
        {
            WorkerPool.For(Math.Min(j.Parts, j.Cin), &WinoInputPart, (nint)pj);
            Cpu.Gemm.SgemmStridedBatched(WinoPositions, false, false, j.Cout, j.Count, j.Cin, 1f,
                new ReadOnlySpan<float>(j.U, (int)(WinoPositions * j.PlaneU)), j.Cin, j.PlaneU,
                new ReadOnlySpan<float>(j.V, (int)(WinoPositions * j.PlaneV)), j.Ld, j.PlaneV, 0f,
                new Span<float>(j.M, (int)(WinoPositions * j.PlaneM)), j.Ld, j.PlaneM);
            WorkerPool.For(Math.Min(j.Parts, j.Cout), &WinoOutputPart, (nint)pj);
        }
    }

    // Block b of a weight pass: input and gradient transforms, dU[ξ] += E[ξ] V[ξ]ᵀ (= for the first block of a dU).
    private static void WinoWeightsBlock(ref WinoJob j, int b)
    {
        j.First = b * j.PerBlock;
        j.Count = Math.Min(j.PerBlock, j.Tiles - j.First);
        fixed (WinoJob* pj = &j)
        {
            WorkerPool.For(Math.Min(j.Parts, j.Cin), &WinoInputPart, (nint)pj);
            WorkerPool.For(Math.Min(j.Parts, j.Cout), &WinoGradientPart, (nint)pj);
            Cpu.Gemm.SgemmStridedBatched(WinoPositions, false, true, j.Cout, j.Cin, j.Count, 1f,
                new ReadOnlySpan<float>(j.M, (int)(WinoPositions * j.PlaneM)), j.Ld, j.PlaneM,
                new ReadOnlySpan<float>(j.V, (int)(WinoPositions * j.PlaneV)), j.Ld, j.PlaneV, b == j.FirstBlock ? 0f : 1f,
                new Span<float>(j.U, (int)(WinoPositions * j.PlaneU)), j.Cin, j.PlaneU);
        }
    }

    // Walks tiles in order from tile `first`: the image N and the top-left output pixel (P, Q) of each 2x2 tile.
    private struct TileCursor
    {
        public int N, P, Q;
        private readonly int _rows, _cols;   // output rows and columns the tiles span: 2·TilesP, 2·TilesQ

        public TileCursor(in WinoJob j, int first)
        {
            int perImage = j.TilesP * j.TilesQ;
            (_rows, _cols) = (2 * j.TilesP, 2 * j.TilesQ);
            (N, P, Q) = (first / perImage, 2 * (first % perImage / j.TilesQ), 2 * (first % j.TilesQ));
        }

        public void Next()
        {
            if ((Q += 2) < _cols) return;
            Q = 0;
            if ((P += 2) < _rows) return;
            P = 0;
            N++;
        }
    }

    // [from, to) of n items for part p of parts.
    private static (int From, int To) PartRange(int n, int p, int parts) => ((int)((long)n * p / parts), (int)((long)n * (p + 1) / parts));

    // U[ξ][row][col] = (G g Gᵀ)_ξ for this part's rows of U, sixteen columns per vector. Forward: row k, column c,
    // g = w[k][c] (sixteen filters side by side in w). Backward data (Flip): row c, column k, g = w[k][c] turned by 180°.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoFilterPart(int part, nint state)
    {
        ref WinoJob j = ref *(WinoJob*)state;
        var (r0, r1) = PartRange(j.Cout, part, Math.Min(j.Parts, j.Cout));
        float* g = stackalloc float[9 * WinoLanes];   // g[tap][lane]
        float* tail = stackalloc float[WinoLanes];
        Vector512<float>* z = stackalloc Vector512<float>[12];
        var half = Vector512.Create(0.5f);
        int wc = j.Flip ? j.Cout : j.Cin;   // C of w [K, C, 3, 3]
        for (int row = r0; row < r1; row++)
            for (int c0 = 0; c0 < j.Cin; c0 += WinoLanes)
            {
                int lanes = Math.Min(WinoLanes, j.Cin - c0);
                for (int l = 0; l < WinoLanes; l++)
                {
                    if (l >= lanes) { for (int tap = 0; tap < 9; tap++) g[tap * WinoLanes + l] = 0; continue; }
                    float* src = j.Filters + (j.Flip ? (long)(c0 + l) * wc + row : (long)row * wc + c0 + l) * 9;
                    for (int tap = 0; tap < 9; tap++) g[tap * WinoLanes + l] = src[j.Flip ? 8 - tap : tap];
                }
                // Z = G g (4 x 3), then U = Z Gᵀ (4 x 4).
                for (int col = 0; col < 3; col++)
                {
                    var g0 = Vector512.Load(g + col * WinoLanes); var g1 = Vector512.Load(g + (3 + col) * WinoLanes);
                    var g2 = Vector512.Load(g + (6 + col) * WinoLanes);
                    z[col] = g0; z[3 + col] = half * (g0 + g1 + g2); z[6 + col] = half * (g0 - g1 + g2); z[9 + col] = g2;
                }
                float* dst = j.U + (long)row * j.Cin + c0;
                for (int i = 0; i < 4; i++)
                {
                    var z0 = z[3 * i]; var z1 = z[3 * i + 1]; var z2 = z[3 * i + 2];
                    WinoStore(z0, dst + (4 * i) * j.PlaneU, lanes, tail);
                    WinoStore(half * (z0 + z1 + z2), dst + (4 * i + 1) * j.PlaneU, lanes, tail);
                    WinoStore(half * (z0 - z1 + z2), dst + (4 * i + 2) * j.PlaneU, lanes, tail);
                    WinoStore(z2, dst + (4 * i + 3) * j.PlaneU, lanes, tail);
                }
            }
    }

    // The first `lanes` values of v at dst: a row's last vector must not run into the next row, another part's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WinoStore(Vector512<float> v, float* dst, int lanes, float* tail)
    {
        if (lanes == WinoLanes) { v.Store(dst); return; }
        v.Store(tail);
        new ReadOnlySpan<float>(tail, lanes).CopyTo(new Span<float>(dst, lanes));
    }

    // The zero-padded copies of one channel of the block's images (per thread, grown on demand, kept).
    [ThreadStatic] private static float[]? _winoPadded;

    // V[ξ][c][0 .. Count) = Bᵀ d B of the block's tiles, for this part's input channels. Each channel of the block's
    // images is first copied into a zero-padded buffer, so that every patch element is one gathered load with no
    // bounds test: lane l of the patch element (i, e) is padded[offset_l + i·wp + e], offset_l = tile l's corner.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoInputPart(int part, nint state)
    {
        ref WinoJob j = ref *(WinoJob*)state;
        var (c0, c1) = PartRange(j.Cin, part, Math.Min(j.Parts, j.Cin));
        int perImage = j.TilesP * j.TilesQ, hp = 2 * j.TilesP + 2, wp = 2 * j.TilesQ + 2;
        int n0 = j.First / perImage, images = (j.First + j.Count - 1) / perImage - n0 + 1;
        long padLength = (long)images * hp * wp;
        var padded = _winoPadded is { } b && b.Length >= padLength ? b : _winoPadded = GC.AllocateUninitializedArray<float>((int)padLength, pinned: true);
        int* offsets = stackalloc int[j.Ld];
        var at = new TileCursor(j, j.First);
        for (int l = 0; l < j.Ld; l++, at.Next())
            offsets[l] = l < j.Count ? ((at.N - n0) * hp + at.P) * wp + at.Q : 0;
        fixed (float* xp = padded)
            for (int c = c0; c < c1; c++)
            {
                PadChannel(j.In + ((long)n0 * j.Cin + c) * j.H * j.W, (long)j.Cin * j.H * j.W, images, j.H, j.W, hp, wp, xp);
                for (int l0 = 0; l0 < j.Count; l0 += WinoLanes)
                    InputTransform(xp, wp, Vector256.Load(offsets + l0), Vector256.Load(offsets + l0 + 8), j.V + (long)c * j.Ld + l0, j.PlaneV);
            }
    }

    // dst[n][1 + r][1 + q] = src[n][r][q] for the images, zero elsewhere (the top and left padding row and column, and
    // at the bottom and right one or two, up to the tiles' 2·tiles + 2 rows and columns).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PadChannel(float* src, long imageStride, int images, int H, int W, int hp, int wp, float* dst)
    {
        new Span<float>(dst, images * hp * wp).Clear();
        for (int n = 0; n < images; n++)
            for (int r = 0; r < H; r++)
                new ReadOnlySpan<float>(src + n * imageStride + (long)r * W, W).CopyTo(new Span<float>(dst + ((long)n * hp + 1 + r) * wp + 1, W));
    }

    // v[ξ·plane + lane] = (Bᵀ d B)_ξ for sixteen tiles whose patches start at padded + offsets: the 16 patch elements
    // gathered, Bᵀ down the columns, then along the rows.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InputTransform(float* padded, int wp, Vector256<int> lo, Vector256<int> hi, float* v, long plane)
    {
        Vector512<float>* u = stackalloc Vector512<float>[WinoPositions];
        for (int e = 0; e < 4; e++)
        {
            var d0 = GatherPatch(padded + e, lo, hi); var d1 = GatherPatch(padded + wp + e, lo, hi);
            var d2 = GatherPatch(padded + 2 * wp + e, lo, hi); var d3 = GatherPatch(padded + 3 * wp + e, lo, hi);
            u[e] = d0 - d2; u[4 + e] = d1 + d2; u[8 + e] = d2 - d1; u[12 + e] = d1 - d3;
        }
        for (int i = 0; i < 4; i++)
        {
            var b0 = u[4 * i]; var b1 = u[4 * i + 1]; var b2 = u[4 * i + 2]; var b3 = u[4 * i + 3];
            (b0 - b2).Store(v + (4 * i) * plane); (b1 + b2).Store(v + (4 * i + 1) * plane);
            (b2 - b1).Store(v + (4 * i + 2) * plane); (b1 - b3).Store(v + (4 * i + 3) * plane);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> GatherPatch(float* at, Vector256<int> lo, Vector256<int> hi)
        => Vector512.Create(Avx2.GatherVector256(at, lo, 4), Avx2.GatherVector256(at, hi, 4));

    // Out tiles = Aᵀ M A (+ bias) for this part's output channels, the 2x2 of each tile cut at the image's edge.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoOutputPart(int part, nint state)
    {
        ref WinoJob j = ref *(WinoJob*)state;
        var (k0, k1) = PartRange(j.Cout, part, Math.Min(j.Parts, j.Cout));
        float* o = stackalloc float[4 * WinoLanes];   // o[(2·row + col)][lane]
        Vector512<float>* s = stackalloc Vector512<float>[8];
        long plane = j.PlaneM;
        for (int k = k0; k < k1; k++)
        {
            float bias = j.Bias == null ? 0f : j.Bias[k];
            for (int l0 = 0; l0 < j.Count; l0 += WinoLanes)
            {
                float* m = j.M + (long)k * j.Ld + l0;
                // Aᵀ down the columns (s[row][col], 2 x 4), then along the rows.
                for (int e = 0; e < 4; e++)
                {
                    var m0 = Vector512.Load(m + e * plane); var m1 = Vector512.Load(m + (4 + e) * plane);
                    var m2 = Vector512.Load(m + (8 + e) * plane); var m3 = Vector512.Load(m + (12 + e) * plane);
                    s[e] = m0 + m1 + m2; s[4 + e] = m1 - m2 - m3;
                }
                for (int row = 0; row < 2; row++)
                {
                    var a0 = s[4 * row]; var a1 = s[4 * row + 1]; var a2 = s[4 * row + 2]; var a3 = s[4 * row + 3];
                    (a0 + a1 + a2).Store(o + (2 * row) * WinoLanes);
                    (a1 - a2 - a3).Store(o + (2 * row + 1) * WinoLanes);
                }
                var at = new TileCursor(j, j.First + l0);
                for (int l = 0, lanes = Math.Min(WinoLanes, j.Count - l0); l < lanes; l++, at.Next())
                {
                    int p = at.P, q = at.Q;
                    float* dst = j.Out + (((long)at.N * j.Cout + k) * j.H + p) * j.W + q;
                    bool right = q + 1 < j.W;
                    dst[0] = o[l] + bias;
                    if (right) dst[1] = o[WinoLanes + l] + bias;
                    if (p + 1 < j.H)
                    {
                        dst[j.W] = o[2 * WinoLanes + l] + bias;
                        if (right) dst[j.W + 1] = o[3 * WinoLanes + l] + bias;
                    }
                }
            }
        }
    }

    // E[ξ][k][0 .. Count) = A dy Aᵀ of the block's tiles (dy = Out, 0 past the image's edge), for this part's channels.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoGradientPart(int part, nint state)
    {
        ref WinoJob j = ref *(WinoJob*)state;
        var (k0, k1) = PartRange(j.Cout, part, Math.Min(j.Parts, j.Cout));
        float* d = stackalloc float[4 * WinoLanes];   // d[(2·row + col)][lane]
        Vector512<float>* a = stackalloc Vector512<float>[8];
        long plane = j.PlaneM;
        for (int k = k0; k < k1; k++)
            for (int l0 = 0; l0 < j.Count; l0 += WinoLanes)
            {
                var at = new TileCursor(j, j.First + l0);
                for (int l = 0, lanes = Math.Min(WinoLanes, j.Count - l0); l < WinoLanes; l++, at.Next())
                {
                    if (l >= lanes) { d[l] = d[WinoLanes + l] = d[2 * WinoLanes + l] = d[3 * WinoLanes + l] = 0; continue; }
                    int p = at.P, q = at.Q;
                    float* src = j.Out + (((long)at.N * j.Cout + k) * j.H + p) * j.W + q;
                    bool right = q + 1 < j.W, down = p + 1 < j.H;
                    d[l] = src[0];
                    d[WinoLanes + l] = right ? src[1] : 0f;
                    d[2 * WinoLanes + l] = down ? src[j.W] : 0f;
                    d[3 * WinoLanes + l] = right && down ? src[j.W + 1] : 0f;
                }
                // A = [1 0; 1 1; 1 −1; 0 −1] down the columns (a[row][col], 4 x 2), then along the rows.
                for (int col = 0; col < 2; col++)
                {
                    var d0 = Vector512.Load(d + col * WinoLanes); var d1 = Vector512.Load(d + (2 + col) * WinoLanes);
                    a[col] = d0; a[2 + col] = d0 + d1; a[4 + col] = d0 - d1; a[6 + col] = -d1;
                }
                float* e = j.M + (long)k * j.Ld + l0;
                for (int row = 0; row < 4; row++)
                {
                    var b0 = a[2 * row]; var b1 = a[2 * row + 1];
                    b0.Store(e + (4 * row) * plane); (b0 + b1).Store(e + (4 * row + 1) * plane);
                    (b0 - b1).Store(e + (4 * row + 2) * plane); (-b1).Store(e + (4 * row + 3) * plane);
                }
            }
    }

    // dw_kc = Gᵀ dU_kc G for this part's output channels (U holds dU[ξ][k][c], Out is dw), sixteen c per vector.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WinoWeightsPart(int part, nint state)
    {
        ref WinoJob j = ref *(WinoJob*)state;
        var (k0, k1) = PartRange(j.Cout, part, Math.Min(j.Parts, j.Cout));
        float* g = stackalloc float[9 * WinoLanes];   // g[tap][lane]
        Vector512<float>* z = stackalloc Vector512<float>[12];
        var half = Vector512.Create(0.5f);
        for (int k = k0; k < k1; k++)
            for (int c0 = 0; c0 < j.Cin; c0 += WinoLanes)
            {
                // Past the row's end the loads read the next row or the plane's spare vector; those lanes are not kept.
                float* du = j.U + (long)k * j.Cin + c0;
                // Z = dU G (4 x 3), then dw = Gᵀ Z (3 x 3).
                for (int i = 0; i < 4; i++)
                {
                    var u0 = Vector512.Load(du + (4 * i) * j.PlaneU); var u1 = Vector512.Load(du + (4 * i + 1) * j.PlaneU);
                    var u2 = Vector512.Load(du + (4 * i + 2) * j.PlaneU); var u3 = Vector512.Load(du + (4 * i + 3) * j.PlaneU);
                    z[3 * i] = u0 + half * (u1 + u2); z[3 * i + 1] = half * (u1 - u2); z[3 * i + 2] = half * (u1 + u2) + u3;
                }
                for (int col = 0; col < 3; col++)
                {
                    var z0 = z[col]; var z1 = z[3 + col]; var z2 = z[6 + col]; var z3 = z[9 + col];
                    (z0 + half * (z1 + z2)).Store(g + col * WinoLanes);
                    (half * (z1 - z2)).Store(g + (3 + col) * WinoLanes);
                    (half * (z1 + z2) + z3).Store(g + (6 + col) * WinoLanes);
                }
                float* dst = j.Out + ((long)k * j.Cin + c0) * 9;
                for (int l = 0, lanes = Math.Min(WinoLanes, j.Cin - c0); l < lanes; l++)
                    for (int tap = 0; tap < 9; tap++) dst[l * 9 + tap] = g[tap * WinoLanes + l];
            }
    }
}
