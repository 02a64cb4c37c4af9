// Conv: 2-d convolution (cross-correlation, as PyTorch's conv2d) on NCHW tensors, forward and backward.
//
// Algorithm: im2col + GEMM, one column block at a time. For image n, group g and a block of jb output
// positions j = p·Q + q, the input patches are unrolled into
//   col[(c, r, t), j] = x[n, g·C/G + c, p·stride − pad + r·dil, q·stride − pad + t·dil]   (0 outside)
// so that, with W[g] the K/G x C/G·R·S weight matrix of group g,
//   forward:          y[n, g][:, block] = W[g] @ col                       (+ bias)
//   backward data:    dcol = W[g]ᵀ @ dy[n, g][:, block], then col2im adds dcol back into dx (overlaps add up)
//   backward weights: dW[g] += dy[n, g][:, block] @ colᵀ;   dbias[k] = Σ dy[n, k, :, :]
// A col block (C/G·R·S x jb) holds at most 512K values: blocks this wide ran faster than L2-sized ones
// (the GEMM packs them anyway, and narrow blocks make it repack W more often); splitting an image into
// blocks also gives the pool work when N is 1. A 1x1 convolution with stride 1 and no padding needs no
// im2col: x[n] already is the matrix. Depthwise convolutions (groups = C = K) would be GEMMs with m = 1:
// they run direct instead, as R·S shifted multiply-adds over each output row (vectorised along the row).
// Threads: work items (image, group, block) are split into equal contiguous runs, one per WorkerPool slot;
// each slot owns a col buffer and, for backward weights, its own dW (slot 0 writes dW itself, the others
// are added in at the end in slot order, so results do not depend on timing). Backward data takes whole
// images per item, since col2im of neighbouring blocks writes overlapping rows. With fewer items than
// threads, items run in turn and the GEMM splits itself over the pool.
// Workspace: a per-calling-thread cached buffer, or one the caller passes (WorkspaceSize); nothing is
// allocated per call in steady state. float32 and float64 share this code (the GEMM dispatches on T).
// FLOPs: 2·N·K·(C/G)·R·S·P·Q per pass. Bytes: x, w and y once each, plus N·G·(C/G)·R·S·P·Q col values
// written by im2col and read back by the GEMM's packing. Bound: the GEMM (Gemm.cs) for wide channel
// counts; im2col/col2im traffic for thin ones; memory and row overheads for depthwise.
// Reference: ForwardReference / BackwardReference (direct float64 loops), and independent loops in
// Tests/Kernels/ConvPoolNormTests.cs.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Sizes of a 2-d convolution: x [N, C, H, W], w [K, C/Groups, R, S], y [N, K, P, Q].</summary>
public readonly record struct Conv2dShape(int N, int C, int H, int W, int K, int R, int S, int StrideH = 1, int StrideW = 1, int PadH = 0, int PadW = 0, int DilationH = 1, int DilationW = 1, int Groups = 1)
{
    /// <summary>Output height.</summary>
    public int P => OutputSize(H, R, StrideH, PadH, DilationH);
    /// <summary>Output width.</summary>
    public int Q => OutputSize(W, S, StrideW, PadW, DilationW);
    /// <summary>Elements of x: N·C·H·W.</summary>
    public long XLength => (long)N * C * H * W;
    /// <summary>Elements of w: K·(C/Groups)·R·S.</summary>
    public long WLength => (long)K * (C / Math.Max(1, Groups)) * R * S;
    /// <summary>Elements of y: N·K·P·Q.</summary>
    public long YLength => (long)N * K * P * Q;

    /// <summary>Throws an <see cref="ArgumentException"/> naming <paramref name="op"/> and the sizes when the shape is invalid.</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || PadH < 0 || PadW < 0 || DilationH <= 0 || DilationW <= 0 || Groups <= 0)
            throw new ArgumentException($"{op}: invalid sizes {this}");
        if (C % Groups != 0 || K % Groups != 0)
            throw new ArgumentException($"{op}: C={C} input and K={K} output channels must both be divisible by groups={Groups}");
        if (P <= 0 || Q <= 0)
            throw new ArgumentException($"{op}: a {R}x{S} kernel (dilation {DilationH}x{DilationW}, padding {PadH}x{PadW}) does not fit a {H}x{W} input: " +
                $"the padded input is {H + 2L * PadH}x{W + 2L * PadW}, the dilated kernel {DilationH * (R - 1L) + 1}x{DilationW * (S - 1L) + 1} (kernel larger than the padded input, as PyTorch rejects)");
        if (XLength > int.MaxValue || YLength > int.MaxValue || (long)(C / Groups) * R * S * P * Q > int.MaxValue)
            throw new ArgumentException($"{op}: sizes too large for 32-bit indexing ({this})");
    }

    /// <summary>
    /// Output length along one axis, as PyTorch's conv2d documents it: floor((input + 2·pad − dilation·(kernel − 1) − 1) / stride) + 1,
    /// with floor (not truncating) division, so a kernel wider than the padded input gives 0 or less instead of 1;
    /// 0 when the stride is not positive (such a shape is rejected by <see cref="Validate"/>).
    /// </summary>
    public static int OutputSize(int input, int kernel, int stride, int pad, int dilation)
    {
        if (stride <= 0) return 0;
        long span = (long)input + 2L * pad - (long)dilation * (kernel - 1) - 1;
        return (int)Math.Clamp(FloorDiv(span, stride) + 1, int.MinValue, int.MaxValue);
    }

    /// <summary>a / b rounded toward negative infinity (b &gt; 0): C#'s / truncates a negative quotient toward zero.</summary>
    internal static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    internal bool IsPointwise => R == 1 && S == 1 && StrideH == 1 && StrideW == 1 && PadH == 0 && PadW == 0;
    internal bool IsDepthwise => Groups == C && Groups == K;
}

