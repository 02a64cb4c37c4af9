// Optim (GPU): fused in-place optimizer updates, one thread per parameter element, PyTorch's formulas as in
// Kernels/Cpu/Optim.cs.
//
// Adam/AdamW: decoupled: p *= 1 − lr·wd; L2 (Adam): g += wd·p; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
//   p −= (lr/bc1)·m/(sqrt(v)/sqrt(bc2) + eps), the bias corrections computed once per call on the host.
// SGD: d = g + wd·p; with momentum μ: buf = d on the first step, else μ·buf + (1−τ)·d; d = nesterov ? d + μ·buf
//   : buf; p −= lr·d.
// FLOPs: ~12 per element (Adam), ~6 (SGD). Bytes: 28 per element (Adam: read p, g, m, v; write p, m, v),
// 20 (SGD with momentum). Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Tests/Gpu compare the two; Tests/Autograd/OptimizerTests.cs writes the
// formulas out in float64).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The hyper-parameters of one SGD step as the kernel reads them.</summary>
public struct SgdArgs
{
    /// <summary>Learning rate, momentum μ, dampening τ, weight decay.</summary>
    public float LearningRate, Momentum, Dampening, WeightDecay;
    /// <summary>1 for Nesterov momentum; 1 on the step that initialises the momentum buffer.</summary>
    public int Nesterov, FirstStep;
}

/// <summary>Optimizer kernels for ILGPU devices.</summary>
public static class Optim
{
    /// <summary>One Adam (decoupled = 0) or AdamW (decoupled = 1) step per element; stepSize = lr/bc1, invSqrtBc2 = 1/sqrt(bc2).</summary>
    public static void AdamKernel(Index1D i, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v,
        float lr, float beta1, float beta2, float eps, float weightDecay, float stepSize, float invSqrtBc2, int decoupled)
    {
        float pi = p[i], gi = g[i];
        if (decoupled != 0) pi *= 1 - lr * weightDecay; else gi += weightDecay * pi;
        float mi = beta1 * m[i] + (1 - beta1) * gi;
        float vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        p[i] = pi - stepSize * mi / (XMath.Sqrt(vi) * invSqrtBc2 + eps);
        m[i] = mi; v[i] = vi;
    }

    /// <summary>One SGD step per element; <paramref name="buf"/> is read and written only when the momentum is non-zero.</summary>
    public static void SgdKernel(Index1D i, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buf, SgdArgs a)
    {
        float pi = p[i];
        float d = g[i] + a.WeightDecay * pi;
        if (a.Momentum != 0f)
        {
            float b = a.FirstStep != 0 ? d : a.Momentum * buf[i] + (1 - a.Dampening) * d;
            buf[i] = b;
            d = a.Nesterov != 0 ? d + a.Momentum * b : b;
        }
        p[i] = pi - a.LearningRate * d;
    }
}
