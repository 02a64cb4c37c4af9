// DepthwiseConv: depthwise convolution (groups = C = K), direct: output plane (n, c) is the sum over taps (r, t) of w[c, r, t]
// times the input plane shifted by (r·dil − pad, t·dil − pad) and subsampled by the stride. Each tap of each
// output row is one multiply-add over the row's valid columns (contiguous when stride is 1). Forward and
// backward data split over the N·C planes, backward weights over channels (each owns its R·S weights).
// Reached through Conv2d.Forward / BackwardData / BackwardWeights when the shape is depthwise (IsDepthwise).
// FLOPs: 2·N·C·R·S·P·Q per pass. Bytes: x, w and y once each. Bound: memory and per-row loop overhead.
// Reference: Conv2d.ForwardReference / BackwardReference (ConvReference.cs).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;
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

    private static void DwForwardPlane<T>(int plane, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int c = plane % s.C;
        T* img = a.X + (long)plane * s.H * s.W, outp = a.Y + (long)plane * s.P * s.Q, wc = a.W + (long)c * s.R * s.S;
        var all = new Span<T>(outp, s.P * s.Q);
        if (a.Bias != null) all.Fill(a.Bias[c]); else all.Clear();
        PlaneTaps<T, TapForward<T>>(img, outp, wc, s);
    }

    private static void DwDataPlane<T>(int plane, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Conv2dShape s = ref a.S;
        int c = plane % s.C;
        T* img = a.Dx + (long)plane * s.H * s.W, g = a.Dy + (long)plane * s.P * s.Q, wc = a.W + (long)c * s.R * s.S;
        new Span<T>(img, s.H * s.W).Clear();
        PlaneTaps<T, TapData<T>>(img, g, wc, s);
    }

    // One tap's multiply-add between an output row (y or dy, dense over q) and the input row it reads (x or dx, at
    // column q·sw, already shifted by the tap offset), for the output columns [lo, hi) inside the input.
    private interface ITap<T> where T : unmanaged, INumber<T>
    {
        static abstract void Apply(T* outRow, T* inRow, T w, int lo, int hi, int sw);
    }

    // forward: y[q] += w·x[q·sw]
    private readonly struct TapForward<T> : ITap<T> where T : unmanaged, INumber<T>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply(T* outRow, T* inRow, T w, int lo, int hi, int sw)
        {
            if (sw == 1) AxpyRow(inRow + lo, w, outRow + lo, hi - lo);
            else for (int q = lo; q < hi; q++) outRow[q] += w * inRow[q * sw];
        }
    }

    // backward data, the adjoint: dx[q·sw] += w·dy[q]
    private readonly struct TapData<T> : ITap<T> where T : unmanaged, INumber<T>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply(T* outRow, T* inRow, T w, int lo, int hi, int sw)
        {
            if (sw == 1) AxpyRow(outRow + lo, w, inRow + lo, hi - lo);
            else for (int q = lo; q < hi; q++) inRow[q * sw] += w * outRow[q];
        }
    }

    // Every (output row p, tap r, t) of one plane whose input row and columns fall inside the input: the loop forward
    // and backward data share (the JIT specialises it per TTap, so the tap inlines).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PlaneTaps<T, TTap>(T* img, T* outPlane, T* wc, in Conv2dShape s) where T : unmanaged, INumber<T> where TTap : struct, ITap<T>
    {
        int P = s.P, Q = s.Q, sw = s.StrideW;
        for (int p = 0; p < P; p++)
        {
            T* outRow = outPlane + (long)p * Q;
            for (int r = 0; r < s.R; r++)
            {
                int h = p * s.StrideH - s.PadH + r * s.DilationH;
                if ((uint)h >= (uint)s.H) continue;
                for (int t = 0; t < s.S; t++)
                {
                    int off = t * s.DilationW - s.PadW;
                    TapRange(s.W, Q, sw, off, out int lo, out int hi);
                    if (hi <= lo) continue;
                    TTap.Apply(outRow, img + (long)h * s.W + off, wc[r * s.S + t], lo, hi, sw);
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

    // Row helpers for the depthwise loops: rows are tens of values, too short to amortise a library call.
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