/// <summary>2-d convolution kernels (float32 and float64) over NCHW tensors.</summary>
public static unsafe partial class Conv2d
{
    private const int ColBlockElements = 512 * 1024;  // values in one col block (2 MiB of floats; see the header)
    private const long MinParallelFlops = 1 << 21;   // below this a second thread costs more than it saves

    private struct Args<T> where T : unmanaged
    {
        public T* X, W, Bias, Y, Dy, Dx, Dw, Ws;
        public Conv2dShape S;
        public int Slots, Items, Blocks, Jb, ColLen, WLen;
        public bool PerImage;   // backward data: one item per (image, group), all blocks inside
    }

    private static class Cache<T> where T : unmanaged
    {
        [ThreadStatic] public static T[]? Buffer;
    }

    private static int MaxBlock(in Conv2dShape s)
    {
        int crs = s.C / s.Groups * s.R * s.S, pq = s.P * s.Q;
        return Math.Min(pq, Math.Max(32, ColBlockElements / crs / 16 * 16));
    }

    /// <summary>
    /// Elements of workspace any pass of <paramref name="s"/> needs at the current <see cref="WorkerPool.ThreadCount"/>
    /// (col buffers per thread plus per-thread weight-gradient partials); 0 for depthwise convolutions.
    /// </summary>
    public static long WorkspaceSize(in Conv2dShape s)
    {
        s.Validate("Conv2d.WorkspaceSize");
        if (s.IsDepthwise) return 0;
        long t = WorkerPool.ThreadCount, col = s.IsPointwise ? 0 : (long)(s.C / s.Groups) * s.R * s.S * MaxBlock(s);
        return t * col + (t - 1) * s.WLength;
    }

    private static void Check(string op, in Conv2dShape s, int xLen, int wLen, int yLen, int biasLen)
    {
        s.Validate(op);
        if (xLen < s.XLength || wLen < s.WLength || yLen < s.YLength)
            throw new ArgumentException($"{op}: x has {xLen}, w {wLen}, y {yLen} elements, needs {s.XLength}, {s.WLength}, {s.YLength} for {s}");
        if (biasLen != 0 && biasLen < s.K) throw new ArgumentException($"{op}: bias has {biasLen} elements, needs K={s.K} (or none)");
    }

