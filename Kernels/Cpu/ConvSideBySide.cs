// ConvSideBySide: im2col + GEMM with several images side by side in one col matrix, for small outputs of wide layers.
//
// Why: the im2col driver (Conv.cs) runs one GEMM per image. With 7x7 outputs (ResNet-50's last stage at batch 8) that
// GEMM has 49 columns: it repacks all of W (up to 2048 x 1024 floats) for each image, and 49 columns fill one and a
// half of the micro-kernel's 32-wide tiles. Here a chunk of nb images is unrolled into
//   col[(c, r, t), i·P·Q + j] = image i's patch value (Im2Col with rows nb·P·Q apart; a 1x1 stride-1 layer's
//                               channel rows are copied as they are)
// and one GEMM does the chunk:
//   forward:          Y (K x nb·P·Q) = W (K x C·R·S) · col, then each image's K x P·Q block is copied out (+ bias)
//   backward data:    dcol = Wᵀ · dY (dY gathered the same way), then Col2Im into each image's dx
//   backward weights: dW (+)= dY · colᵀ, over the chunks
// The GEMM splits itself over the pool; the unrolling and the copies run one image per pool index.
// Taken (SideBySide) for one group, more than one image, P·Q <= 64 and C·K >= 256·256, where the float32 direct and
// Winograd kernels do not apply; for kernels wider than 1x1 only in the data pass. Measured on ResNet-50's shapes at
// batch 8 on two threads, 2026-12-05 (docs/vision.md, "The sixth round"): the last stage's 1x1 layers 1.3-1.4x faster
// (forward 1.2x, weights 1.1-1.2x, data 1.5-1.8x), the 3x3 stride-2 layer's data pass 1.5x, but its forward and weight
// passes 1.4x and 1.1x slower (likely: the GEMM's thread split has both threads pack the whole 7 MiB col); 14x14
// outputs 1.2-1.3x slower (likely: col and Y outgrow the L2 that one image's block fits); ResNet-20's 32-to-64-channel
// 1x1 shortcut at batch 128 4x slower, hence the width bound.
// Workspace: col (C·R·S x nb·P·Q) and Y or dY (K x nb·P·Q), nb chosen so that both hold at most SideBySideValues.
// Reference: the same references as Conv.cs (ConvReference.cs), through the public entry points
// (Tests/Kernels/ConvSideBySideTests.cs).
using System.Numerics;
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    private const int SideBySideMaxOutput = 64;           // P·Q up to which images go side by side
    private const long SideBySideMinWidth = 256 * 256;    // C·K from which they do
    // col + Y of one chunk: 8 MiB of floats, within the L3 (internal: tests lower it to get several chunks).
    internal static long SideBySideValues = 2L << 20;

    private static bool SideBySide(in Conv2dShape s, bool data) => s.Groups == 1 && s.N > 1 && s.P * s.Q <= SideBySideMaxOutput
        && (long)s.C * s.K >= SideBySideMinWidth && (data || s.R * s.S == 1);

    // Whether a convolution of element type T takes this path in the data pass (data) or in the forward and weight
    // passes (the depthwise, direct and Winograd kernels come first).
    internal static bool SideBySideApplies<T>(in Conv2dShape s, bool data) where T : unmanaged
        => SideBySide(s, data) && !s.IsDepthwise && !WinogradApplies<T>(s) && !DirectForwardApplies<T>(s);

    // Images per chunk.
    private static int SideBySideImages(in Conv2dShape s)
        => (int)Math.Clamp(SideBySideValues / (((long)s.C * s.R * s.S + s.K) * s.P * s.Q), 1, s.N);

    private static long SideBySideWorkspace(in Conv2dShape s) => ((long)s.C * s.R * s.S + s.K) * SideBySideImages(s) * s.P * s.Q;

    private struct SideArgs<T> where T : unmanaged
    {
        public T* Images, Col, Cat, Bias;   // Images: x (forward, weights) or dx (data); Cat: Y or dY of the chunk
        public T* Outputs;                  // y (forward) or dy (data, weights)
        public Conv2dShape S;
        public int First, Cols;             // the chunk's first image; columns of col and Cat (nb·P·Q)
    }

    private enum SidePass { Forward, Data, Weights }

    // One pass over the chunks. images: x (forward, weights) or dx (data); w: the weights, or dw (weights); outputs: y
    // (forward) or dy (data, weights).
    private static void SideBySideRun<T>(SidePass pass, T* images, T* w, T* bias, T* outputs, in Conv2dShape s, T* ws) where T : unmanaged, INumber<T>
    {
        int crs = s.C * s.R * s.S, pq = s.P * s.Q, per = SideBySideImages(s);
        var a = new SideArgs<T> { Images = images, Outputs = outputs, Bias = bias, S = s, Col = ws, Cat = ws + (long)crs * per * pq };
        for (a.First = 0; a.First < s.N; a.First += per)
        {
            int nb = Math.Min(per, s.N - a.First);
            a.Cols = nb * pq;
            var col = new Span<T>(a.Col, crs * a.Cols); var cat = new Span<T>(a.Cat, s.K * a.Cols); var wm = new Span<T>(w, s.K * crs);
            if (pass != SidePass.Data) WorkerPool.For(nb, &SideUnroll<T>, (nint)(&a));
            if (pass != SidePass.Forward) WorkerPool.For(nb, &SideGatherOutput<T>, (nint)(&a));
            switch (pass)
            {
                case SidePass.Forward:
                    Gemm(false, false, s.K, a.Cols, crs, wm, crs, col, a.Cols, T.Zero, cat, a.Cols);
                    WorkerPool.For(nb, &SideCopyOut<T>, (nint)(&a));
                    break;
                case SidePass.Data:
                    Gemm(true, false, crs, a.Cols, s.K, wm, crs, cat, a.Cols, T.Zero, col, a.Cols);
                    WorkerPool.For(nb, &SideFold<T>, (nint)(&a));
                    break;
                default:
                    Gemm(false, true, s.K, crs, a.Cols, cat, a.Cols, col, a.Cols, a.First == 0 ? T.Zero : T.One, wm, crs);
                    break;
            }
        }
    }

    // col's columns of chunk image i = Im2Col of that image (for a 1x1 stride-1 layer, its channel rows as they are).
    private static void SideUnroll<T>(int i, nint state) where T : unmanaged, INumber<T>
    {
        ref SideArgs<T> a = ref *(SideArgs<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int pq = s.P * s.Q;
        T* img = a.Images + (long)(a.First + i) * s.C * s.H * s.W, col = a.Col + (long)i * pq;
        if (s.IsPointwise) CopyRows(img, pq, col, a.Cols, s.C, pq);
        else Im2Col(img, s, s.C, 0, pq, col, a.Cols);
    }

    // Image i's dx = Col2Im of its columns of dcol (dx cleared first; a 1x1 stride-1 layer's are its rows as they are).
    private static void SideFold<T>(int i, nint state) where T : unmanaged, INumber<T>
    {
        ref SideArgs<T> a = ref *(SideArgs<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int pq = s.P * s.Q;
        T* img = a.Images + (long)(a.First + i) * s.C * s.H * s.W, col = a.Col + (long)i * pq;
        if (s.IsPointwise) { CopyRows(col, a.Cols, img, pq, s.C, pq); return; }
        new Span<T>(img, s.C * s.H * s.W).Clear();
        Col2Im(col, s, s.C, 0, pq, img, a.Cols);
    }

    // rows x len values from src (rows ldsrc apart) to dst (rows lddst apart).
    private static void CopyRows<T>(T* src, int ldsrc, T* dst, int lddst, int rows, int len) where T : unmanaged
    {
        for (int r = 0; r < rows; r++) CopyRow(src + (long)r * ldsrc, dst + (long)r * lddst, len);
    }

    // Image i's y[k] = its columns of Cat, row k (+ bias[k]).
    private static void SideCopyOut<T>(int i, nint state) where T : unmanaged, INumber<T>
    {
        ref SideArgs<T> a = ref *(SideArgs<T>*)state;
        int pq = a.S.P * a.S.Q;
        T* y = a.Outputs + (long)(a.First + i) * a.S.K * pq, cat = a.Cat + i * pq;
        if (a.Bias == null) { CopyRows(cat, a.Cols, y, pq, a.S.K, pq); return; }
        for (int k = 0; k < a.S.K; k++)
            System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<T>(cat + (long)k * a.Cols, pq), a.Bias[k], new Span<T>(y + (long)k * pq, pq));
    }

    // Cat's columns of image i, row k = its dy[k].
    private static void SideGatherOutput<T>(int i, nint state) where T : unmanaged, INumber<T>
    {
        ref SideArgs<T> a = ref *(SideArgs<T>*)state;
        int pq = a.S.P * a.S.Q;
        CopyRows(a.Outputs + (long)(a.First + i) * a.S.K * pq, pq, a.Cat + i * pq, a.Cols, a.S.K, pq);
    }
}
