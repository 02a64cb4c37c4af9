// Pool (GPU): 2-d max and average pooling over NCHW float32 tensors, forward and backward, with the
// semantics of Kernels/Cpu/Pool.cs (PyTorch's max_pool2d / avg_pool2d: rectangular windows, strides,
// paddings, dilation for max, ceil_mode, count_include_pad).
//
// Forward: one thread per output (plane, p, q) walks its window cells (r, t) in row-major order, skipping cells
// outside the input, as the CPU does. Max: padding never wins, the first maximum wins ties, a NaN always wins (the
// last NaN, as PyTorch), the winner's in-plane index h·W + w goes to the int64 argmax (−1 and −∞ when no cell is
// inside the input). Average: the clipped sum divided by the window's cell count (Pool2dShape.AvgDivisor).
// Backward is a gather: one thread per input pixel (plane, h, w) visits the outputs whose window covers it, i.e.
// for each tap r the row p = (h + ph − r·dh)/sh when that division is exact and p < P (likewise q), taps in
// reverse order so outputs come in increasing (p, q) order; it sums dy there (max: only where argmax names this
// pixel; average: dy/divisor). Overlapping windows (stride < kernel) would make a scatter race; the gather needs
// no atomics, is deterministic, and adds in the CPU's order.
// No division of a possibly negative numerator: a negative row is skipped before p is computed.
// FLOPs: R·S per output forward; R·S per pixel backward. Bytes: x read R·S/(sh·sw) times through the cache,
// y (and 8 bytes of argmax) written once. Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Kernels/Cpu/Pool.cs and its float64 references); Tests/Gpu/ConvGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The sizes of a pooling window as the GPU kernels read them (see Kernels/Common/Pool2dShape.cs).</summary>
public struct PoolGeometry
{
    /// <summary>x is [N, C, H, W], y [N, C, P, Q]; the window is R x S.</summary>
    public int N, C, H, W, R, S, P, Q;
    /// <summary>Strides, paddings and dilations along height and width.</summary>
    public int StrideH, StrideW, PadH, PadW, DilationH, DilationW;
    /// <summary>1 when average pooling counts zero padding in its divisor (count_include_pad).</summary>
    public int CountIncludePad;

    /// <summary>The geometry of a validated shape.</summary>
    public static PoolGeometry From(Pool2dShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, R = s.R, S = s.S, P = s.P, Q = s.Q, StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW,
        DilationH = s.DilationH, DilationW = s.DilationW, CountIncludePad = s.CountIncludePad ? 1 : 0,
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
        int at = -1;
        float best = float.NegativeInfinity;
        for (int r = 0; r < a.R; r++)
        {
            int h = p * a.StrideH - a.PadH + r * a.DilationH;
            if (h < 0 || h >= a.H) continue;
            for (int t = 0; t < a.S; t++)
            {
                int w = q * a.StrideW - a.PadW + t * a.DilationW;
                if (w < 0 || w >= a.W) continue;
                float v = x[img + h * a.W + w];
                if (at < 0 || v > best || XMath.IsNaN(v)) { best = v; at = h * a.W + w; }
            }
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
        float sum = 0f;
        for (int r = a.R - 1; r >= 0; r--)
        {
            int p = Covering(h, r, a.PadH, a.DilationH, a.StrideH, a.P);
            if (p < 0) continue;
            for (int t = a.S - 1; t >= 0; t--)
            {
                int q = Covering(w, t, a.PadW, a.DilationW, a.StrideW, a.Q);
                if (q < 0) continue;
                long o = outs + (long)p * a.Q + q;
                if (argmax[o] == self) sum += dy[o];
            }
        }
        dx[i] = sum;
    }

    /// <summary>Output o: the window sum (padding as zeros) divided by the window's divisor.</summary>
    public static void AvgForwardKernel(Index1D o, ArrayView<float> x, ArrayView<float> y, PoolGeometry a)
    {
        int q = (int)(o % a.Q), p = (int)(o / a.Q % a.P);
        long img = o / ((long)a.P * a.Q) * a.H * a.W;
        int h0 = XMath.Max(0, p * a.StrideH - a.PadH), h1 = XMath.Min(a.H, p * a.StrideH - a.PadH + a.R);
        int w0 = XMath.Max(0, q * a.StrideW - a.PadW), w1 = XMath.Min(a.W, q * a.StrideW - a.PadW + a.S);
        float sum = 0f;
        for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++) sum += x[img + h * a.W + w];
        y[o] = sum * (1f / Divisor(p, q, a));
    }

    /// <summary>Input pixel i: dx = Σ dy/divisor over the windows that cover it.</summary>
    public static void AvgBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, PoolGeometry a)
    {
        int w = (int)(i % a.W), h = (int)(i / a.W % a.H);
        long outs = i / ((long)a.H * a.W) * a.P * a.Q;
        float sum = 0f;
        for (int r = a.R - 1; r >= 0; r--)
        {
            int p = Covering(h, r, a.PadH, 1, a.StrideH, a.P);
            if (p < 0) continue;
            for (int t = a.S - 1; t >= 0; t--)
            {
                int q = Covering(w, t, a.PadW, 1, a.StrideW, a.Q);
                if (q < 0) continue;
                sum += dy[outs + (long)p * a.Q + q] * (1f / Divisor(p, q, a));
            }
        }
        dx[i] = sum;
    }

    // The output along one axis whose tap `tap` reads coordinate x (o·stride − pad + tap·dilation = x), or −1 when
    // none does. The numerator is checked non-negative before dividing (integer division truncates toward zero).
    private static int Covering(int x, int tap, int pad, int dilation, int stride, int count)
    {
        int num = x + pad - tap * dilation;
        if (num < 0 || num % stride != 0) return -1;
        int o = num / stride;
        return o < count ? o : -1;
    }

    // The cells window (p, q) averages over: clipped to the padded input with count_include_pad, else to the input.
    private static int Divisor(int p, int q, PoolGeometry a)
    {
        int hs = p * a.StrideH - a.PadH, ws = q * a.StrideW - a.PadW;
        int he = XMath.Min(hs + a.R, a.H + a.PadH), we = XMath.Min(ws + a.S, a.W + a.PadW);
        if (a.CountIncludePad == 0) { hs = XMath.Max(hs, 0); ws = XMath.Max(ws, 0); he = XMath.Min(he, a.H); we = XMath.Min(we, a.W); }
        return (he - hs) * (we - ws);
    }
}