    // Parallel over items when they are many and the work is worth it, else one slot (the GEMM then splits
    // over the pool by itself).
    private static int SlotsFor(in Conv2dShape s, int items)
    {
        int t = WorkerPool.ThreadCount;
        long flops = 2 * s.YLength * (s.C / s.Groups) * s.R * s.S;
        if (t == 1 || flops < MinParallelFlops || items < t || (items % t != 0 && items < 4 * t)) return 1;
        return t;
    }

    private static Span<T> Workspace<T>(long need, Span<T> given, string op) where T : unmanaged
    {
        if (!given.IsEmpty)
        {
            if (given.Length < need) throw new ArgumentException($"{op}: workspace has {given.Length} elements, needs {need}");
            return given;
        }
        ref T[]? buf = ref Cache<T>.Buffer;
        if (buf is null || buf.Length < need) buf = new T[Math.Max(need, 1024)];
        return buf;
    }

    private static void Plan<T>(ref Args<T> a, bool perImage) where T : unmanaged
    {
        ref readonly Conv2dShape s = ref a.S;
        int pq = s.P * s.Q, units = s.N * s.Groups;
        int blocks = (pq + MaxBlock(s) - 1) / MaxBlock(s), jb = (pq + blocks - 1) / blocks;   // equal blocks balance the slots
        int t = WorkerPool.ThreadCount;
        // Few images: split each into more blocks so that every thread gets the same number of items.
        if (!perImage && t > 1 && units * blocks % t != 0 && units * blocks < 4 * t && pq >= 64 * t)
        {
            while (units * blocks % t != 0) blocks++;
            jb = (pq + blocks - 1) / blocks;
            blocks = (pq + jb - 1) / jb;
        }
        a.Jb = jb; a.Blocks = blocks; a.PerImage = perImage;
        a.Items = perImage ? units : units * blocks;
        a.ColLen = s.IsPointwise ? 0 : s.C / s.Groups * s.R * s.S * jb;
        a.WLen = (int)s.WLength;
    }

