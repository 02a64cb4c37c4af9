// Attention shapes: where Q, K, V, O and the additive mask sit in memory, the sizes and options of one attention
// call, its argument check, and the dropout hash, shared by the CPU kernels (Kernels/Cpu/Attention*.cs) and the
// ILGPU kernels (Kernels/Gpu/Attention*.cs) so both backends accept the same calls and drop the same scores.
//
// Dropout: score (b, h, i, j) is kept when Hash24(seed, b, h, i, j) / 2^24 >= p, Hash24 being the top 24 bits of a
// SplitMix64 finaliser applied to the five numbers mixed with odd constants; the backward pass regenerates the mask.
namespace AttnCore.Kernels;

/// <summary>
/// Where Q, K, V or O sit in memory: element [b, h, i, d] is at Offset + b·StrideB + h·StrideH + i·StrideL + d
/// (d contiguous), so [B, L, H, D] projections reach the kernel as transposed views without a copy.
/// </summary>
public readonly record struct AttentionOperand(long Offset, long StrideB, long StrideH, long StrideL)
{
    /// <summary>The layout of a contiguous [B, H, L, D] tensor.</summary>
    public static AttentionOperand Contiguous(int heads, int length, int dim) => new(0, (long)heads * length * dim, (long)length * dim, dim);
}

/// <summary>
/// Where an additive mask sits: entry [b, h, i, j] (added to the scaled score of query i and key j of query
/// head h) is at Offset + b·StrideB + h·StrideH + i·StrideQ + j·StrideK. A stride of 0 broadcasts that dim,
/// so a [Lq, Lk] or [B, 1, 1, Lk] mask reaches the kernels without being expanded.
/// </summary>
public readonly record struct AttentionMaskOperand(long Offset, long StrideB, long StrideH, long StrideQ, long StrideK);

