// Pool (GPU): 2-d max and average pooling over NCHW float32 tensors, forward and backward, with the
// semantics of Kernels/Cpu/Pool.cs.
//
// Forward: one thread per output (plane, p, q) walks its window clipped to the image, rows outer and columns
// inner as the CPU does. Max: padding never wins, the first maximum wins ties, the first NaN wins, and the
// winner's in-plane index h·W + w goes to the int64 argmax. Average: the clipped sum times 1/(R·S) (zero
// padding counted, count_include_pad = true; padding is at most half the window, so R·S is always the divisor).
// Backward is a gather: one thread per input pixel (plane, h, w) visits the outputs whose window covers it
// (p from ceil((h + ph − R + 1)/sh) to floor((h + ph)/sh), likewise q) in output order, and sums dy there (max:
// only where argmax names this pixel; average: dy·1/(R·S)). Overlapping windows (stride < kernel) would make a
// scatter race; the gather needs no atomics, is deterministic, and adds in the CPU's order.
// FLOPs: R·S per output forward; up to ceil(R/sh)·ceil(S/sw) per pixel backward. Bytes: x read R·S/(sh·sw)
// times through the cache, y (and 8 bytes of argmax) written once. Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Kernels/Cpu/Pool.cs and its float64 references); Tests/Gpu/ConvGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The sizes of a pooling window as the GPU kernels read them (see Kernels.Cpu.Pool2dShape).</summary>
public struct PoolGeometry
{
    /// <summary>x is [N, C, H, W], y [N, C, P, Q]; the window is R x S.</summary>
    public int N, C, H, W, R, S, P, Q;
    /// <summary>Strides and paddings along height and width.</summary>
    public int StrideH, StrideW, PadH, PadW;

    /// <summary>The geometry of a validated CPU shape.</summary>
    public static PoolGeometry From(Cpu.Pool2dShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, R = s.R, S = s.S, P = s.P, Q = s.Q, StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW,
    };
}

/// <summary>Max and average pooling kernels.</summary>
public static class Pool
{
    /// <summary>Output o = (plane, p, q): the window maximum and its in-plane index.</summary>
    public static void MaxForwardKernel(Index1D o, ArrayView<float> x, ArrayView<float> y, ArrayView<long> argmax, PoolGeometry a)
    {
        int q = (int)(o % a.Q), p = (int)(o / a.Q % a.P);
        long plane = o / ((long)a.P * a.Q), img = plane * a.H * a.W;
        int h0 = XMath.Max(0, p * a.StrideH - a.PadH), h1 = XMath.Min(a.H, p * a.StrideH - a.PadH + a.R);
        int w0 = XMath.Max(0, q * a.StrideW - a.PadW), w1 = XMath.Min(a.W, q * a.StrideW - a.PadW + a.S);
        int at = h0 * a.W + w0;
        float best = x[img + at];
        for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++)
            {
                float v = x[img + h * a.W + w];
                if (v > best || (XMath.IsNaN(v) && !XMath.IsNaN(best))) { best = v; at = h * a.W + w; }
            }
        y[o] = best;
        argmax[o] = at;
    }

    /// <summary>Input pixel i = (plane, h, w): dx = Σ dy over the outputs whose argmax is this pixel.</summary>
    public static void MaxBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<long> argmax, ArrayView<float> dx, PoolGeometry a)
    {
        int w = (int)(i % a.W), h = (int)(i / a.W % a.H);
        long plane = i / ((long)a.H * a.W), outs = plane * a.P * a.Q;
        long self = (long)h * a.W + w;
        FirstLast(h, a.PadH, a.R, a.StrideH, a.P, out int p0, out int p1);
        FirstLast(w, a.PadW, a.S, a.StrideW, a.Q, out int q0, out int q1);
        float sum = 0f;
        for (int p = p0; p <= p1; p++)
            for (int q = q0; q <= q1; q++)
            {
                long o = outs + (long)p * a.Q + q;
                if (argmax[o] == self) sum += dy[o];
            }
        dx[i] = sum;
    }

    /// <summary>Output o: the window sum (padding as zeros) times <paramref name="inv"/> = 1/(R·S).</summary>
    public static void AvgForwardKernel(Index1D o, ArrayView<float> x, ArrayView<float> y, PoolGeometry a, float inv)
    {
        int q = (int)(o % a.Q), p = (int)(o / a.Q % a.P);
        long img = o / ((long)a.P * a.Q) * a.H * a.W;
        int h0 = XMath.Max(0, p * a.StrideH - a.PadH), h1 = XMath.Min(a.H, p * a.StrideH - a.PadH + a.R);
        int w0 = XMath.Max(0, q * a.StrideW - a.PadW), w1 = XMath.Min(a.W, q * a.StrideW - a.PadW + a.S);
        float sum = 0f;
        for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++) sum += x[img + h * a.W + w];
        y[o] = sum * inv;
    }

    /// <summary>Input pixel i: dx = Σ dy·inv over the windows that cover it.</summary>
    public static void AvgBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, PoolGeometry a, float inv)
    {
        int w = (int)(i % a.W), h = (int)(i / a.W % a.H);
        long outs = i / ((long)a.H * a.W) * a.P * a.Q;
        FirstLast(h, a.PadH, a.R, a.StrideH, a.P, out int p0, out int p1);
        FirstLast(w, a.PadW, a.S, a.StrideW, a.Q, out int q0, out int q1);
        float sum = 0f;
        for (int p = p0; p <= p1; p++)
            for (int q = q0; q <= q1; q++) sum += dy[outs + (long)p * a.Q + q] * inv;
        dx[i] = sum;
    }

    // The outputs along one axis whose window [o·stride − pad, o·stride − pad + size) covers coordinate x:
    // first = ceil((x + pad − size + 1) / stride) clipped at 0, last = floor((x + pad) / stride) clipped at count − 1.
    private static void FirstLast(int x, int pad, int size, int stride, int count, out int first, out int last)
    {
        int lo = x + pad - size + 1;
        first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
        last = XMath.Min(count - 1, (x + pad) / stride);
    }
}
