// Conv2dShape: the sizes of a 2-d convolution, shared by the CPU kernels (Kernels/Cpu/Conv.cs) and the ILGPU
// kernels (Kernels/Gpu/Conv.cs), so both backends validate and size a convolution by the same rules.
//
// Output size per axis, as PyTorch's conv2d documents it: floor((in + 2·pad − dilation·(kernel − 1) − 1) / stride) + 1,
// with floor division, so a kernel wider than the padded input is rejected instead of giving one output.
namespace AttnCore.Kernels;

/// <summary>Sizes of a 2-d convolution: x [N, C, H, W], w [K, C/Groups, R, S], y [N, K, P, Q].</summary>
public readonly record struct Conv2dShape(int N, int C, int H, int W, int K, int R, int S, int StrideH = 1, int StrideW = 1, int PadH = 0, int PadW = 0, int DilationH = 1, int DilationW = 1, int Groups = 1)
{
    /// <summary>Output height.</summary>
    public int P => OutputSize(H, R, StrideH, PadH, DilationH);
    /// <summary>Output width.</summary>
    public int Q => OutputSize(W, S, StrideW, PadW, DilationW);
    /// <summary>Elements of x: N·C·H·W.</summary>
    public long XLength => (long)N * C * H * W;
    /// <summary>Elements of w: K·(C/Groups)·R·S.</summary>
    public long WLength => (long)K * (C / Math.Max(1, Groups)) * R * S;
    /// <summary>Elements of y: N·K·P·Q.</summary>
    public long YLength => (long)N * K * P * Q;

    /// <summary>Throws an <see cref="ArgumentException"/> naming <paramref name="op"/> and the sizes when the shape is invalid.</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || PadH < 0 || PadW < 0 || DilationH <= 0 || DilationW <= 0 || Groups <= 0)
            throw new ArgumentException($"{op}: invalid sizes {this}");
        if (C % Groups != 0 || K % Groups != 0)
            throw new ArgumentException($"{op}: C={C} input and K={K} output channels must both be divisible by groups={Groups}");
        if (P <= 0 || Q <= 0)
            throw new ArgumentException($"{op}: a {R}x{S} kernel (dilation {DilationH}x{DilationW}, padding {PadH}x{PadW}) does not fit a {H}x{W} input: " +
                $"the padded input is {H + 2L * PadH}x{W + 2L * PadW}, the dilated kernel {DilationH * (R - 1L) + 1}x{DilationW * (S - 1L) + 1} (kernel larger than the padded input, as PyTorch rejects)");
        if (XLength > int.MaxValue || YLength > int.MaxValue || (long)(C / Groups) * R * S * P * Q > int.MaxValue)
            throw new ArgumentException($"{op}: sizes too large for 32-bit indexing ({this})");
    }

    /// <summary>
    /// Output length along one axis, as PyTorch's conv2d documents it: floor((input + 2·pad − dilation·(kernel − 1) − 1) / stride) + 1,
    /// with floor (not truncating) division, so a kernel wider than the padded input gives 0 or less instead of 1;
    /// 0 when the stride is not positive (such a shape is rejected by <see cref="Validate"/>).
    /// </summary>
    public static int OutputSize(int input, int kernel, int stride, int pad, int dilation)
    {
        if (stride <= 0) return 0;
        long span = (long)input + 2L * pad - (long)dilation * (kernel - 1) - 1;
        return (int)Math.Clamp(FloorDiv(span, stride) + 1, int.MinValue, int.MaxValue);
    }

    /// <summary>a / b rounded toward negative infinity (b &gt; 0): C#'s / truncates a negative quotient toward zero.</summary>
    internal static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    internal bool IsPointwise => R == 1 && S == 1 && StrideH == 1 && StrideW == 1 && PadH == 0 && PadW == 0;
    internal bool IsDepthwise => Groups == C && Groups == K;
}
