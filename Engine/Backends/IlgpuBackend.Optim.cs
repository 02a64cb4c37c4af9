using AttnCore.Kernels.Gpu;

namespace AttnCore.Backends;

// The optimizer updates on ILGPU devices (the kernels: Kernels/Gpu/Optim.cs).
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void AdamUpdate(Storage param, Storage grad, Storage expAvg, Storage expAvgSq, long length, AdamHyper h)
    {
        const string op = "AdamUpdate";
        if (param.DType != DType.Float32) throw WrongType(op, param.DType);
        float bc1 = 1 - MathF.Pow((float)h.Beta1, h.Step), bc2 = 1 - MathF.Pow((float)h.Beta2, h.Step);
        _k.Adam.Value(Threads(op, length), S(param, op).Floats, S(grad, op).Floats, S(expAvg, op).Floats, S(expAvgSq, op).Floats,
            (float)h.LearningRate, (float)h.Beta1, (float)h.Beta2, (float)h.Eps, (float)h.WeightDecay, (float)h.LearningRate / bc1, 1 / MathF.Sqrt(bc2), h.Decoupled ? 1 : 0);
    }

    /// <inheritdoc/>
    public void SgdUpdate(Storage param, Storage grad, Storage? momentumBuffer, long length, SgdHyper hyper)
    {
        const string op = "SgdUpdate";
        var (ps, gs) = (Float(param, op), Float(grad, op));
        if (length < 0 || param.Length < length || grad.Length < length)
            throw new ArgumentException($"IlgpuBackend.{op}: {length} elements do not fit param ({param.Length}) and grad ({grad.Length})");
        IlgpuStorage? bs = null;
        if (hyper.Momentum != 0)
        {
            if (momentumBuffer is null) throw new ArgumentException($"IlgpuBackend.{op}: momentum {hyper.Momentum} needs a momentum buffer");
            bs = Float(momentumBuffer, op);
            if (momentumBuffer.Length < length) throw new ArgumentException($"IlgpuBackend.{op}: the momentum buffer has {momentumBuffer.Length} elements, needs {length}");
        }
        if (length == 0) return;
        var args = new SgdArgs
        {
            LearningRate = (float)hyper.LearningRate, Momentum = (float)hyper.Momentum, Dampening = (float)hyper.Dampening, WeightDecay = (float)hyper.WeightDecay,
            Nesterov = hyper.Nesterov ? 1 : 0, FirstStep = hyper.FirstStep ? 1 : 0,
        };
        _k.Sgd.Value(Threads(op, length), ps.Floats, gs.Floats, (bs ?? ps).Floats, args);
    }
}
