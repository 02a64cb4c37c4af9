using System.Buffers;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void AttentionForward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage lse, Storage? keyPaddingMask)
    {
        byte[]? rented = MaskBytes("AttentionForward", keyPaddingMask, out var pad);
        try
        {
            switch (q.DType)
            {
                case DType.Float32:
                    Attention.Forward(shape, Span<float>(q), qo, Span<float>(k), ko, Span<float>(v), vo, Span<float>(o), oo, Span<float>(lse), pad);
                    break;
                case DType.Float64:
                    AttentionReference.Forward(shape, Span<double>(q), qo, Span<double>(k), ko, Span<double>(v), vo, Span<double>(o), oo, Span<double>(lse), pad);
                    break;
                default: throw new NotSupportedException($"Attention: not defined for {q.DType.Name()} tensors");
            }
        }
        finally { if (rented is not null) ArrayPool<byte>.Shared.Return(rented); }
    }

    /// <inheritdoc/>
    public void AttentionBackward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage dout, in AttentionOperand doo, Storage lse, Storage? keyPaddingMask,
        Storage dq, in AttentionOperand dqo, Storage dk, in AttentionOperand dko, Storage dv, in AttentionOperand dvo)
    {
        byte[]? rented = MaskBytes("AttentionBackward", keyPaddingMask, out var pad);
        try
        {
            switch (q.DType)
            {
                case DType.Float32:
                    Attention.Backward(shape, Span<float>(q), qo, Span<float>(k), ko, Span<float>(v), vo, Span<float>(o), oo, Span<float>(dout), doo, Span<float>(lse), pad,
                        Span<float>(dq), dqo, Span<float>(dk), dko, Span<float>(dv), dvo);
                    break;
                case DType.Float64:
                    AttentionReference.Backward(shape, Span<double>(q), qo, Span<double>(k), ko, Span<double>(v), vo, Span<double>(dout), doo, pad,
                        Span<double>(dq), dqo, Span<double>(dk), dko, Span<double>(dv), dvo);
                    break;
                default: throw new NotSupportedException($"Attention: not defined for {q.DType.Name()} tensors");
            }
        }
        finally { if (rented is not null) ArrayPool<byte>.Shared.Return(rented); }
    }

    // The kernels read the mask as bytes (1 = hidden): a pooled buffer, so a training loop allocates nothing here.
    private static byte[]? MaskBytes(string op, Storage? mask, out ReadOnlySpan<byte> bytes)
    {
        bytes = default;
        if (mask is null || mask.Length == 0) return null;
        if (mask.DType != DType.Float32) throw new ArgumentException($"CpuBackend.{op}: the key padding mask must be float32, got {mask.DType.Name()}");
        var src = Span<float>(mask);
        var buffer = ArrayPool<byte>.Shared.Rent(src.Length);
        for (int i = 0; i < src.Length; i++) buffer[i] = src[i] != 0 ? (byte)1 : (byte)0;
        bytes = buffer.AsSpan(0, src.Length);
        return buffer;
    }

    private static Span<T> Span<T>(Storage s) where T : unmanaged => Data<T>(s).AsSpan(0, (int)s.Length);
}
