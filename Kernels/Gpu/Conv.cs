// Conv (GPU): 2-d convolution (cross-correlation, as PyTorch's conv2d) over NCHW float32 tensors, as
// im2col + the tiled GEMM of Gemm.cs. The backend (IlgpuBackend.Conv.cs) drives these kernels.
//
// Algorithm: a chunk of nb images and one group g at a time. Im2ColKernel unrolls the patches into
//   col[(c, r, t), b·PQ + j] = x[n0 + b, g·C/G + c, p·sh − ph + r·dh, q·sw − pw + t·dw]   (0 outside)
// a (C/G·R·S) x (nb·P·Q) matrix: the images of the chunk sit side by side, so one GEMM serves them all.
//   forward:          out = W[g] @ col                     (K/G x nb·PQ); UnpackOutputKernel adds the bias and
//                                                           writes out[k, b·PQ + j] to y[n0 + b, g·K/G + k, j]
//   backward weights: dW[g] (+)= dyT @ colᵀ                dyT = PackOutputGradKernel(dy), the inverse layout move
//   backward data:    dcol = W[g]ᵀ @ dyT, then Col2ImKernel: dx = col2im(dcol)
// Col2ImKernel is a gather: one thread per input pixel sums the dcol entries of the (r, t) taps whose output
// position (p, q) lands on it, in a fixed order. The scatter form (one thread per dcol entry adding into dx)
// would need float atomics: nondeterministic sums, and missing on OpenCL 1.2 (see Index.cs).
// The bias gradient is a plain Sum over N, P, Q of dy (Reduce.cs on a strided view), so no kernel here.
// FLOPs: 2·N·K·(C/G)·R·S·P·Q per pass (the GEMMs). Bytes beyond the GEMM: im2col writes and the GEMM reads
// N·C·R·S·P·Q col values (R·S times the input), the layout moves read and write y once. Bound: the GEMM for
// wide channel counts; the col traffic for thin ones (a 3-channel first layer).
// Reference: the SIMD CPU backend (Kernels/Cpu/Conv.cs, itself checked against direct float64 loops);
// Tests/Gpu/ConvGpuTests.cs compares the two.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>The sizes of a convolution as the GPU kernels read them (see Kernels/Common/Conv2dShape.cs).</summary>
public struct ConvGeometry
{
    /// <summary>x is [N, C, H, W], w [K, C/G, R, S], y [N, K, P, Q].</summary>
    public int N, C, H, W, K, R, S, P, Q;
    /// <summary>Strides, paddings and dilations along height and width.</summary>
    public int StrideH, StrideW, PadH, PadW, DilationH, DilationW;
    /// <summary>Channel groups G.</summary>
    public int Groups;

    /// <summary>The geometry of a validated shape.</summary>
    public static ConvGeometry From(Conv2dShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, K = s.K, R = s.R, S = s.S, P = s.P, Q = s.Q,
        StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW, DilationH = s.DilationH, DilationW = s.DilationW, Groups = s.Groups,
    };
}

/// <summary>im2col, col2im and the layout moves between GEMM output and NCHW.</summary>
public static class Conv
{
    /// <summary>
    /// Element i of col [(C/G)·R·S, nb·P·Q] for images n0 .. n0+nb−1 and group g (launch over the col size).
    /// </summary>
    public static void Im2ColKernel(Index1D i, ArrayView<float> x, ArrayView<float> col, ConvGeometry a, int n0, int nb, int g)
    {
        long pq = (long)a.P * a.Q, cols = nb * pq;
        long row = i / cols, rem = i % cols;
        int b = (int)(rem / pq), j = (int)(rem % pq);
        int p = j / a.Q, q = j % a.Q;
        int t = (int)(row % a.S), r = (int)(row / a.S % a.R), c = (int)(row / ((long)a.R * a.S));
        int h = p * a.StrideH - a.PadH + r * a.DilationH, w = q * a.StrideW - a.PadW + t * a.DilationW;
        float v = 0f;
        if (h >= 0 && h < a.H && w >= 0 && w < a.W)
            v = x[(((long)(n0 + b) * a.C + g * (a.C / a.Groups) + c) * a.H + h) * a.W + w];
        col[i] = v;
    }

    /// <summary>
    /// The adjoint of <see cref="Im2ColKernel"/> as a gather: thread i is pixel (b, c, h, w) of group g's input
    /// channels (launch over nb·(C/G)·H·W); it overwrites dx with the sum of the dcol entries that read it,
    /// taps in (r, t) order.
    /// </summary>
    public static void Col2ImKernel(Index1D i, ArrayView<float> dcol, ArrayView<float> dx, ConvGeometry a, int n0, int nb, int g)
    {
        int cg = a.C / a.Groups;
        int w = (int)(i % a.W), h = (int)(i / a.W % a.H), c = (int)(i / ((long)a.W * a.H) % cg), b = (int)(i / ((long)a.W * a.H * cg));
        long pq = (long)a.P * a.Q, cols = nb * pq;
        float sum = 0f;
        for (int r = 0; r < a.R; r++)
        {
            // Output row p reads input row h through tap r when p·sh − ph + r·dh = h.
            int hp = h + a.PadH - r * a.DilationH;
            if (hp < 0 || hp % a.StrideH != 0) continue;
            int p = hp / a.StrideH;
            if (p >= a.P) continue;
            for (int t = 0; t < a.S; t++)
            {
                int wq = w + a.PadW - t * a.DilationW;
                if (wq < 0 || wq % a.StrideW != 0) continue;
                int q = wq / a.StrideW;
                if (q >= a.Q) continue;
                sum += dcol[(((long)c * a.R + r) * a.S + t) * cols + b * pq + (long)p * a.Q + q];
            }
        }
        dx[(((long)(n0 + b) * a.C + g * cg + c) * a.H + h) * a.W + w] = sum;
    }

    /// <summary>
    /// y[n0 + b, g·K/G + k, j] = out[k, b·PQ + j] + bias[g·K/G + k] (bias when <paramref name="hasBias"/> is 1);
    /// launch over (K/G)·nb·P·Q.
    /// </summary>
    public static void UnpackOutputKernel(Index1D i, ArrayView<float> output, ArrayView<float> y, ArrayView<float> bias, ConvGeometry a, int n0, int nb, int g, int hasBias)
    {
        long pq = (long)a.P * a.Q, cols = nb * pq;
        int k = (int)(i / cols), b = (int)(i % cols / pq);
        long j = i % pq;
        int channel = g * (a.K / a.Groups) + k;
        float v = output[i];
        if (hasBias != 0) v += bias[channel];
        y[((long)(n0 + b) * a.K + channel) * pq + j] = v;
    }

    /// <summary>dyT[k, b·PQ + j] = dy[n0 + b, g·K/G + k, j]: the inverse move of <see cref="UnpackOutputKernel"/>.</summary>
    public static void PackOutputGradKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dyT, ConvGeometry a, int n0, int nb, int g)
    {
        long pq = (long)a.P * a.Q, cols = nb * pq;
        int k = (int)(i / cols), b = (int)(i % cols / pq);
        long j = i % pq;
        dyT[i] = dy[((long)(n0 + b) * a.K + g * (a.K / a.Groups) + k) * pq + j];
    }

    /// <summary>dst[offset + i] = src[i], or += when <paramref name="add"/> is 1 (weight gradients over image chunks).</summary>
    public static void AddIntoKernel(Index1D i, ArrayView<float> src, ArrayView<float> dst, long offset, int add)
    {
        float v = src[i];
        if (add != 0) v += dst[offset + i];
        dst[offset + i] = v;
    }
}
