using AttnCore.Kernels;
using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using GpuAttention = AttnCore.Kernels.Gpu.Attention;

namespace AttnCore.Backends;

// Fused attention on ILGPU devices (Kernels/Gpu/Attention.cs): one forward launch; the backward is Di, then
// dK/dV per key tile (of a key/value head, summing its query heads) and dQ per query tile, with no atomics.
// Everything, the additive mask included, stays on the device; a broadcast mask is read through its strides.
public sealed partial class IlgpuBackend
{
    /// <summary>Largest head dimension of the fused attention kernels on ILGPU devices.</summary>
    public int AttentionMaxDim => GpuAttention.MaxDim;

    /// <inheritdoc/>
    public void AttentionForward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand)
    {
        const string op = "AttentionForward";
        var (sq, sk, sv, so, sl) = (Float(q, op), Float(k, op), Float(v, op), Float(o, op), Float(lse, op));
        var maskView = CheckAttention(op, shape, mask);
        shape.Validate($"IlgpuBackend.{op}", q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, mask?.Length ?? 0, maskOperand);
        if (shape.Batch == 0 || shape.Heads == 0 || shape.QueryLength == 0) return;
        var args = Args(shape, mask, maskOperand, _k.AttentionRows, shape.QueryLength);
        args.Q = View(qo); args.K = View(ko); args.V = View(vo); args.O = View(oo);
        _k.AttentionForward.Value(Groups(op, args, shape, shape.Heads), sq.Floats, sk.Floats, sv.Floats, so.Floats, sl.Floats, maskView ?? sl.Floats, args);
    }

    /// <inheritdoc/>
    public void AttentionBackward(in AttentionShape shape, Storage q, in AttentionOperand qo, Storage k, in AttentionOperand ko, Storage v, in AttentionOperand vo,
        Storage o, in AttentionOperand oo, Storage dout, in AttentionOperand doo, Storage lse, Storage? mask, in AttentionMaskOperand maskOperand,
        Storage dq, in AttentionOperand dqo, Storage dk, in AttentionOperand dko, Storage dv, in AttentionOperand dvo)
    {
        const string op = "AttentionBackward";
        var (sq, sk, sv, so, sg, sl) = (Float(q, op), Float(k, op), Float(v, op), Float(o, op), Float(dout, op), Float(lse, op));
        var (sdq, sdk, sdv) = (Float(dq, op), Float(dk, op), Float(dv, op));
        var maskView = CheckAttention(op, shape, mask);
        long maskLen = mask?.Length ?? 0;
        shape.Validate($"IlgpuBackend.{op}", q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, maskLen, maskOperand);
        shape.Validate($"IlgpuBackend.{op}", dout.Length, doo, dk.Length, dko, dv.Length, dvo, dq.Length, dqo, lse.Length, maskLen, maskOperand);
        if (shape.Batch == 0 || shape.Heads == 0) return;
        var args = Args(shape, mask, maskOperand, _k.AttentionRows, shape.QueryLength);
        args.Q = View(qo); args.K = View(ko); args.V = View(vo); args.O = View(oo); args.DO = View(doo);
        args.DQ = View(dqo); args.DK = View(dko); args.DV = View(dvo);
        long rows = (long)shape.Batch * shape.Heads * shape.QueryLength;
        var di = rows > 0 ? Allocate(DType.Float32, rows) : null;
        try
        {
            var dis = di is null ? sl.Floats : S(di, op).Floats;
            var m = maskView ?? sl.Floats;
            if (rows > 0)
            {
                _k.AttentionDelta.Value(Threads(op, rows), sg.Floats, so.Floats, dis, args);
                _k.AttentionQueryGrad.Value(Groups(op, args, shape, shape.Heads), sq.Floats, sk.Floats, sv.Floats, sg.Floats, sl.Floats, dis, m, sdq.Floats, args);
            }
            if (shape.KeyLength > 0)
            {
                // With no query rows dK and dV are zero: the kernel's query loop is empty and it writes its zeroed tiles.
                var keyArgs = args;
                keyArgs.Tiles = (shape.KeyLength + _k.AttentionRows - 1) / _k.AttentionRows;
                _k.AttentionKeyValueGrad.Value(Groups(op, keyArgs, shape, shape.KeyValueHeads), sq.Floats, sk.Floats, sv.Floats, sg.Floats, sl.Floats, dis, m, sdk.Floats, sdv.Floats, keyArgs);
            }
        }
        finally
        {
            // Release waits for nothing: the pool hands the buffer out again only to later launches on this stream.
            di?.Release();
        }
    }

    private ArrayView<float>? CheckAttention(string op, in AttentionShape shape, Storage? mask)
    {
        if (shape.Dim > GpuAttention.MaxDim)
            throw new ArgumentException($"IlgpuBackend.{op}: head dimension {shape.Dim} exceeds the {GpuAttention.MaxDim} of the device kernels (Tensor.ScaledDotProductAttention takes the composite path there)");
        if (mask is null) return null;
        return Float(mask, op).Floats;
    }

    private static AttentionView View(in AttentionOperand a) => new() { Offset = a.Offset, StrideB = a.StrideB, StrideH = a.StrideH, StrideL = a.StrideL };

    private static AttentionArgs Args(in AttentionShape s, Storage? mask, in AttentionMaskOperand m, int rows, int length) => new()
    {
        Heads = s.Heads, QueryLength = s.QueryLength, KeyLength = s.KeyLength, Dim = s.Dim, Scale = (float)s.Scale,
        Causal = s.Causal ? 1 : 0, CausalShift = s.CausalShift, KvHeads = s.KeyValueHeads, Group = s.GroupSize,
        HasMask = mask is not null && mask.Length > 0 ? 1 : 0,
        Mask = new() { Offset = m.Offset, StrideB = m.StrideB, StrideH = m.StrideH, StrideQ = m.StrideQ, StrideK = m.StrideK },
        HasDropout = s.Dropout > 0 ? 1 : 0, Seed = s.Seed, DropThreshold = GpuAttention.DropThreshold(s.Dropout),
        KeepScale = s.Dropout > 0 ? 1 / (1 - s.Dropout) : 1f,   // float, as the CPU kernel computes it
        Tiles = Math.Max(1, (length + rows - 1) / rows),
    };

    // One group per (tile, b, head), flattened into a 1D grid (no 65535 limit on the batch·heads axis); heads
    // are the query heads, or the key/value heads for the dK/dV kernel.
    private KernelConfig Groups(string op, in AttentionArgs a, in AttentionShape s, int heads)
    {
        long groups = (long)a.Tiles * s.Batch * heads;
        if (groups > int.MaxValue) throw new NotSupportedException($"IlgpuBackend.{op}: {groups} groups exceed one launch (B={s.Batch} heads={heads} tiles={a.Tiles})");
        return new KernelConfig(new Index1D((int)groups), new Index1D(_k.AttentionThreads));
    }
}