    /// <summary>y = conv2d(x, w) + bias; x [N,C,H,W], w [K,C/G,R,S], bias [K] or empty, y [N,K,P,Q] (overwritten).</summary>
    public static void Forward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> bias, Span<T> y, in Conv2dShape s) where T : unmanaged, INumber<T>
        => Forward(x, w, bias, y, s, default);

    /// <summary>As <see cref="Forward{T}(ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, Span{T}, in Conv2dShape)"/>, with a caller-owned workspace of at least <see cref="WorkspaceSize"/> elements (empty: a cached per-thread buffer).</summary>
    public static void Forward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> bias, Span<T> y, in Conv2dShape s, Span<T> workspace) where T : unmanaged, INumber<T>
    {
        Check("Conv2d.Forward", s, x.Length, w.Length, y.Length, bias.Length);
        if (s.N == 0) return;
        if (s.IsDepthwise) { Depthwise(x, w, bias, y, default, default, default, s, DwPass.Forward); return; }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: false);
        a.Slots = SlotsFor(s, a.Items);
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.Forward");
        fixed (T* px = x) fixed (T* pw = w) fixed (T* pb = bias) fixed (T* py = y) fixed (T* pws = ws)
        {
            a.X = px; a.W = pw; a.Bias = bias.IsEmpty ? null : pb; a.Y = py; a.Ws = pws;
            if (a.Slots == 1) ForwardSlot<T>(0, (nint)(&a));
            else WorkerPool.For(a.Slots, &ForwardSlot<T>, (nint)(&a));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardSlot<T>(int slot, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int G = s.Groups, cg = s.C / G, kg = s.K / G, crs = cg * s.R * s.S, pq = s.P * s.Q, hw = s.H * s.W;
        T* col = a.Ws + (long)slot * a.ColLen;
        for (int item = (int)((long)slot * a.Items / a.Slots), last = (int)((long)(slot + 1) * a.Items / a.Slots); item < last; item++)
        {
            int blk = item % a.Blocks, g = item / a.Blocks % G, n = item / a.Blocks / G;
            int j0 = blk * a.Jb, jb = Math.Min(a.Jb, pq - j0);
            T* img = a.X + ((long)n * s.C + g * cg) * hw;
            T* yb = a.Y + ((long)n * s.K + g * kg) * pq + j0;
            if (s.IsPointwise)
                Gemm(false, false, kg, jb, crs, new(a.W + (long)g * kg * crs, kg * crs), crs, new(img + j0, (cg - 1) * pq + jb), pq, T.Zero, new(yb, (kg - 1) * pq + jb), pq);
            else
            {
                Im2Col(img, s, cg, j0, jb, col);
                Gemm(false, false, kg, jb, crs, new(a.W + (long)g * kg * crs, kg * crs), crs, new(col, crs * jb), jb, T.Zero, new(yb, (kg - 1) * pq + jb), pq);
            }
            if (a.Bias != null)
                for (int k = 0; k < kg; k++)
                {
                    var row = new Span<T>(yb + (long)k * pq, jb);
                    TensorPrimitives.Add(row, a.Bias[g * kg + k], row);
                }
        }
    }

    /// <summary>dx (overwritten) from dy [N,K,P,Q] and w.</summary>
    public static void BackwardData<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx, in Conv2dShape s) where T : unmanaged, INumber<T>
        => BackwardData(dy, w, dx, s, default);

    /// <summary>dx (overwritten) from dy and w, with a caller-owned workspace (empty: a cached per-thread buffer).</summary>
    public static void BackwardData<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx, in Conv2dShape s, Span<T> workspace) where T : unmanaged, INumber<T>
    {
        Check("Conv2d.BackwardData", s, dx.Length, w.Length, dy.Length, 0);
        if (s.N == 0) return;
        if (s.IsDepthwise) { Depthwise(default, w, default, default, dy, dx, default, s, DwPass.Data); return; }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: !s.IsPointwise);
        a.Slots = SlotsFor(s, a.Items);
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.BackwardData");
        fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx) fixed (T* pws = ws)
        {
            a.Dy = pdy; a.W = pw; a.Dx = pdx; a.Ws = pws;
            if (a.Slots == 1) DataSlot<T>(0, (nint)(&a));
            else WorkerPool.For(a.Slots, &DataSlot<T>, (nint)(&a));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DataSlot<T>(int slot, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int G = s.Groups, cg = s.C / G, kg = s.K / G, crs = cg * s.R * s.S, pq = s.P * s.Q, hw = s.H * s.W;
        T* col = a.Ws + (long)slot * a.ColLen;
        for (int item = (int)((long)slot * a.Items / a.Slots), last = (int)((long)(slot + 1) * a.Items / a.Slots); item < last; item++)
        {
            int b0 = a.PerImage ? 0 : item % a.Blocks, b1 = a.PerImage ? a.Blocks : b0 + 1, ng = a.PerImage ? item : item / a.Blocks;
            int g = ng % G, n = ng / G;
            T* img = a.Dx + ((long)n * s.C + g * cg) * hw;
            var wg = new ReadOnlySpan<T>(a.W + (long)g * kg * crs, kg * crs);
            if (!s.IsPointwise) new Span<T>(img, cg * hw).Clear();
            for (int blk = b0; blk < b1; blk++)
            {
                int j0 = blk * a.Jb, jb = Math.Min(a.Jb, pq - j0);
                var dyb = new ReadOnlySpan<T>(a.Dy + ((long)n * s.K + g * kg) * pq + j0, (kg - 1) * pq + jb);
                if (s.IsPointwise) { Gemm(true, false, cg, jb, kg, wg, crs, dyb, pq, T.Zero, new(img + j0, (cg - 1) * pq + jb), pq); continue; }
                Gemm(true, false, crs, jb, kg, wg, crs, dyb, pq, T.Zero, new(col, crs * jb), jb);
                Col2Im(col, s, cg, j0, jb, img);
            }
        }
    }

    /// <summary>dw (overwritten), and dbias (overwritten) when not empty, from dy and x.</summary>
    public static void BackwardWeights<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> dw, Span<T> dbias, in Conv2dShape s) where T : unmanaged, INumber<T>
        => BackwardWeights(dy, x, dw, dbias, s, default);

    /// <summary>dw and dbias from dy and x, with a caller-owned workspace (empty: a cached per-thread buffer).</summary>
    public static void BackwardWeights<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> dw, Span<T> dbias, in Conv2dShape s, Span<T> workspace) where T : unmanaged, INumber<T>
    {
        Check("Conv2d.BackwardWeights", s, x.Length, dw.Length, dy.Length, dbias.Length);
        if (!dbias.IsEmpty) BiasGradient(dy, dbias, s);
        if (s.N == 0) { dw.Slice(0, (int)s.WLength).Clear(); return; }
        if (s.IsDepthwise) { Depthwise(x, default, default, default, dy, default, dw, s, DwPass.Weights); return; }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: false);
        a.Slots = SlotsFor(s, a.Items);
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.BackwardWeights");
        fixed (T* pdy = dy) fixed (T* px = x) fixed (T* pdw = dw) fixed (T* pws = ws)
        {
            a.Dy = pdy; a.X = px; a.Dw = pdw; a.Ws = pws;
            if (a.Slots == 1) WeightsSlot<T>(0, (nint)(&a));
            else
            {
                WorkerPool.For(a.Slots, &WeightsSlot<T>, (nint)(&a));
                var total = new Span<T>(pdw, a.WLen);
                for (int t = 1; t < a.Slots; t++) TensorPrimitives.Add(total, new ReadOnlySpan<T>(Partial(ref a, t), a.WLen), total);
            }
        }
    }

    private static T* Partial<T>(ref Args<T> a, int slot) where T : unmanaged
        => slot == 0 ? a.Dw : a.Ws + (long)a.Slots * a.ColLen + (long)(slot - 1) * a.WLen;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightsSlot<T>(int slot, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int G = s.Groups, cg = s.C / G, kg = s.K / G, crs = cg * s.R * s.S, pq = s.P * s.Q, hw = s.H * s.W;
        T* col = a.Ws + (long)slot * a.ColLen, dw = Partial(ref a, slot);
        new Span<T>(dw, a.WLen).Clear();
        for (int item = (int)((long)slot * a.Items / a.Slots), last = (int)((long)(slot + 1) * a.Items / a.Slots); item < last; item++)
        {
            int blk = item % a.Blocks, g = item / a.Blocks % G, n = item / a.Blocks / G;
            int j0 = blk * a.Jb, jb = Math.Min(a.Jb, pq - j0);
            T* img = a.X + ((long)n * s.C + g * cg) * hw;
            var dyb = new ReadOnlySpan<T>(a.Dy + ((long)n * s.K + g * kg) * pq + j0, (kg - 1) * pq + jb);
            var dwg = new Span<T>(dw + (long)g * kg * crs, kg * crs);
            if (s.IsPointwise) Gemm(false, true, kg, crs, jb, dyb, pq, new(img + j0, (cg - 1) * pq + jb), pq, T.One, dwg, crs);
            else
            {
                Im2Col(img, s, cg, j0, jb, col);
                Gemm(false, true, kg, crs, jb, dyb, pq, new(col, crs * jb), jb, T.One, dwg, crs);
            }
        }
    }

    private static void BiasGradient<T>(ReadOnlySpan<T> dy, Span<T> dbias, in Conv2dShape s) where T : unmanaged, INumber<T>
    {
        int pq = s.P * s.Q;
        for (int k = 0; k < s.K; k++)
        {
            T sum = T.Zero;
            for (int n = 0; n < s.N; n++) sum += TensorPrimitives.Sum(dy.Slice((n * s.K + k) * pq, pq));
            dbias[k] = sum;
        }
    }

    // Output columns q whose tap t lands inside the input row: q in [lo, hi), for input column q·stride + off.
    // Both bounds round away from the row (a negative numerator is never divided: C# division truncates toward zero).
    internal static void TapRange(int w, int q, int stride, int off, out int lo, out int hi)
    {
        lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
        int last = w - 1 - off;   // q·stride ≤ last
        hi = last < 0 ? 0 : Math.Min(q, last / stride + 1);
        if (lo > q) lo = q;
    }

    // col[(c, r, t), j − j0] for the cg channels of one group (img points at the first), output positions [j0, j0 + jb).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Im2Col<T>(T* img, in Conv2dShape s, int cg, int j0, int jb, T* col) where T : unmanaged, INumber<T>
    {
        int Q = s.Q, j1 = j0 + jb, sw = s.StrideW;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++, col += jb)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    T* d = col;
                    for (int j = j0, p = j0 / Q, q = j0 % Q; j < j1; p++, q = 0)
                    {
                        int qe = Math.Min(Q, q + j1 - j), len = qe - q;
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        int a = Math.Max(q, lo), b = Math.Min(qe, hi);
                        if ((uint)h >= (uint)s.H || b <= a) new Span<T>(d, len).Clear();
                        else
                        {
                            // Rows are short (tens of values): plain vector moves beat Span.CopyTo/Clear calls here.
                            T* src = img + ((long)c * s.H + h) * s.W + off;
                            for (int i = q; i < a; i++) d[i - q] = T.Zero;
                            if (sw == 1) CopyRow(src + a, d + a - q, b - a);
                            else for (int i = a; i < b; i++) d[i - q] = src[i * sw];
                            for (int i = b; i < qe; i++) d[i - q] = T.Zero;
                        }
                        d += len; j += len;
                    }
                }
    }

    // The adjoint of Im2Col: adds col entries back into the image (overlapping patches accumulate).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Col2Im<T>(T* col, in Conv2dShape s, int cg, int j0, int jb, T* img) where T : unmanaged, INumber<T>
    {
        int Q = s.Q, j1 = j0 + jb, sw = s.StrideW;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++, col += jb)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    T* d = col;
                    for (int j = j0, p = j0 / Q, q = j0 % Q; j < j1; p++, q = 0)
                    {
                        int qe = Math.Min(Q, q + j1 - j), len = qe - q;
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        int a = Math.Max(q, lo), b = Math.Min(qe, hi);
                        if ((uint)h < (uint)s.H && a < b)
                        {
                            T* dst = img + ((long)c * s.H + h) * s.W + off;
                            if (sw == 1) AddRow(d + a - q, dst + a, b - a);
                            else for (int i = a; i < b; i++) dst[i * sw] += d[i - q];
                        }
                        d += len; j += len;
                    }
                }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow<T>(T* src, T* dst, int len) where T : unmanaged
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported && len >= Vector512<T>.Count)
        {
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) Vector512.Load(src + i).Store(dst + i);
            if (i < len) Vector512.Load(src + len - Vector512<T>.Count).Store(dst + len - Vector512<T>.Count);   // overlapping tail
            return;
        }
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported && len >= Vector256<T>.Count)
        {
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) Vector256.Load(src + i).Store(dst + i);
            if (i < len) Vector256.Load(src + len - Vector256<T>.Count).Store(dst + len - Vector256<T>.Count);
            return;
        }
        for (; i < len; i++) dst[i] = src[i];
    }

    // dst[i] += src[i]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<T>(T* src, T* dst, int len) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) (Vector512.Load(dst + i) + Vector512.Load(src + i)).Store(dst + i);
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) (Vector256.Load(dst + i) + Vector256.Load(src + i)).Store(dst + i);
        for (; i < len; i++) dst[i] += src[i];
    }

    private static void Gemm<T>(bool ta, bool tb, int m, int n, int k, ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Cpu.Gemm.Sgemm(ta, tb, m, n, k, 1f, MemoryMarshal.Cast<T, float>(a), lda, MemoryMarshal.Cast<T, float>(b), ldb, Unsafe.As<T, float>(ref beta), MemoryMarshal.Cast<T, float>(c), ldc);
        else if (typeof(T) == typeof(double))
            Cpu.Gemm.Dgemm(ta, tb, m, n, k, 1.0, MemoryMarshal.Cast<T, double>(a), lda, MemoryMarshal.Cast<T, double>(b), ldb, Unsafe.As<T, double>(ref beta), MemoryMarshal.Cast<T, double>(c), ldc);
        else throw new NotSupportedException($"Conv2d: no GEMM for {typeof(T).Name}");
    }
}

