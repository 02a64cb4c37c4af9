// Pool2dShape: the sizes of a 2-d pooling window, shared by the CPU kernels (Kernels/Cpu/Pool.cs) and the ILGPU
// kernels (Kernels/Gpu/Pool.cs), so both backends size and validate pooling by PyTorch's rules.
//
// Output size per axis, as PyTorch's pooling_output_shape: floor((in + 2·pad − dilation·(kernel − 1) − 1
// [+ stride − 1 in ceil mode]) / stride) + 1, one less in ceil mode when the last window starts in the right padding.
namespace AttnCore.Kernels;

/// <summary>
/// Sizes of a pooling window over x [N, C, H, W]; y is [N, C, P, Q]. Dilation applies to max pooling (average
/// pooling requires 1); <paramref name="CountIncludePad"/> to average pooling.
/// </summary>
public readonly record struct Pool2dShape(int N, int C, int H, int W, int R, int S, int StrideH, int StrideW, int PadH = 0, int PadW = 0,
    int DilationH = 1, int DilationW = 1, bool CeilMode = false, bool CountIncludePad = true)
{
    /// <summary>Output height.</summary>
    public int P => OutputSize(H, R, StrideH, PadH, DilationH, CeilMode);
    /// <summary>Output width.</summary>
    public int Q => OutputSize(W, S, StrideW, PadW, DilationW, CeilMode);
    /// <summary>Elements of x: N·C·H·W.</summary>
    public long XLength => (long)N * C * H * W;
    /// <summary>Elements of y (and of argmax): N·C·P·Q.</summary>
    public long YLength => (long)N * C * P * Q;

    /// <summary>
    /// Output length along one axis, as PyTorch's pooling_output_shape: floor((input + 2·pad − dilation·(kernel − 1) − 1
    /// [+ stride − 1 in ceil mode]) / stride) + 1, and in ceil mode one less when the last window would start in the right
    /// padding ((out − 1)·stride ≥ input + pad). 0 when the stride is not positive (rejected by <see cref="Validate"/>).
    /// </summary>
    public static int OutputSize(int input, int kernel, int stride, int pad, int dilation, bool ceilMode)
    {
        if (stride <= 0) return 0;
        long span = (long)input + 2L * pad - (long)dilation * (kernel - 1) - 1 + (ceilMode ? stride - 1 : 0);
        long o = Conv2dShape.FloorDiv(span, stride) + 1;
        if (ceilMode && (o - 1) * stride >= (long)input + pad) o--;
        return (int)Math.Clamp(o, int.MinValue, int.MaxValue);
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming <paramref name="op"/> and the sizes when they are invalid (PyTorch's checks).</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0)
            throw new ArgumentException($"{op}: input must be [N, C, H, W] with C, H, W at least 1 (N may be 0), got [{N},{C},{H},{W}]");
        if (R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || DilationH <= 0 || DilationW <= 0 || PadH < 0 || PadW < 0)
            throw new ArgumentException($"{op}: kernel {R}x{S}, stride {StrideH}x{StrideW} and dilation {DilationH}x{DilationW} must be positive and padding {PadH}x{PadW} non-negative");
        if (PadH > R / 2 || PadW > S / 2) throw new ArgumentException($"{op}: padding {PadH}x{PadW} must be at most half the {R}x{S} window (as in PyTorch)");
        if (P <= 0 || Q <= 0)
            throw new ArgumentException($"{op}: a {R}x{S} window (stride {StrideH}x{StrideW}, padding {PadH}x{PadW}, dilation {DilationH}x{DilationW}{(CeilMode ? ", ceil mode" : "")}) " +
                $"does not fit a {H}x{W} input: the output would be {P}x{Q}");
        if (XLength > int.MaxValue || YLength > int.MaxValue) throw new ArgumentException($"{op}: sizes too large for 32-bit indexing ({this})");
    }

    /// <summary>Cells of window (p, q) that the average divides by (see the file header).</summary>
    public int AvgDivisor(int p, int q)
    {
        int hs = p * StrideH - PadH, ws = q * StrideW - PadW;
        int he = Math.Min(hs + R, H + PadH), we = Math.Min(ws + S, W + PadW);
        if (!CountIncludePad) { hs = Math.Max(hs, 0); ws = Math.Max(ws, 0); he = Math.Min(he, H); we = Math.Min(we, W); }
        return (he - hs) * (we - ws);
    }
}
