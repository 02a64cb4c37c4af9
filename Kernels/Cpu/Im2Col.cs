// Im2Col / Col2Im: the patch unrolling of the im2col + GEMM convolution (Conv.cs) and its adjoint.
//
// Algorithm: for the cg channels of one group and output positions j = p·Q + q in [j0, j0 + jb),
//   col[(c, r, t), j − j0] = x[c, p·sh − ph + r·dh, q·sw − pw + t·dw]   (0 outside the input)
// One walker visits every (c, r, t) row of col and, within it, the run of output positions of each output row p
// (split at row ends). For each run it computes once which columns [a, b) land inside the input row (TapRange) and
// hands the run to a transfer: Gather (im2col) copies those columns and zeroes the rest; Scatter (col2im, the
// adjoint) adds them back into the image, so overlapping patches accumulate. The transfers are structs behind a
// static interface, so the JIT compiles one specialised loop per direction and element type: no indirect call in
// the walk. With stride 1 a run is a contiguous row move (CopyRow / AddRow: explicit vectors, since rows are tens
// of values); otherwise a strided scalar loop.
// Bytes: (C/G)·R·S·jb col values written (Gather) or read (Scatter) per call; the image rows are read or updated
// once per tap. Bound: memory traffic and, for short rows, loop overhead.
// Reference: Conv2d.ForwardReference / BackwardReference through the public convolution (ConvPoolNormTests).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class Conv2d
{
    // Output columns q whose tap t lands inside the input row: q in [lo, hi), for input column q·stride + off.
    // Both bounds round away from the row (a negative numerator is never divided: C# division truncates toward zero).
    internal static void TapRange(int w, int q, int stride, int off, out int lo, out int hi)
    {
        lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
        int last = w - 1 - off;   // q·stride ≤ last
        hi = last < 0 ? 0 : Math.Min(q, last / stride + 1);
        if (lo > q) lo = q;
    }

    // One direction of the col <-> image move, for a run of output positions [q, qe) of one output row.
    private interface IColTransfer<T> where T : unmanaged, INumber<T>
    {
        // The run's col values d[0 .. qe − q) against the image row src (already shifted by the tap offset): input
        // columns i·sw for q ≤ i < qe, of which [a, b) lie inside the input (a < b).
        static abstract void Inside(T* d, T* src, int q, int a, int b, int qe, int sw);
        // A run whose taps all fall outside the input (padding rows or columns).
        static abstract void Outside(T* d, int len);
    }

    // im2col: col = the image values, 0 for padding.
    private readonly struct Gather<T> : IColTransfer<T> where T : unmanaged, INumber<T>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Inside(T* d, T* src, int q, int a, int b, int qe, int sw)
        {
            // Rows are short (tens of values): plain vector moves beat Span.CopyTo/Clear calls here.
            for (int i = q; i < a; i++) d[i - q] = T.Zero;
            if (sw == 1) CopyRow(src + a, d + a - q, b - a);
            else for (int i = a; i < b; i++) d[i - q] = src[i * sw];
            for (int i = b; i < qe; i++) d[i - q] = T.Zero;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Outside(T* d, int len) => new Span<T>(d, len).Clear();
    }

    // col2im: the image gains the col values that came from it; padding entries are dropped.
    private readonly struct Scatter<T> : IColTransfer<T> where T : unmanaged, INumber<T>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Inside(T* d, T* dst, int q, int a, int b, int qe, int sw)
        {
            if (sw == 1) AddRow(d + a - q, dst + a, b - a);
            else for (int i = a; i < b; i++) dst[i * sw] += d[i - q];
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Outside(T* d, int len) { }
    }

    // col[(c, r, t), j − j0] for the cg channels of one group (img points at the first), output positions [j0, j0 + jb);
    // col's rows are ldcol apart (jb when col holds this block alone, more when several images sit side by side).
    private static void Im2Col<T>(T* img, in Conv2dShape s, int cg, int j0, int jb, T* col, int ldcol = 0) where T : unmanaged, INumber<T>
        => WalkPatches<T, Gather<T>>(col, s, cg, j0, jb, img, ldcol == 0 ? jb : ldcol);

    // The adjoint of Im2Col: adds col entries back into the image (overlapping patches accumulate).
    private static void Col2Im<T>(T* col, in Conv2dShape s, int cg, int j0, int jb, T* img, int ldcol = 0) where T : unmanaged, INumber<T>
        => WalkPatches<T, Scatter<T>>(col, s, cg, j0, jb, img, ldcol == 0 ? jb : ldcol);

    // Visits every (c, r, t) row of col and each output row's run within it (see the header).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WalkPatches<T, TTransfer>(T* col, in Conv2dShape s, int cg, int j0, int jb, T* img, int ldcol)
        where T : unmanaged, INumber<T> where TTransfer : struct, IColTransfer<T>
    {
        int Q = s.Q, j1 = j0 + jb, sw = s.StrideW;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++, col += ldcol)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    T* d = col;
                    for (int j = j0, p = j0 / Q, q = j0 % Q; j < j1; p++, q = 0)
                    {
                        int qe = Math.Min(Q, q + j1 - j), len = qe - q;
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        int a = Math.Max(q, lo), b = Math.Min(qe, hi);
                        if ((uint)h < (uint)s.H && a < b) TTransfer.Inside(d, img + ((long)c * s.H + h) * s.W + off, q, a, b, qe, sw);
                        else TTransfer.Outside(d, len);
                        d += len; j += len;
                    }
                }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow<T>(T* src, T* dst, int len) where T : unmanaged
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported && len >= Vector512<T>.Count)
        {
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) Vector512.Load(src + i).Store(dst + i);
            if (i < len) Vector512.Load(src + len - Vector512<T>.Count).Store(dst + len - Vector512<T>.Count);   // overlapping tail
            return;
        }
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported && len >= Vector256<T>.Count)
        {
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) Vector256.Load(src + i).Store(dst + i);
            if (i < len) Vector256.Load(src + len - Vector256<T>.Count).Store(dst + len - Vector256<T>.Count);
            return;
        }
        for (; i < len; i++) dst[i] = src[i];
    }

    // dst[i] += src[i]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<T>(T* src, T* dst, int len) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) (Vector512.Load(dst + i) + Vector512.Load(src + i)).Store(dst + i);
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) (Vector256.Load(dst + i) + Vector256.Load(src + i)).Store(dst + i);
        for (; i < len; i++) dst[i] += src[i];
    }
}
