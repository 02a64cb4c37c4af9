// Conv: 2-d convolution (cross-correlation, as PyTorch's conv2d) on NCHW tensors, forward and backward.
//
// Algorithm: im2col + GEMM. For image n and group g, the input patches are unrolled into
// col[(c, r, s), (p, q)] = x[n, c, p·stride − pad + r·dil, q·stride − pad + s·dil] (0 outside), so that
//   forward:          y[n, g] = W[g] (K/G x C/G·R·S) @ col (C/G·R·S x P·Q)   (+ bias)
//   backward data:    dcol = W[g]ᵀ @ dy[n, g], then col2im scatters dcol back (adding overlaps) into dx
//   backward weights: dW[g] += dy[n, g] @ colᵀ;   dbias[k] += Σ dy[n, k, :, :]
// A 1x1 convolution with stride 1 and no padding needs no im2col: x[n] already is the matrix.
// FLOPs: 2·N·K·C/G·R·S·P·Q per pass. Bytes: the col buffer is C/G·R·S·P·Q floats per image and group.
// Bound: the GEMM (Gemm.cs) for all but depthwise convolutions, where im2col traffic dominates.
// Reference: Conv2dReference (direct 7-loop float64 convolution), compared in Tests/Kernels/ConvPoolNormTests.cs.
using System.Buffers;
using System.Numerics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Sizes of a 2-d convolution; P and Q are the output height and width.</summary>
public readonly record struct Conv2dShape(int N, int C, int H, int W, int K, int R, int S, int StrideH = 1, int StrideW = 1, int PadH = 0, int PadW = 0, int DilationH = 1, int DilationW = 1, int Groups = 1)
{
    /// <summary>Output height.</summary>
    public int P => (H + 2 * PadH - DilationH * (R - 1) - 1) / StrideH + 1;
    /// <summary>Output width.</summary>
    public int Q => (W + 2 * PadW - DilationW * (S - 1) - 1) / StrideW + 1;

    /// <summary>Throws naming <paramref name="op"/> and the sizes when the shape is invalid.</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || PadH < 0 || PadW < 0 || DilationH <= 0 || DilationW <= 0 || Groups <= 0)
            throw new ArgumentException($"{op}: invalid sizes {this}");
        if (C % Groups != 0 || K % Groups != 0)
            throw new ArgumentException($"{op}: {C} input and {K} output channels must both be divisible by groups={Groups}");
        if (P <= 0 || Q <= 0)
            throw new ArgumentException($"{op}: a {R}x{S} kernel (dilation {DilationH}x{DilationW}, padding {PadH}x{PadW}) does not fit a {H}x{W} input");
    }

    internal bool IsPointwise => R == 1 && S == 1 && StrideH == 1 && StrideW == 1 && PadH == 0 && PadW == 0;
}

/// <summary>Convolution kernels (float32 and float64).</summary>
public static class Conv2d
{
    private static void Gemm<T>(bool ta, bool tb, int m, int n, int k, ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Cpu.Gemm.Sgemm(ta, tb, m, n, k, 1f, Cast<T, float>(a), lda, Cast<T, float>(b), ldb, (float)(object)beta, Cast<T, float>(c), ldc);
        else
            Cpu.Gemm.Dgemm(ta, tb, m, n, k, 1.0, Cast<T, double>(a), lda, Cast<T, double>(b), ldb, (double)(object)beta, Cast<T, double>(c), ldc);
    }

    private static ReadOnlySpan<TTo> Cast<TFrom, TTo>(ReadOnlySpan<TFrom> s) where TFrom : unmanaged where TTo : unmanaged => System.Runtime.InteropServices.MemoryMarshal.Cast<TFrom, TTo>(s);
    private static Span<TTo> Cast<TFrom, TTo>(Span<TFrom> s) where TFrom : unmanaged where TTo : unmanaged => System.Runtime.InteropServices.MemoryMarshal.Cast<TFrom, TTo>(s);

