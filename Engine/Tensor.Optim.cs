using AttnCore.Backends;

namespace AttnCore;

// Fused in-place optimizer updates: one pass over parameter, gradient and state, on the parameter's device.
public sealed partial class Tensor
{
    private void CheckOptimOperand(string op, Tensor t, string name)
    {
        SameDevice(op, this, t); SameDType(op, this, t);
        if (!t.Layout.Shape.AsSpan().SequenceEqual(Layout.Shape))
            throw new ArgumentException($"{op}: {name} has shape {t.Describe()}, the parameter {Describe()}");
        if (!t.IsContiguous || t.Layout.Offset != 0)
            throw new ArgumentException($"{op}: {name} must be a contiguous tensor that owns its storage from element 0");
    }

    /// <summary>One Adam (L2) or AdamW (decoupled) step on this parameter, in place; updates the moment buffers too.</summary>
    internal void AdamUpdate_(Tensor grad, Tensor expAvg, Tensor expAvgSq, AdamHyper hyper)
    {
        RequireFloat("AdamUpdate");
        CheckOptimOperand("AdamUpdate", this, "parameter");
        CheckOptimOperand("AdamUpdate", grad, "grad");
        CheckOptimOperand("AdamUpdate", expAvg, "exp_avg");
        CheckOptimOperand("AdamUpdate", expAvgSq, "exp_avg_sq");
        if (hyper.Step < 1) throw new ArgumentException($"AdamUpdate: step counts from 1, got {hyper.Step}");
        Backend.AdamUpdate(Storage, grad.Storage, expAvg.Storage, expAvgSq.Storage, Numel, hyper);
        Storage.BumpVersion(); expAvg.Storage.BumpVersion(); expAvgSq.Storage.BumpVersion();
    }

    /// <summary>One SGD step on this parameter, in place (momentum buffer required when momentum is non-zero).</summary>
    internal void SgdUpdate_(Tensor grad, Tensor? momentumBuffer, SgdHyper hyper)
    {
        RequireFloat("SgdUpdate");
        CheckOptimOperand("SgdUpdate", this, "parameter");
        CheckOptimOperand("SgdUpdate", grad, "grad");
        if (hyper.Momentum != 0)
        {
            if (momentumBuffer is null) throw new ArgumentException("SgdUpdate: momentum is non-zero but no momentum buffer was given");
            CheckOptimOperand("SgdUpdate", momentumBuffer, "momentum_buffer");
        }
        Backend.SgdUpdate(Storage, grad.Storage, hyper.Momentum != 0 ? momentumBuffer!.Storage : null, Numel, hyper);
        Storage.BumpVersion(); momentumBuffer?.Storage.BumpVersion();
    }
}
