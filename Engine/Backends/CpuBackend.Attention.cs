using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public int AttentionMaxDim => Attention.MaxDim;

    /// <inheritdoc/>
    public void AttentionForward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand)
    {
        CheckMask("AttentionForward", q, mask);
        switch (q.DType)
        {
            case DType.Float32:
                Attention.Forward(shape, Span<float>(q), qo, Span<float>(k), ko, Span<float>(v), vo, Span<float>(o), oo, Span<float>(lse), MaskSpan<float>(mask), maskOperand);
                break;
            case DType.Float64:
                AttentionReference.Forward(shape, Span<double>(q), qo, Span<double>(k), ko, Span<double>(v), vo, Span<double>(o), oo, Span<double>(lse), MaskSpan<double>(mask), maskOperand);
                break;
            default: throw new NotSupportedException($"Attention: not defined for {q.DType.Name()} tensors");
        }
    }

    /// <inheritdoc/>
    public void AttentionBackward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage dout, in AttentionOperand doo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand,
        Storage dq, in AttentionOperand dqo, Storage dk, in AttentionOperand dko, Storage dv, in AttentionOperand dvo)
    {
        CheckMask("AttentionBackward", q, mask);
        switch (q.DType)
        {
            case DType.Float32:
                Attention.Backward(shape, Span<float>(q), qo, Span<float>(k), ko, Span<float>(v), vo, Span<float>(o), oo, Span<float>(dout), doo, Span<float>(lse),
                    MaskSpan<float>(mask), maskOperand, Span<float>(dq), dqo, Span<float>(dk), dko, Span<float>(dv), dvo);
                break;
            case DType.Float64:
                AttentionReference.Backward(shape, Span<double>(q), qo, Span<double>(k), ko, Span<double>(v), vo, Span<double>(dout), doo, MaskSpan<double>(mask), maskOperand,
                    Span<double>(dq), dqo, Span<double>(dk), dko, Span<double>(dv), dvo);
                break;
            default: throw new NotSupportedException($"Attention: not defined for {q.DType.Name()} tensors");
        }
    }

    private static void CheckMask(string op, Storage q, Storage? mask)
    {
        if (mask is not null && mask.DType != q.DType)
            throw new ArgumentException($"CpuBackend.{op}: the additive mask must have the dtype of q ({q.DType.Name()}), got {mask.DType.Name()}");
    }

    private static ReadOnlySpan<T> MaskSpan<T>(Storage? mask) where T : unmanaged => mask is null ? default : Span<T>(mask);

    private static Span<T> Span<T>(Storage s) where T : unmanaged => Data<T>(s).AsSpan(0, (int)s.Length);
}
