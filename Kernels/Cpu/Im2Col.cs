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
using System.Runtime.Intrinsics.X86;

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
            for (int z = q; z < a; z++) d[z - q] = T.Zero;
            int i = a;
            if (sw == 1) { CopyRow(src + a, d + a - q, b - a); i = b; }
            else if (sw == 2 && typeof(T) == typeof(float)) i = GatherEven((float*)src, (float*)(d - q), a, b);
            for (; i < b; i++) d[i - q] = src[i * sw];
            for (int z = b; z < qe; z++) d[z - q] = T.Zero;
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
            int i = a;
            if (sw == 1) { AddRow(d + a - q, dst + a, b - a); i = b; }
            else if (sw == 2 && typeof(T) == typeof(float)) i = ScatterEven((float*)d - q, (float*)dst, a, b);
            for (; i < b; i++) dst[i * sw] += d[i - q];
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

    // Stride 2 (ResNet's downsampling layers and its 7x7 stem): d[i] = src[2i] for i from a on, 16 at a time, the even
    // lanes of two loads picked by one two-source permute; returns where the scalar tail starts. A block stops one
    // value short of b so that its last load (up to src[2i + 31]) never reads past the row's last used value src[2(b − 1)].
    private static readonly Vector512<int> EvenLanes = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    private static readonly Vector512<int> SpreadLow = Vector512.Create(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16);
    private static readonly Vector512<int> SpreadHigh = Vector512.Create(8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int GatherEven(float* src, float* d, int a, int b)
    {
        int i = a;
        if (!Avx512F.IsSupported) return i;
        for (; i + 16 < b; i += 16)
            Avx512F.PermuteVar16x32x2(Vector512.Load(src + 2 * i), EvenLanes, Vector512.Load(src + 2 * i + 16)).Store(d + i);
        return i;
    }

    // The adjoint: dst[2i] += d[i], the 16 values spread to the even lanes of two vectors (odd lanes gain +0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ScatterEven(float* d, float* dst, int a, int b)
    {
        int i = a;
        if (!Avx512F.IsSupported) return i;
        for (; i + 16 < b; i += 16)
        {
            var v = Vector512.Load(d + i);
            (Vector512.Load(dst + 2 * i) + Avx512F.PermuteVar16x32x2(v, SpreadLow, Vector512<float>.Zero)).Store(dst + 2 * i);
            (Vector512.Load(dst + 2 * i + 16) + Avx512F.PermuteVar16x32x2(v, SpreadHigh, Vector512<float>.Zero)).Store(dst + 2 * i + 16);
        }
        return i;
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
