// Conv: 2-d convolution (cross-correlation, as PyTorch's conv2d) on NCHW tensors, forward and backward.
//
// Algorithm: im2col + GEMM, one column block at a time. For image n, group g and a block of jb output
// positions j = p·Q + q, the input patches are unrolled into
//   col[(c, r, t), j] = x[n, g·C/G + c, p·stride − pad + r·dil, q·stride − pad + t·dil]   (0 outside)
// so that, with W[g] the K/G x C/G·R·S weight matrix of group g,
//   forward:          y[n, g][:, block] = W[g] @ col                       (+ bias)
//   backward data:    dcol = W[g]ᵀ @ dy[n, g][:, block], then col2im adds dcol back into dx (overlaps add up);
//                     W[g]ᵀ is transposed once per call into the workspace, so the GEMM reads it in place
//   backward weights: dW[g] += dy[n, g][:, block] @ colᵀ;   dbias[k] = Σ dy[n, k, :, :]
// A col block (C/G·R·S x jb) holds at most 512K values: blocks this wide ran faster than L2-sized ones (the GEMM
// packs them anyway, and narrow blocks made it repack W more often, before it read W in place); splitting an image
// into blocks also gives the pool work when N is 1. A 1x1 convolution with stride 1 and no padding needs no
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
// Stride-1 float32 convolutions (ResNet's 3x3 layers) skip im2col in all three passes: ConvDirect.cs; so do the thin
// stride-2 3x3 ones (ConvDirect.cs for forward and weights, ConvDirectStridedData.cs for backward data). Wider 3x3
// stride-1 padding-1 layers take Winograd F(2x2, 3x3) in all three passes (ConvWinograd.cs). Wide layers with outputs of
// at most 64 positions put the images side by side in one GEMM (ConvSideBySide.cs).
// Files: this driver (blocking, threads, workspace, GEMM calls); ConvDirect.cs; ConvImageLanes.cs (the direct path for
// small outputs, sixteen images per vector); ConvSideBySide.cs; Im2Col.cs (the patch unrolling and its adjoint);
// DepthwiseConv.cs (the direct depthwise path); ConvReference.cs; the shape in Kernels/Common/Conv2dShape.cs.
// Reference: ForwardReference / BackwardReference (direct float64 loops, ConvReference.cs), and independent loops in
// Tests/Kernels/ConvPoolNormTests.cs.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

/// <summary>2-d convolution kernels (float32 and float64) over NCHW tensors.</summary>
public static unsafe partial class Conv2d
{
    private const int ColBlockElements = 512 * 1024;  // values in one col block (2 MiB of floats; see the header)
    private const long MinParallelFlops = 1 << 21;   // below this a second thread costs more than it saves