/// <summary>
/// Sizes and options of one attention call. <paramref name="Scale"/> is a double so that float64 tensors keep it
/// exactly (the float32 kernels round it once). <paramref name="KvHeads"/> is the number of key/value heads for
/// grouped-query attention (0 means <paramref name="Heads"/>: ordinary multi-head attention); it must divide
/// <paramref name="Heads"/>, and query head h reads key/value head h / (Heads / KvHeads).
/// </summary>
public readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, int Dim, double Scale, bool Causal, float Dropout = 0, ulong Seed = 0, int KvHeads = 0)
{
    /// <summary>Largest head dimension AttnCore's attention takes (device kernels may take less; see their MaxDim).</summary>
    public const int MaxDim = 512;

    /// <summary>Keys hidden by the causal mask from query i are those with j &gt; i + CausalShift.</summary>
    public int CausalShift => KeyLength - QueryLength;
    /// <summary>Heads of K and V (<see cref="Heads"/> unless grouped-query).</summary>
    public int KeyValueHeads => KvHeads == 0 ? Heads : KvHeads;
    /// <summary>Query heads served by one key/value head.</summary>
    public int GroupSize => KeyValueHeads == 0 ? 1 : Heads / KeyValueHeads;

    /// <summary>The shape as integers, exactly (floats as their bits, the seed as two halves): how an autograd node keeps it.</summary>
    public int[] ToInts() =>
        [Batch, Heads, QueryLength, KeyLength, Dim, (int)(uint)BitConverter.DoubleToUInt64Bits(Scale), (int)(uint)(BitConverter.DoubleToUInt64Bits(Scale) >> 32),
         Causal ? 1 : 0, BitConverter.SingleToInt32Bits(Dropout), (int)(uint)Seed, (int)(uint)(Seed >> 32), KvHeads];

    /// <summary>The inverse of <see cref="ToInts"/>.</summary>
    public static AttentionShape FromInts(int[] ints)
    {
        if (ints.Length != 12) throw new ArgumentException($"AttentionShape.FromInts: expected the 12 integers ToInts writes, got {ints.Length}");
        static ulong Long(int lo, int hi) => (uint)lo | (ulong)(uint)hi << 32;
        return new(ints[0], ints[1], ints[2], ints[3], ints[4], BitConverter.UInt64BitsToDouble(Long(ints[5], ints[6])), ints[7] != 0, BitConverter.Int32BitsToSingle(ints[8]),
            Long(ints[9], ints[10]), ints[11]);
    }

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming <paramref name="op"/> when sizes, options, operand extents
    /// or the mask (<paramref name="maskLen"/> elements, 0 = none) are inconsistent.
    /// </summary>
    public void Validate(string op, long qLen, in AttentionOperand q, long kLen, in AttentionOperand k, long vLen, in AttentionOperand v, long oLen, in AttentionOperand o, long lseLen, long maskLen, in AttentionMaskOperand mask)
    {
        var s = this;
        if (s.Batch < 0 || s.Heads < 0 || s.QueryLength < 0 || s.KeyLength < 0 || s.Dim <= 0 || s.KvHeads < 0)
            throw new ArgumentException($"{op}: invalid sizes B={s.Batch} H={s.Heads} Hkv={s.KvHeads} Lq={s.QueryLength} Lk={s.KeyLength} D={s.Dim}");
        if (s.KvHeads > 0 && s.Heads % s.KvHeads != 0)
            throw new ArgumentException($"{op}: {s.Heads} query heads are not a multiple of {s.KvHeads} key/value heads (grouped-query attention needs H % Hkv == 0)");
        if (s.Dropout is < 0 or >= 1) throw new ArgumentException($"{op}: dropout must be in [0, 1), got {s.Dropout}");
        if (Dim > MaxDim) throw new ArgumentException($"{op}: head dimension {Dim} exceeds the supported {MaxDim}");
        static long Need(in AttentionOperand a, int b, int h, int l, int d) =>
            b == 0 || h == 0 || l == 0 ? 0 : a.Offset + (b - 1) * a.StrideB + (h - 1) * a.StrideH + (l - 1) * a.StrideL + d;
        static void Check(string op, in AttentionShape s, string name, long len, in AttentionOperand a, int heads, int l)
        {
            long need = Need(a, s.Batch, heads, l, s.Dim);
            if (a.Offset < 0 || a.StrideL < s.Dim && l > 1 || len < need)
                throw new ArgumentException($"{op}: {name} ({len} elements, offset {a.Offset}, strides b={a.StrideB} h={a.StrideH} l={a.StrideL}) does not hold [{s.Batch},{heads},{l},{s.Dim}]");
        }
        int kvh = s.KeyValueHeads;
        Check(op, s, "q", qLen, q, s.Heads, s.QueryLength); Check(op, s, "k", kLen, k, kvh, s.KeyLength); Check(op, s, "v", vLen, v, kvh, s.KeyLength); Check(op, s, "o", oLen, o, s.Heads, s.QueryLength);
        if (lseLen < (long)s.Batch * s.Heads * s.QueryLength) throw new ArgumentException($"{op}: lse has {lseLen} elements, needs B*H*Lq = {(long)s.Batch * s.Heads * s.QueryLength}");
        if (maskLen > 0)
        {
            bool empty = s.Batch == 0 || s.Heads == 0 || s.QueryLength == 0 || s.KeyLength == 0;
            long last = empty ? -1 : mask.Offset + (s.Batch - 1) * mask.StrideB + (s.Heads - 1) * mask.StrideH + (s.QueryLength - 1) * mask.StrideQ + (s.KeyLength - 1) * mask.StrideK;
            if (mask.Offset < 0 || mask.StrideB < 0 || mask.StrideH < 0 || mask.StrideQ < 0 || mask.StrideK < 0 || last >= maskLen)
                throw new ArgumentException($"{op}: mask ({maskLen} elements, offset {mask.Offset}, strides b={mask.StrideB} h={mask.StrideH} q={mask.StrideQ} k={mask.StrideK}) does not cover [{s.Batch},{s.Heads},{s.QueryLength},{s.KeyLength}]");
        }
    }
}

/// <summary>The counter-based dropout hash of attention scores, identical on every backend.</summary>
public static class AttentionDropout
{
    /// <summary>The top 24 bits of a SplitMix64-style hash of (seed, b, h, i, j): uniform in [0, 2^24).</summary>
    public static ulong Hash24(ulong seed, int b, int h, int i, int j)
    {
        ulong z = seed ^ ((ulong)(uint)b << 48) ^ ((ulong)(uint)h << 32) ^ ((ulong)(uint)i << 16) ^ (ulong)(uint)j * 0x9E3779B97F4A7C15UL;
        z += (ulong)(uint)i * 0xD1B54A32D192ED03UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return z >> 40;
    }
}
