// Streaming (non-temporal) stores for outputs too large to stay in the cache.
//
// An ordinary store to a line that is not in the cache first reads the line (read-for-ownership) and writes it
// back when it is evicted, so a row kernel that reads x and writes y moves three bytes per output byte, and y
// pushes x out of the L3 for the next call. A non-temporal store (vmovntps) fills whole 64-byte lines in the
// write-combining buffers and sends them to memory: no read, and the cache keeps what it held. It only pays when
// the output would not have stayed in the cache for whoever reads it next, so kernels use it above a size:
// a quarter of the L3, the rule glibc's memcpy uses (glibc 2.38's non-temporal threshold). This host has a
// 32 MiB L3, hence 8 MiB; CPUID cannot tell, because this virtual machine reports a 508 MiB L3.
//
// The stores want 64-byte aligned addresses, and a tensor's storage (a pinned .NET array) is aligned to 8 bytes
// only, so a row starts with AlignedHead scalar elements. Streaming stores are weakly ordered: a kernel fences
// (StoreFence) before its chunk returns, so the worker pool's hand-back publishes them.
// Measured on LayerNorm 4096x1024 (16 MiB out): docs/kernels-cpu.md, "Streaming stores for large row outputs".
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

/// <summary>When and how row kernels write their output with non-temporal stores.</summary>
public static unsafe class StreamingStores
{
    /// <summary>Outputs of at least this many bytes are written with streaming stores (8 MiB, or
    /// ATTNCORE_STREAMING_STORES_MIN_BYTES read once per process; a huge value turns them off).</summary>
    public static readonly long MinBytes = ParseMinBytes(Environment.GetEnvironmentVariable("ATTNCORE_STREAMING_STORES_MIN_BYTES"), "ATTNCORE_STREAMING_STORES_MIN_BYTES");

    /// <summary>Whether this CPU has 512-bit streaming stores, which the kernels use.</summary>
    public static bool Supported => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary>Whether an output of <paramref name="floats"/> floats is large enough to stream; the kernels add
    /// <see cref="Supported"/> when they set up the call.</summary>
    public static bool Pay(long floats) => floats * sizeof(float) >= MinBytes;

    /// <summary>A byte count, or the default 8 MiB for null or blank; <paramref name="source"/> names it in the
    /// exception a malformed value gets.</summary>
    public static long ParseMinBytes(string? value, string source)
    {
        if (string.IsNullOrWhiteSpace(value)) return 8L << 20;
        if (!long.TryParse(value, out long bytes) || bytes < 0)
            throw new ArgumentException($"StreamingStores: {source} \"{value}\" is not a non-negative byte count");
        return bytes;
    }

    /// <summary>How many floats from <paramref name="p"/> (at most <paramref name="n"/>) come before the first
    /// 64-byte boundary: the scalar head of a streamed row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int AlignedHead(float* p, int n) => Math.Min(n, (int)((64 - ((nint)p & 63)) & 63) / sizeof(float));

    /// <summary>dst = src · s over n floats, the vector part with streaming stores (dst must not overlap src).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scale(float* src, float* dst, int n, float s)
    {
        int i = 0;
        for (int head = AlignedHead(dst, n); i < head; i++) dst[i] = src[i] * s;
        var sv = Vector512.Create(s);
        for (; i + 16 <= n; i += 16) (Vector512.Load(src + i) * sv).StoreAlignedNonTemporal(dst + i);
        for (; i < n; i++) dst[i] = src[i] * s;
    }

    /// <summary>Orders this thread's streaming stores before whatever it does next (sfence).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Fence() { if (Sse.IsSupported) Sse.StoreFence(); }
}