    private static void Check<T>(string op, in Conv2dShape s, int xLen, int wLen, int yLen)
    {
        s.Validate(op);
        long x = (long)s.N * s.C * s.H * s.W, w = (long)s.K * (s.C / s.Groups) * s.R * s.S, y = (long)s.N * s.K * s.P * s.Q;
        if (xLen < x || wLen < w || yLen < y)
            throw new ArgumentException($"{op}: spans of {xLen}, {wLen}, {yLen} elements are too short for x {x}, w {w}, y {y} ({s})");
    }

    // col[(c, r, s), (p, q)] for the channels [c0, c0 + cg) of one image.
    private static void Im2Col<T>(ReadOnlySpan<T> img, in Conv2dShape s, int c0, int cg, Span<T> col) where T : unmanaged, INumber<T>
    {
        int P = s.P, Q = s.Q, row = 0;
        for (int c = c0; c < c0 + cg; c++)
            for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++, row++)
                {
                    var dst = col.Slice(row * P * Q, P * Q);
                    for (int p = 0; p < P; p++)
                    {
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        var drow = dst.Slice(p * Q, Q);
                        if ((uint)h >= (uint)s.H) { drow.Clear(); continue; }
                        var src = img.Slice((c * s.H + h) * s.W, s.W);
                        for (int q = 0; q < Q; q++)
                        {
                            int w = q * s.StrideW - s.PadW + t * s.DilationW;
                            drow[q] = (uint)w < (uint)s.W ? src[w] : T.Zero;
                        }
                    }
                }
    }

    // The adjoint of Im2Col: adds col entries back into the image (overlapping patches accumulate).
    private static void Col2Im<T>(ReadOnlySpan<T> col, in Conv2dShape s, int c0, int cg, Span<T> img) where T : unmanaged, INumber<T>
    {
        int P = s.P, Q = s.Q, row = 0;
        for (int c = c0; c < c0 + cg; c++)
            for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++, row++)
                {
                    var src = col.Slice(row * P * Q, P * Q);
                    for (int p = 0; p < P; p++)
                    {
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        if ((uint)h >= (uint)s.H) continue;
                        var dst = img.Slice((c * s.H + h) * s.W, s.W);
                        for (int q = 0; q < Q; q++)
                        {
                            int w = q * s.StrideW - s.PadW + t * s.DilationW;
                            if ((uint)w < (uint)s.W) dst[w] += src[p * Q + q];
                        }
                    }
                }
    }

    /// <summary>y = conv2d(x, w) + bias; x [N,C,H,W], w [K,C/G,R,S], bias [K] or empty, y [N,K,P,Q].</summary>
    public static void Forward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> bias, Span<T> y, in Conv2dShape s) where T : unmanaged, INumber<T>
    {
        Check<T>("Conv2d.Forward", s, x.Length, w.Length, y.Length);
        int G = s.Groups, cg = s.C / G, kg = s.K / G, P = s.P, Q = s.Q, crs = cg * s.R * s.S, pq = P * Q;
        var rent = s.IsPointwise ? null : ArrayPool<T>.Shared.Rent(crs * pq);
        try
        {
            for (int n = 0; n < s.N; n++)
            {
                var img = x.Slice(n * s.C * s.H * s.W, s.C * s.H * s.W);
                for (int g = 0; g < G; g++)
                {
                    ReadOnlySpan<T> col;
                    if (s.IsPointwise) col = img.Slice(g * cg * pq, cg * pq);
                    else { Im2Col(img, s, g * cg, cg, rent); col = rent.AsSpan(0, crs * pq); }
                    Gemm(false, false, kg, pq, crs, w.Slice(g * kg * crs, kg * crs), crs, col, pq, T.Zero, y.Slice((n * s.K + g * kg) * pq, kg * pq), pq);
                }
                if (!bias.IsEmpty)
                    for (int k = 0; k < s.K; k++)
                    {
                        var plane = y.Slice((n * s.K + k) * pq, pq);
                        for (int i = 0; i < pq; i++) plane[i] += bias[k];
                    }
            }
        }
        finally { if (rent is not null) ArrayPool<T>.Shared.Return(rent); }
    }

    /// <summary>dx from dy and w (dx is overwritten).</summary>
    public static void BackwardData<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx, in Conv2dShape s) where T : unmanaged, INumber<T>
    {
        Check<T>("Conv2d.BackwardData", s, dx.Length, w.Length, dy.Length);
        int G = s.Groups, cg = s.C / G, kg = s.K / G, pq = s.P * s.Q, crs = cg * s.R * s.S;
        dx.Slice(0, s.N * s.C * s.H * s.W).Clear();
        var rent = s.IsPointwise ? null : ArrayPool<T>.Shared.Rent(crs * pq);
        try
        {
            for (int n = 0; n < s.N; n++)
            {
                var img = dx.Slice(n * s.C * s.H * s.W, s.C * s.H * s.W);
                for (int g = 0; g < G; g++)
                {
                    var dyg = dy.Slice((n * s.K + g * kg) * pq, kg * pq);
                    if (s.IsPointwise) { Gemm(true, false, cg, pq, kg, w.Slice(g * kg * crs, kg * crs), crs, dyg, pq, T.Zero, img.Slice(g * cg * pq, cg * pq), pq); continue; }
                    var dcol = rent.AsSpan(0, crs * pq);
                    Gemm(true, false, crs, pq, kg, w.Slice(g * kg * crs, kg * crs), crs, dyg, pq, T.Zero, dcol, pq);
                    Col2Im<T>(dcol, s, g * cg, cg, img);
                }
            }
        }
        finally { if (rent is not null) ArrayPool<T>.Shared.Return(rent); }
    }

    /// <summary>dw (and dbias when not empty) from dy and x (overwritten).</summary>
    public static void BackwardWeights<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> dw, Span<T> dbias, in Conv2dShape s) where T : unmanaged, INumber<T>
    {
        Check<T>("Conv2d.BackwardWeights", s, x.Length, dw.Length, dy.Length);
        int G = s.Groups, cg = s.C / G, kg = s.K / G, pq = s.P * s.Q, crs = cg * s.R * s.S;
        var rent = s.IsPointwise ? null : ArrayPool<T>.Shared.Rent(crs * pq);
        try
        {
            for (int n = 0; n < s.N; n++)
            {
                var img = x.Slice(n * s.C * s.H * s.W, s.C * s.H * s.W);
                for (int g = 0; g < G; g++)
                {
                    ReadOnlySpan<T> col;
                    if (s.IsPointwise) col = img.Slice(g * cg * pq, cg * pq);
                    else { Im2Col(img, s, g * cg, cg, rent); col = rent.AsSpan(0, crs * pq); }
                    Gemm(false, true, kg, crs, pq, dy.Slice((n * s.K + g * kg) * pq, kg * pq), pq, col, pq, n == 0 ? T.Zero : T.One, dw.Slice(g * kg * crs, kg * crs), crs);
                }
            }
            if (!dbias.IsEmpty)
                for (int k = 0; k < s.K; k++)
                {
                    T sum = T.Zero;
                    for (int n = 0; n < s.N; n++) foreach (var v in dy.Slice((n * s.K + k) * pq, pq)) sum += v;
                    dbias[k] = sum;
                }
        }
        finally { if (rent is not null) ArrayPool<T>.Shared.Return(rent); }
    }

    /// <summary>The direct 7-loop convolution in float64 (reference for tests).</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> w, ReadOnlySpan<double> bias, in Conv2dShape s)
    {
        s.Validate("Conv2d.ForwardReference");
        int cg = s.C / s.Groups, kg = s.K / s.Groups, P = s.P, Q = s.Q;
        var y = new double[s.N * s.K * P * Q];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    for (int q = 0; q < Q; q++)
                    {
                        double acc = bias.IsEmpty ? 0 : bias[k];
                        int g = k / kg;
                        for (int c = 0; c < cg; c++)
                            for (int r = 0; r < s.R; r++)
                                for (int t = 0; t < s.S; t++)
                                {
                                    int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                                    if ((uint)h < (uint)s.H && (uint)ww < (uint)s.W)
                                        acc += x[((n * s.C + g * cg + c) * s.H + h) * s.W + ww] * w[((k * cg + c) * s.R + r) * s.S + t];
                                }
                        y[((n * s.K + k) * P + p) * Q + q] = acc;
                    }
        return y;
    }
}
