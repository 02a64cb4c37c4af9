using System.Numerics;
using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    private static ReadOnlySpan<T> RO<T>(Storage? s) where T : unmanaged => s is null ? default : Data<T>(s).AsSpan(0, (int)s.Length);
    private static Span<T> RW<T>(Storage? s) where T : unmanaged => s is null ? default : Data<T>(s).AsSpan(0, (int)s.Length);

    /// <inheritdoc/>
    public void Conv2dForward(Storage x, Storage w, Storage? bias, Storage y, in Conv2dShape shape)
    {
        if (x.DType == DType.Float32) Conv2d.Forward(RO<float>(x), RO<float>(w), RO<float>(bias), RW<float>(y), shape);
        else if (x.DType == DType.Float64) Conv2d.Forward(RO<double>(x), RO<double>(w), RO<double>(bias), RW<double>(y), shape);
        else throw new NotSupportedException($"Conv2d: not defined for {x.DType.Name()} tensors");
    }

    /// <inheritdoc/>
    public void Conv2dBackward(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in Conv2dShape shape)
    {
        if (x.DType == DType.Float32) ConvBackward<float>(dy, x, w, dx, dw, dbias, shape);
        else if (x.DType == DType.Float64) ConvBackward<double>(dy, x, w, dx, dw, dbias, shape);
        else throw new NotSupportedException($"Conv2d: not defined for {x.DType.Name()} tensors");
    }

    private static void ConvBackward<T>(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in Conv2dShape s) where T : unmanaged, INumber<T>
    {
        if (dx is not null) Conv2d.BackwardData(RO<T>(dy), RO<T>(w), RW<T>(dx), s);
        if (dw is not null) Conv2d.BackwardWeights(RO<T>(dy), RO<T>(x), RW<T>(dw), RW<T>(dbias), s);
        else if (dbias is not null)
        {
            // Bias gradient alone: the sum of dy over N, P, Q per output channel.
            var d = RO<T>(dy); var b = RW<T>(dbias); int pq = s.P * s.Q;
            for (int k = 0; k < s.K; k++) { T sum = T.Zero; for (int n = 0; n < s.N; n++) foreach (var v in d.Slice((n * s.K + k) * pq, pq)) sum += v; b[k] = sum; }
        }
    }

    /// <inheritdoc/>
    public void Pool2dForward(bool max, Storage x, Storage y, Storage? argmax, in Pool2dShape shape)
    {
        switch (x.DType)
        {
            case DType.Float32: if (max) Pool2d.MaxForward(RO<float>(x), RW<float>(y), RW<long>(argmax), shape); else Pool2d.AvgForward(RO<float>(x), RW<float>(y), shape); break;
            case DType.Float64: if (max) Pool2d.MaxForward(RO<double>(x), RW<double>(y), RW<long>(argmax), shape); else Pool2d.AvgForward(RO<double>(x), RW<double>(y), shape); break;
            default: throw new NotSupportedException($"Pool2d: not defined for {x.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void Pool2dBackward(bool max, Storage dy, Storage? argmax, Storage dx, in Pool2dShape shape)
    {
        switch (dy.DType)
        {
            case DType.Float32: if (max) Pool2d.MaxBackward(RO<float>(dy), RO<long>(argmax), RW<float>(dx), shape); else Pool2d.AvgBackward(RO<float>(dy), RW<float>(dx), shape); break;
            case DType.Float64: if (max) Pool2d.MaxBackward(RO<double>(dy), RO<long>(argmax), RW<double>(dx), shape); else Pool2d.AvgBackward(RO<double>(dy), RW<double>(dx), shape); break;
            default: throw new NotSupportedException($"Pool2d: not defined for {dy.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void BatchNormForward(bool training, Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage invstd, Storage? runningMean, Storage? runningVar,
        int n, int c, int hw, double momentum, double eps, bool relu = false)
    {
        switch (x.DType)
        {
            case DType.Float32 when relu:
                if (training) BatchNorm.ForwardTrainingRelu(RO<float>(x), RO<float>(gamma), RO<float>(beta), RW<float>(y), RW<float>(mean), RW<float>(invstd), RW<float>(runningMean), RW<float>(runningVar), n, c, hw, (float)momentum, (float)eps);
                else BatchNorm.ForwardInferenceRelu(RO<float>(x), RO<float>(gamma), RO<float>(beta), RW<float>(y), RO<float>(runningMean), RO<float>(runningVar), n, c, hw, (float)eps);
                break;
            case DType.Float64 when relu:
                if (training) BatchNorm.ForwardTrainingRelu(RO<double>(x), RO<double>(gamma), RO<double>(beta), RW<double>(y), RW<double>(mean), RW<double>(invstd), RW<double>(runningMean), RW<double>(runningVar), n, c, hw, momentum, eps);
                else BatchNorm.ForwardInferenceRelu(RO<double>(x), RO<double>(gamma), RO<double>(beta), RW<double>(y), RO<double>(runningMean), RO<double>(runningVar), n, c, hw, eps);
                break;
            case DType.Float32:
                if (training) BatchNorm.ForwardTraining(RO<float>(x), RO<float>(gamma), RO<float>(beta), RW<float>(y), RW<float>(mean), RW<float>(invstd), RW<float>(runningMean), RW<float>(runningVar), n, c, hw, (float)momentum, (float)eps);
                else BatchNorm.ForwardInference(RO<float>(x), RO<float>(gamma), RO<float>(beta), RW<float>(y), RO<float>(runningMean), RO<float>(runningVar), n, c, hw, (float)eps);
                break;
            case DType.Float64:
                if (training) BatchNorm.ForwardTraining(RO<double>(x), RO<double>(gamma), RO<double>(beta), RW<double>(y), RW<double>(mean), RW<double>(invstd), RW<double>(runningMean), RW<double>(runningVar), n, c, hw, momentum, eps);
                else BatchNorm.ForwardInference(RO<double>(x), RO<double>(gamma), RO<double>(beta), RW<double>(y), RO<double>(runningMean), RO<double>(runningVar), n, c, hw, eps);
                break;
            default: throw new NotSupportedException($"BatchNorm2d: not defined for {x.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    // The fused ReLU's mask is recomputed from x, the statistics, gamma and beta (BatchNorm.BackwardRelu), so the saved
    // output is not read.
    public void BatchNormBackward(Storage dy, Storage x, Storage mean, Storage invstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int n, int c, int hw,
        Storage? reluOutput = null, Storage? beta = null)
    {
        switch (x.DType)
        {
            case DType.Float32 when reluOutput is not null: BatchNorm.BackwardRelu(RO<float>(dy), RO<float>(x), RO<float>(mean), RO<float>(invstd), RO<float>(gamma), RO<float>(beta), RW<float>(dx), RW<float>(dgamma), RW<float>(dbeta), n, c, hw); break;
            case DType.Float64 when reluOutput is not null: BatchNorm.BackwardRelu(RO<double>(dy), RO<double>(x), RO<double>(mean), RO<double>(invstd), RO<double>(gamma), RO<double>(beta), RW<double>(dx), RW<double>(dgamma), RW<double>(dbeta), n, c, hw); break;
            case DType.Float32: BatchNorm.Backward(RO<float>(dy), RO<float>(x), RO<float>(mean), RO<float>(invstd), RO<float>(gamma), RW<float>(dx), RW<float>(dgamma), RW<float>(dbeta), n, c, hw); break;
            case DType.Float64: BatchNorm.Backward(RO<double>(dy), RO<double>(x), RO<double>(mean), RO<double>(invstd), RO<double>(gamma), RW<double>(dx), RW<double>(dgamma), RW<double>(dbeta), n, c, hw); break;
            default: throw new NotSupportedException($"BatchNorm2d: not defined for {x.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void ReluBackward(Storage dy, Storage y, Storage dx, long count)
    {
        if (count < 0 || dy.Length < count || y.Length < count || dx.Length < count)
            throw new ArgumentException($"ReluBackward: count {count} with dy of {dy.Length}, y of {y.Length} and dx of {dx.Length} elements");
        switch (y.DType)
        {
            case DType.Float32: BatchNorm.ReluBackward(RO<float>(dy)[..(int)count], RO<float>(y)[..(int)count], RW<float>(dx)[..(int)count]); break;
            case DType.Float64: BatchNorm.ReluBackward(RO<double>(dy)[..(int)count], RO<double>(y)[..(int)count], RW<double>(dx)[..(int)count]); break;
            default: throw new NotSupportedException($"ReluBackward: not defined for {y.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void AddRelu(Storage a, Storage b, Storage y, long count)
    {
        if (count < 0 || a.Length < count || b.Length < count || y.Length < count)
            throw new ArgumentException($"AddRelu: count {count} with a of {a.Length}, b of {b.Length} and y of {y.Length} elements");
        switch (y.DType)
        {
            case DType.Float32: Kernels.Cpu.AddRelu.Forward(RO<float>(a)[..(int)count], RO<float>(b)[..(int)count], RW<float>(y)[..(int)count]); break;
            case DType.Float64: Kernels.Cpu.AddRelu.Forward(RO<double>(a)[..(int)count], RO<double>(b)[..(int)count], RW<double>(y)[..(int)count]); break;
            default: throw new NotSupportedException($"AddRelu: not defined for {y.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void ScaleAddRelu(Storage x, Storage s, Storage r, Storage y, int runs, int runLength)
    {
        switch (y.DType)
        {
            case DType.Float32: Kernels.Cpu.ScaleAddRelu.Forward(RO<float>(x), RO<float>(s), RO<float>(r), RW<float>(y), runs, runLength); break;
            case DType.Float64: Kernels.Cpu.ScaleAddRelu.Forward(RO<double>(x), RO<double>(s), RO<double>(r), RW<double>(y), runs, runLength); break;
            default: throw new NotSupportedException($"ScaleAddRelu: not defined for {y.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void ScaleAddReluBackward(Storage dy, Storage y, Storage x, Storage s, Storage? dx, Storage? ds, Storage? dr, int runs, int runLength)
    {
        switch (y.DType)
        {
            case DType.Float32: Kernels.Cpu.ScaleAddRelu.Backward(RO<float>(dy), RO<float>(y), RO<float>(x), RO<float>(s), RW<float>(dx), RW<float>(ds), RW<float>(dr), runs, runLength); break;
            case DType.Float64: Kernels.Cpu.ScaleAddRelu.Backward(RO<double>(dy), RO<double>(y), RO<double>(x), RO<double>(s), RW<double>(dx), RW<double>(ds), RW<double>(dr), runs, runLength); break;
            default: throw new NotSupportedException($"ScaleAddRelu: not defined for {y.DType.Name()} tensors");
        }
    }
}
