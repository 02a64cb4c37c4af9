using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

// Fused attention on ILGPU devices.
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void AttentionForward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage lse, ReadOnlySpan<byte> keyPaddingMask) => throw NotImplemented("Attention");
    /// <inheritdoc/>
    public void AttentionBackward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage dout, in AttentionOperand doo, Storage lse, ReadOnlySpan<byte> keyPaddingMask,
        Storage dq, in AttentionOperand dqo, Storage dk, in AttentionOperand dko, Storage dv, in AttentionOperand dvo) => throw NotImplemented("AttentionBackward");
}
