// Pool: 2-d max and average pooling on NCHW tensors, forward and backward (PyTorch semantics).
//
// Max: each output is the max of its window (padding never wins: out-of-range cells are skipped); the
// flat index (h·W + w) of the winner is kept so backward can route dy to it (the first maximum wins ties).
// Average: the window sum divided by R·S, padding cells counted as zeros (count_include_pad = true,
// PyTorch's default); backward spreads dy/(R·S) over the window.
// FLOPs: R·S per output. Bytes: read x once (windows overlap in cache), write y. Bound: memory.
// Reference: the loops in Tests/Kernels/ConvPoolNormTests.cs (independent float64 versions).
using System.Numerics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Sizes of a pooling window over [N, C, H, W].</summary>
public readonly record struct Pool2dShape(int N, int C, int H, int W, int R, int S, int StrideH, int StrideW, int PadH = 0, int PadW = 0)
{
    /// <summary>Output height.</summary>
    public int P => (H + 2 * PadH - R) / StrideH + 1;
    /// <summary>Output width.</summary>
    public int Q => (W + 2 * PadW - S) / StrideW + 1;

    /// <summary>Throws naming <paramref name="op"/> when the sizes are invalid.</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || PadH < 0 || PadW < 0)
            throw new ArgumentException($"{op}: invalid sizes {this}");
        if (PadH > R / 2 || PadW > S / 2) throw new ArgumentException($"{op}: padding {PadH}x{PadW} must be at most half the {R}x{S} window (as in PyTorch)");
        if (P <= 0 || Q <= 0) throw new ArgumentException($"{op}: a {R}x{S} window does not fit a {H}x{W} input");
    }
}

/// <summary>Pooling kernels.</summary>
public static class Pool2d
{
    /// <summary>Max pooling; <paramref name="argmax"/> receives the winner's h·W + w per output (for backward).</summary>
    public static void MaxForward<T>(ReadOnlySpan<T> x, Span<T> y, Span<long> argmax, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        s.Validate("Pool2d.MaxForward");
        int P = s.P, Q = s.Q, planes = s.N * s.C;
        for (int pl = 0; pl < planes; pl++)
        {
            var img = x.Slice(pl * s.H * s.W, s.H * s.W);
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    T best = T.Zero; int at = -1;
                    for (int r = 0; r < s.R; r++)
                    {
                        int h = p * s.StrideH - s.PadH + r;
                        if ((uint)h >= (uint)s.H) continue;
                        for (int t = 0; t < s.S; t++)
                        {
                            int w = q * s.StrideW - s.PadW + t;
                            if ((uint)w >= (uint)s.W) continue;
                            T v = img[h * s.W + w];
                            if (at < 0 || v > best || T.IsNaN(v) && !T.IsNaN(best)) { best = v; at = h * s.W + w; }
                        }
                    }
                    int o = (pl * P + p) * Q + q;
                    y[o] = best; argmax[o] = at;
                }
        }
    }

    /// <summary>dx (overwritten) from dy and the saved argmax.</summary>
    public static void MaxBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<long> argmax, Span<T> dx, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        s.Validate("Pool2d.MaxBackward");
        int pq = s.P * s.Q, hw = s.H * s.W;
        dx.Slice(0, s.N * s.C * hw).Clear();
        for (int pl = 0; pl < s.N * s.C; pl++)
            for (int o = 0; o < pq; o++) dx[pl * hw + (int)argmax[pl * pq + o]] += dy[pl * pq + o];
    }

    /// <summary>Average pooling with zero padding counted in the divisor.</summary>
    public static void AvgForward<T>(ReadOnlySpan<T> x, Span<T> y, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        s.Validate("Pool2d.AvgForward");
        int P = s.P, Q = s.Q;
        T inv = T.One / T.CreateTruncating(s.R * s.S);
        for (int pl = 0; pl < s.N * s.C; pl++)
        {
            var img = x.Slice(pl * s.H * s.W, s.H * s.W);
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    T sum = T.Zero;
                    for (int r = 0; r < s.R; r++)
                    {
                        int h = p * s.StrideH - s.PadH + r;
                        if ((uint)h >= (uint)s.H) continue;
                        for (int t = 0; t < s.S; t++)
                        {
                            int w = q * s.StrideW - s.PadW + t;
                            if ((uint)w < (uint)s.W) sum += img[h * s.W + w];
                        }
                    }
                    y[(pl * P + p) * Q + q] = sum * inv;
                }
        }
    }

    /// <summary>dx (overwritten) for average pooling.</summary>
    public static void AvgBackward<T>(ReadOnlySpan<T> dy, Span<T> dx, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        s.Validate("Pool2d.AvgBackward");
        int P = s.P, Q = s.Q, hw = s.H * s.W;
        T inv = T.One / T.CreateTruncating(s.R * s.S);
        dx.Slice(0, s.N * s.C * hw).Clear();
        for (int pl = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    T g = dy[(pl * P + p) * Q + q] * inv;
                    for (int r = 0; r < s.R; r++)
                    {
                        int h = p * s.StrideH - s.PadH + r;
                        if ((uint)h >= (uint)s.H) continue;
                        for (int t = 0; t < s.S; t++)
                        {
                            int w = q * s.StrideW - s.PadW + t;
                            if ((uint)w < (uint)s.W) dx[pl * hw + h * s.W + w] += g;
                        }
                    }
                }
    }
}