// Depthwise convolution (groups = C = K), direct: output plane (n, c) is the sum over taps (r, t) of w[c, r, t]
// times the input plane shifted by (r·dil − pad, t·dil − pad) and subsampled by the stride. Each tap of each
// output row is one multiply-add over the row's valid columns (contiguous when stride is 1). Forward and
// backward data split over the N·C planes, backward weights over channels (each owns its R·S weights).
public static unsafe partial class Conv2d
{
    private enum DwPass { Forward, Data, Weights }

    private const long MinParallelPlaneWork = 1 << 16;

    private static void Depthwise<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> bias, Span<T> y, ReadOnlySpan<T> dy, Span<T> dx, Span<T> dw, in Conv2dShape s, DwPass pass)
        where T : unmanaged, INumber<T>
    {
        fixed (T* px = x) fixed (T* pw = w) fixed (T* pb = bias) fixed (T* py = y) fixed (T* pdy = dy) fixed (T* pdx = dx) fixed (T* pdw = dw)
        {
            var a = new Args<T> { X = px, W = pw, Bias = bias.IsEmpty ? null : pb, Y = py, Dy = pdy, Dx = pdx, Dw = pdw, S = s };
            a.Items = pass == DwPass.Weights ? s.C : s.N * s.C;
            long work = s.YLength * s.R * s.S;
            delegate*<int, nint, void> body = pass switch { DwPass.Forward => &DwForwardPlane<T>, DwPass.Data => &DwDataPlane<T>, _ => &DwWeightsChannel<T> };
            if (work < MinParallelPlaneWork || WorkerPool.ThreadCount == 1) for (int i = 0; i < a.Items; i++) body(i, (nint)(&a));
            else WorkerPool.For(a.Items, body, (nint)(&a));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DwForwardPlane<T>(int plane, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int c = plane % s.C, P = s.P, Q = s.Q, sw = s.StrideW;
        T* img = a.X + (long)plane * s.H * s.W, outp = a.Y + (long)plane * P * Q, wc = a.W + (long)c * s.R * s.S;
        var all = new Span<T>(outp, P * Q);
        if (a.Bias != null) all.Fill(a.Bias[c]); else all.Clear();
        for (int p = 0; p < P; p++)
        {
            T* yr = outp + (long)p * Q;
            for (int r = 0; r < s.R; r++)
            {
                int h = p * s.StrideH - s.PadH + r * s.DilationH;
                if ((uint)h >= (uint)s.H) continue;
                for (int t = 0; t < s.S; t++)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    if (hi <= lo) continue;
                    T wv = wc[r * s.S + t];
                    T* xr = img + (long)h * s.W + off;
                    if (sw == 1) AxpyRow(xr + lo, wv, yr + lo, hi - lo);
                    else for (int q = lo; q < hi; q++) yr[q] += wv * xr[q * sw];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DwDataPlane<T>(int plane, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int c = plane % s.C, P = s.P, Q = s.Q, sw = s.StrideW;
        T* img = a.Dx + (long)plane * s.H * s.W, g = a.Dy + (long)plane * P * Q, wc = a.W + (long)c * s.R * s.S;
        new Span<T>(img, s.H * s.W).Clear();
        for (int p = 0; p < P; p++)
        {
            T* gr = g + (long)p * Q;
            for (int r = 0; r < s.R; r++)
            {
                int h = p * s.StrideH - s.PadH + r * s.DilationH;
                if ((uint)h >= (uint)s.H) continue;
                for (int t = 0; t < s.S; t++)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    if (hi <= lo) continue;
                    T wv = wc[r * s.S + t];
                    T* xr = img + (long)h * s.W + off;
                    if (sw == 1) AxpyRow(gr + lo, wv, xr + lo, hi - lo);
                    else for (int q = lo; q < hi; q++) xr[q * sw] += wv * gr[q];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DwWeightsChannel<T>(int c, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int P = s.P, Q = s.Q, sw = s.StrideW;
        T* wc = a.Dw + (long)c * s.R * s.S;
        for (int r = 0; r < s.R; r++)
            for (int t = 0; t < s.S; t++)
            {
                int off = t * s.DilationW - s.PadW;
                TapRange(s.W, Q, sw, off, out int lo, out int hi);
                T acc = T.Zero;
                for (int n = 0; n < s.N && lo < hi; n++)
                {
                    T* img = a.X + ((long)n * s.C + c) * s.H * s.W, g = a.Dy + ((long)n * s.C + c) * P * Q;
                    for (int p = 0; p < P; p++)
                    {
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        if ((uint)h >= (uint)s.H) continue;
                        T* xr = img + (long)h * s.W + off, gr = g + (long)p * Q;
                        if (sw == 1) acc += DotRow(gr + lo, xr + lo, hi - lo);
                        else for (int q = lo; q < hi; q++) acc += gr[q] * xr[q * sw];
                    }
                }
                wc[r * s.S + t] = acc;
            }
    }
}

// Row helpers for the depthwise loops: rows are tens of values, too short to amortise a library call.
public static unsafe partial class Conv2d
{
    // y[i] += a·x[i]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AxpyRow<T>(T* x, T a, T* y, int len) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
        {
            var va = Vector512.Create(a);
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) (Vector512.Load(y + i) + va * Vector512.Load(x + i)).Store(y + i);
        }
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
        {
            var va = Vector256.Create(a);
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) (Vector256.Load(y + i) + va * Vector256.Load(x + i)).Store(y + i);
        }
        for (; i < len; i++) y[i] += a * x[i];
    }

    // Σ a[i]·b[i]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T DotRow<T>(T* a, T* b, int len) where T : unmanaged, INumber<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported && len >= Vector512<T>.Count)
        {
            var acc = Vector512<T>.Zero;
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count) acc += Vector512.Load(a + i) * Vector512.Load(b + i);
            sum = Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported && len - i >= Vector256<T>.Count)
        {
            var acc = Vector256<T>.Zero;
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count) acc += Vector256.Load(a + i) * Vector256.Load(b + i);
            sum += Vector256.Sum(acc);
        }
        for (; i < len; i++) sum += a[i] * b[i];
        return sum;
    }
}

// Direct float64 convolution loops: the definition the fast kernels are checked against.
public static partial class Conv2d
{
    /// <summary>The direct 7-loop convolution in float64: y [N,K,P,Q] = conv2d(x, w) + bias (bias may be empty).</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> w, ReadOnlySpan<double> bias, in Conv2dShape s)
    {
        Check("Conv2d.ForwardReference", s, x.Length, w.Length, int.MaxValue, bias.Length);
        int cg = s.C / s.Groups, kg = s.K / s.Groups, P = s.P, Q = s.Q;
        var y = new double[s.YLength];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    for (int q = 0; q < Q; q++)
                    {
                        double acc = bias.IsEmpty ? 0 : bias[k];
                        for (int c = 0; c < cg; c++)
                            for (int r = 0; r < s.R; r++)
                                for (int t = 0; t < s.S; t++)
                                {
                                    int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                                    if ((uint)h < (uint)s.H && (uint)ww < (uint)s.W)
                                        acc += x[((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww] * w[((k * cg + c) * s.R + r) * s.S + t];
                                }
                        y[((n * s.K + k) * P + p) * Q + q] = acc;
                    }
        return y;
    }

    /// <summary>Direct float64 gradients: dx [N,C,H,W], dw [K,C/G,R,S] and dbias [K] of Σ dy·conv2d(x, w).</summary>
    public static (double[] Dx, double[] Dw, double[] Dbias) BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> w, in Conv2dShape s)
    {
        Check("Conv2d.BackwardReference", s, x.Length, w.Length, dy.Length, 0);
        int cg = s.C / s.Groups, kg = s.K / s.Groups, P = s.P, Q = s.Q;
        var dx = new double[s.XLength]; var dw = new double[s.WLength]; var db = new double[s.K];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    for (int q = 0; q < Q; q++)
                    {
                        double g = dy[((n * s.K + k) * P + p) * Q + q];
                        db[k] += g;
                        for (int c = 0; c < cg; c++)
                            for (int r = 0; r < s.R; r++)
                                for (int t = 0; t < s.S; t++)
                                {
                                    int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                                    if ((uint)h >= (uint)s.H || (uint)ww >= (uint)s.W) continue;
                                    int xi = ((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww, wi = ((k * cg + c) * s.R + r) * s.S + t;
                                    dx[xi] += g * w[wi];
                                    dw[wi] += g * x[xi];
                                }
                    }
        return (dx, dw, db);
    }
}