    private struct Args<T> where T : unmanaged
    {
        public T* X, W, Bias, Y, Dy, Dx, Dw, Ws;
        public Conv2dShape S;
        public int Slots, Items, Blocks, Jb, ColLen, WLen, TransposeParts;
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
        // Col buffers per thread, then either the weight pass's per-thread dW partials or the data pass's Wᵀ.
        long gemm = t * col + Math.Max(t - 1, 1) * s.WLength;
        if (WinogradShape(s)) gemm = Math.Max(gemm, WinogradWorkspace(s, (int)t));
        if (SideBySide(s, data: true)) gemm = Math.Max(gemm, SideBySideWorkspace(s));
        if (!DirectForwardShape(s)) return gemm;
        long direct = Math.Max(gemm, Math.Max(DirectWeightsWorkspace(s), DirectWorkspace(s)));
        return Math.Max(direct, DirectShape(s) ? DirectWorkspace(DataShape(s)) : DirectStridedDataWorkspace(s));
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
        // Every path below but the depthwise one works in this one workspace (WorkspaceSize covers them all).
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.Forward");
        if (WinogradApplies<T>(s))
        {
            fixed (T* px = x) fixed (T* pw = w) fixed (T* pb = bias) fixed (T* py = y)
                WinogradRun((float*)px, (float*)pw, bias.IsEmpty ? null : (float*)pb, (float*)py, s, flip: false, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (DirectForwardApplies<T>(s))
        {
            fixed (T* px = x) fixed (T* pw = w) fixed (T* pb = bias) fixed (T* py = y)
                DirectRun((float*)px, (float*)pw, bias.IsEmpty ? null : (float*)pb, (float*)py, s, flip: false, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (SideBySide(s, data: false))
        {
            fixed (T* px = x) fixed (T* pw = w) fixed (T* pb = bias) fixed (T* py = y) fixed (T* pws = ws)
                SideBySideRun(SidePass.Forward, px, pw, bias.IsEmpty ? null : pb, py, s, pws);
            return;
        }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: false);
        a.Slots = SlotsFor(s, a.Items);
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
        // Every path below but the depthwise one works in this one workspace (WorkspaceSize covers them all).
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.BackwardData");
        if (WinogradApplies<T>(s))
        {
            fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx)
                WinogradRun((float*)pdy, (float*)pw, null, (float*)pdx, s, flip: true, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (DirectApplies<T>(s))
        {
            fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx)
                DirectRun((float*)pdy, (float*)pw, null, (float*)pdx, DataShape(s), flip: true, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (DirectStridedApplies<T>(s))
        {
            fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx)
                DirectStridedData((float*)pdy, (float*)pw, (float*)pdx, s, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (SideBySide(s, data: true))
        {
            fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx) fixed (T* pws = ws)
                SideBySideRun(SidePass.Data, pdx, pw, null, pdy, s, pws);
            return;
        }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: !s.IsPointwise);
        a.Slots = SlotsFor(s, a.Items);
        fixed (T* pdy = dy) fixed (T* pw = w) fixed (T* pdx = dx) fixed (T* pws = ws)
        {
            a.Dy = pdy; a.W = pw; a.Dx = pdx; a.Ws = pws;
            a.TransposeParts = TransposeParts(s);   // fixed for the call, so the parts cannot overlap or leave a gap
            WorkerPool.For(a.TransposeParts, &TransposeWeightsSlot<T>, (nint)(&a));   // one part runs inline
            if (a.Slots == 1) DataSlot<T>(0, (nint)(&a));
            else WorkerPool.For(a.Slots, &DataSlot<T>, (nint)(&a));
        }
    }

    // The data pass's Wᵀ: [G][C/G·R·S x K/G] after the col buffers. Every image's GEMM multiplies by W[g]ᵀ; given
    // the transpose once per call as a row-major matrix, the GEMM reads it in place (GemmBlocked's ReadsAInPlace)
    // instead of packing the transposed weight again for every image on every thread.
    private static T* TransposedWeights<T>(ref Args<T> a) where T : unmanaged => a.Ws + (long)a.Slots * a.ColLen;

    // Threads for the transpose: all of them from 64K weights up (a 64 x 64 weight is not worth a second thread).
    private static int TransposeParts(in Conv2dShape s) => s.WLength >= 1 << 16 ? WorkerPool.ThreadCount : 1;

    // Part `slot` of the transpose (runs of 8-row blocks of W, over all groups): 8x8 register transposes for float32.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeWeightsSlot<T>(int slot, nint state) where T : unmanaged
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int G = s.Groups, kg = s.K / G, crs = s.C / G * s.R * s.S, rowBlocks = (kg + 7) / 8, items = G * rowBlocks;
        int parts = a.TransposeParts;
        T* wt = TransposedWeights(ref a);
        for (int item = (int)((long)slot * items / parts), last = (int)((long)(slot + 1) * items / parts); item < last; item++)
        {
            int g = item / rowBlocks, k0 = item % rowBlocks * 8, k1 = Math.Min(kg, k0 + 8);
            T* src = a.W + (long)g * kg * crs, dst = wt + (long)g * kg * crs;
            int c = 0;
            if (typeof(T) == typeof(float) && Avx.IsSupported && k1 - k0 == 8)
                for (; c + 8 <= crs; c += 8) Cpu.Gemm.Transpose8x8((float*)(src + (long)k0 * crs + c), crs, (float*)(dst + (long)c * kg + k0), kg);
            for (; c < crs; c++)
                for (int k = k0; k < k1; k++) dst[(long)c * kg + k] = src[(long)k * crs + c];
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
            var wtg = new ReadOnlySpan<T>(TransposedWeights(ref a) + (long)g * kg * crs, kg * crs);   // W[g]ᵀ, crs x kg
            if (!s.IsPointwise) new Span<T>(img, cg * hw).Clear();
            for (int blk = b0; blk < b1; blk++)
            {
                int j0 = blk * a.Jb, jb = Math.Min(a.Jb, pq - j0);
                var dyb = new ReadOnlySpan<T>(a.Dy + ((long)n * s.K + g * kg) * pq + j0, (kg - 1) * pq + jb);
                if (s.IsPointwise) { Gemm(false, false, cg, jb, kg, wtg, kg, dyb, pq, T.Zero, new(img + j0, (cg - 1) * pq + jb), pq); continue; }
                Gemm(false, false, crs, jb, kg, wtg, kg, dyb, pq, T.Zero, new(col, crs * jb), jb);
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
        // Every path below but the depthwise one works in this one workspace (WorkspaceSize covers them all).
        var ws = Workspace(WorkspaceSize(s), workspace, "Conv2d.BackwardWeights");
        if (WinogradApplies<T>(s))
        {
            fixed (T* pdy = dy) fixed (T* px = x) fixed (T* pdw = dw)
                WinogradWeights((float*)pdy, (float*)px, (float*)pdw, s, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (DirectForwardApplies<T>(s))
        {
            fixed (T* pdy = dy) fixed (T* px = x) fixed (T* pdw = dw)
                DirectWeights((float*)pdy, (float*)px, (float*)pdw, s, MemoryMarshal.Cast<T, float>(ws));
            return;
        }
        if (SideBySide(s, data: false))
        {
            fixed (T* pdy = dy) fixed (T* px = x) fixed (T* pdw = dw) fixed (T* pws = ws)
                SideBySideRun(SidePass.Weights, px, pdw, null, pdy, s, pws);
            return;
        }
        var a = new Args<T> { S = s };
        Plan(ref a, perImage: false);
        a.Slots = SlotsFor(s, a.Items);
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

    private static void Gemm<T>(bool ta, bool tb, int m, int n, int k, ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Cpu.Gemm.Sgemm(ta, tb, m, n, k, 1f, MemoryMarshal.Cast<T, float>(a), lda, MemoryMarshal.Cast<T, float>(b), ldb, Unsafe.As<T, float>(ref beta), MemoryMarshal.Cast<T, float>(c), ldc);
        else if (typeof(T) == typeof(double))
            Cpu.Gemm.Dgemm(ta, tb, m, n, k, 1.0, MemoryMarshal.Cast<T, double>(a), lda, MemoryMarshal.Cast<T, double>(b), ldb, Unsafe.As<T, double>(ref beta), MemoryMarshal.Cast<T, double>(c), ldc);
        else throw new NotSupportedException($"Conv2d: no GEMM for {typeof(T).Name}");
    }
}
