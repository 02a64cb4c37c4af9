using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void AdamUpdate(Storage param, Storage grad, Storage expAvg, Storage expAvgSq, long length, AdamHyper h)
    {
        int n = checked((int)length);
        switch (param.DType)
        {
            case DType.Float32:
                Optim.AdamW(Data<float>(param).AsSpan(0, n), Data<float>(grad).AsSpan(0, n), Data<float>(expAvg).AsSpan(0, n), Data<float>(expAvgSq).AsSpan(0, n),
                    (float)h.LearningRate, (float)h.Beta1, (float)h.Beta2, (float)h.Eps, (float)h.WeightDecay, h.Step, h.Decoupled);
                break;
            case DType.Float64:
                Optim.AdamW(Data<double>(param).AsSpan(0, n), Data<double>(grad).AsSpan(0, n), Data<double>(expAvg).AsSpan(0, n), Data<double>(expAvgSq).AsSpan(0, n),
                    h.LearningRate, h.Beta1, h.Beta2, h.Eps, h.WeightDecay, h.Step, h.Decoupled);
                break;
            default: throw new NotSupportedException($"AdamUpdate: not defined for {param.DType.Name()} parameters");
        }
    }

    /// <inheritdoc/>
    public void SgdUpdate(Storage param, Storage grad, Storage? momentumBuffer, long length, SgdHyper h)
    {
        int n = checked((int)length);
        switch (param.DType)
        {
            case DType.Float32:
                Optim.Sgd(Data<float>(param).AsSpan(0, n), Data<float>(grad).AsSpan(0, n), momentumBuffer is null ? default : Data<float>(momentumBuffer).AsSpan(0, n),
                    (float)h.LearningRate, (float)h.Momentum, (float)h.Dampening, (float)h.WeightDecay, h.Nesterov, h.FirstStep);
                break;
            case DType.Float64:
                Optim.Sgd(Data<double>(param).AsSpan(0, n), Data<double>(grad).AsSpan(0, n), momentumBuffer is null ? default : Data<double>(momentumBuffer).AsSpan(0, n),
                    h.LearningRate, h.Momentum, h.Dampening, h.WeightDecay, h.Nesterov, h.FirstStep);
                break;
            default: throw new NotSupportedException($"SgdUpdate: not defined for {param.DType.Name()} parameters");
        }
    }
}
