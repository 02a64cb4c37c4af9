// Pool: 2-d max, average and global-average pooling on NCHW tensors, forward and backward (PyTorch semantics:
// torch.nn.functional.max_pool2d / avg_pool2d with rectangular kernels, strides, paddings, dilation (max),
// ceil_mode and count_include_pad).
//
// Window of output (p, q): rows h = p·sh − ph + r·dh (r < R), columns w = q·sw − pw + t·dw (t < S); cells outside
// the input are skipped. Output sizes follow PyTorch's pooling_output_shape (Pool2dShape.OutputSize).
// Max: padding never wins; NaN propagates, and as in PyTorch a cell is taken when v > best or v is NaN, so the
// first maximum wins ties and the last NaN wins. The flat in-plane index h·W + w of the winner is saved (PyTorch's
// return_indices) so backward can scatter-add dy to it. A window with no cell inside the input (possible only
// with dilation) gives −∞ and index −1, which backward skips.
// Average: the window sum divided by the window's cell count: clipped to the padded input when zero padding
// counts (count_include_pad, PyTorch's default; only ceil_mode windows are clipped there), clipped to the input
// otherwise; backward spreads dy/count over the window.
// Global average (ResNet heads): y[n, c] = mean of the H·W plane; backward fills the plane with dy/(H·W).
// float32 max pooling runs one output row at a time, vectorised along the row with masked selects (a
// scalar "if (v > best)" mispredicts on real data); other types use the scalar loop.
// Planes are independent: they are split over WorkerPool when there is enough work.
// FLOPs: R·S per output (global: H·W per plane). Bytes: x read once (windows overlap in cache), y written
// once, plus 8 bytes of argmax per output for max pooling. Bound: memory bandwidth (and, for small
// windows, the per-output loop overhead).
// Reference: MaxForwardReference / MaxBackwardReference / AvgForwardReference / AvgBackwardReference /
// GlobalAvgForwardReference (float64), independent loops in
// Tests/Kernels/ConvPoolNormTests.cs and PyTorch's values (Tests/Fixtures/make_pooling.py).
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Pooling kernels (float32 and float64).</summary>
public static unsafe class Pool2d
{
    private const long MinParallelWork = 1 << 16;   // window cells touched

    private struct Args<T> where T : unmanaged
    {
        public T* X, Y, Dy, Dx;
        public long* Arg;
        public Pool2dShape S;
        public int Planes, PlanesPerChunk, Hw;
    }

    private static void CheckLengths(string op, in Pool2dShape s, int xLen, int yLen, int argLen = int.MaxValue, bool average = false)
    {
        s.Validate(op);
        if (average && (s.DilationH != 1 || s.DilationW != 1)) throw new ArgumentException($"{op}: average pooling has no dilation, got {s.DilationH}x{s.DilationW}");
        if (xLen < s.XLength || yLen < s.YLength || argLen < s.YLength)
            throw new ArgumentException($"{op}: x/dx has {xLen}, y/dy {yLen}{(argLen == int.MaxValue ? "" : $", argmax {argLen}")} elements, needs {s.XLength} and {s.YLength} for {s}");
    }

    private static void Run<T>(ref Args<T> a, long work, delegate*<int, nint, void> body) where T : unmanaged
    {
        int chunks = work < MinParallelWork ? 1 : Math.Min(a.Planes, WorkerPool.ChunkCount(work, MinParallelWork));
        a.PlanesPerChunk = (a.Planes + chunks - 1) / Math.Max(1, chunks);
        if (a.PlanesPerChunk == 0) return;
        chunks = (a.Planes + a.PlanesPerChunk - 1) / a.PlanesPerChunk;
        fixed (Args<T>* pa = &a)
        {
            if (chunks == 1) body(0, (nint)pa);
            else WorkerPool.For(chunks, body, (nint)pa);
        }
    }

    /// <summary>Max pooling; <paramref name="argmax"/> receives the winner's in-plane index h·W + w per output (−1 for a window outside the input).</summary>
    public static void MaxForward<T>(ReadOnlySpan<T> x, Span<T> y, Span<long> argmax, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.MaxForward", s, x.Length, y.Length, argmax.Length);
        fixed (T* px = x) fixed (T* py = y) fixed (long* pa = argmax)
        {
            var a = new Args<T> { X = px, Y = py, Arg = pa, S = s, Planes = s.N * s.C };
            Run(ref a, s.YLength * s.R * s.S, &MaxForwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaxForwardChunk<T>(int chunk, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Pool2dShape s = ref a.S;
        int P = s.P, Q = s.Q, W = s.W;
        if (typeof(T) == typeof(float) && Q <= MaxVectorRow && (Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated))
        {
            MaxForwardRowsFloat((float*)a.X, (float*)a.Y, a.Arg, s, chunk * a.PlanesPerChunk, Math.Min(a.Planes, (chunk + 1) * a.PlanesPerChunk));
            return;
        }
        T empty = T.CreateTruncating(double.NegativeInfinity);
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* img = a.X + (long)pl * s.H * W, y = a.Y + (long)pl * P * Q;
            long* arg = a.Arg + (long)pl * P * Q;
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    T best = empty;
                    int at = -1;
                    for (int r = 0; r < s.R; r++)
                    {
                        int h = p * s.StrideH - s.PadH + r * s.DilationH;
                        if ((uint)h >= (uint)s.H) continue;
                        for (int t = 0; t < s.S; t++)
                        {
                            int w = q * s.StrideW - s.PadW + t * s.DilationW;
                            if ((uint)w >= (uint)W) continue;
                            T v = img[h * W + w];
                            if (at < 0 || v > best || T.IsNaN(v)) { best = v; at = h * W + w; }
                        }
                    }
                    y[p * Q + q] = best; arg[p * Q + q] = at;
                }
        }
    }

    private const int MaxVectorRow = 1024;

    // float32 max pooling one output row at a time, vectorised across the row: per window cell (r, t), the lanes q
    // whose cell lies inside the input (Conv2d.TapRange) take its value and index where it beats the running max,
    // is NaN, or is the first cell seen, with masked selects. The scalar loop's "if (v > best)" mispredicts about
    // once per window on real data (measured ~8x slower). Cells are visited in the scalar loop's (r, t) order.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaxForwardRowsFloat(float* x, float* y, long* arg, in Pool2dShape s, int plane0, int plane1)
    {
        int P = s.P, Q = s.Q, W = s.W, sw = s.StrideW;
        float* best = stackalloc float[MaxVectorRow], gather = stackalloc float[MaxVectorRow];
        int* at = stackalloc int[MaxVectorRow];
        for (int pl = plane0; pl < plane1; pl++)
        {
            float* img = x + (long)pl * s.H * W;
            for (int p = 0; p < P; p++)
            {
                for (int q = 0; q < Q; q++) { best[q] = float.NegativeInfinity; at[q] = -1; }
                for (int r = 0; r < s.R; r++)
                {
                    int h = p * s.StrideH - s.PadH + r * s.DilationH;
                    if ((uint)h >= (uint)s.H) continue;
                    for (int t = 0; t < s.S; t++)
                    {
                        int off = t * s.DilationW - s.PadW;
                        Conv2d.TapRange(W, Q, sw, off, out int lo, out int hi);
                        if (hi <= lo) continue;
                        float* row = img + (long)h * W + off;
                        float* v = row;
                        if (sw != 1) { v = gather; for (int q = lo; q < hi; q++) gather[q] = row[q * sw]; }
                        int baseIndex = h * W + off, q0 = lo;
                        if (Vector512.IsHardwareAccelerated)
                        {
                            var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) * sw;
                            // The select is idempotent, so a last vector overlapping the previous one replaces the scalar tail.
                            for (int q1 = lo; hi - lo >= 16; q1 = Math.Min(q1 + 16, hi - 16))
                            {
                                q0 = q1;
                                var val = Vector512.Load(v + q0); var cur = Vector512.Load(best + q0); var idx = Vector512.Load(at + q0);
                                // take val where it is larger, or NaN, or where nothing was taken yet
                                var take = Vector512.GreaterThan(val, cur) | ~Vector512.Equals(val, val) | Vector512.Equals(idx, Vector512.Create(-1)).AsSingle();
                                Vector512.ConditionalSelect(take, val, cur).Store(best + q0);
                                Vector512.ConditionalSelect(take.AsInt32(), iota + Vector512.Create(baseIndex + q0 * sw), idx).Store(at + q0);
                                if (q1 == hi - 16) { q0 = hi; break; }
                            }
                        }
                        else
                        {
                            var iota = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * sw;
                            // The select is idempotent, so a last vector overlapping the previous one replaces the scalar tail.
                            for (int q1 = lo; hi - lo >= 8; q1 = Math.Min(q1 + 8, hi - 8))
                            {
                                q0 = q1;
                                var val = Vector256.Load(v + q0); var cur = Vector256.Load(best + q0); var idx = Vector256.Load(at + q0);
                                var take = Vector256.GreaterThan(val, cur) | ~Vector256.Equals(val, val) | Vector256.Equals(idx, Vector256.Create(-1)).AsSingle();
                                Vector256.ConditionalSelect(take, val, cur).Store(best + q0);
                                Vector256.ConditionalSelect(take.AsInt32(), iota + Vector256.Create(baseIndex + q0 * sw), idx).Store(at + q0);
                                if (q1 == hi - 8) { q0 = hi; break; }
                            }
                        }
                        for (; q0 < hi; q0++)
                        {
                            float val = v[q0];
                            if (at[q0] < 0 || val > best[q0] || float.IsNaN(val)) { best[q0] = val; at[q0] = baseIndex + q0 * sw; }
                        }
                    }
                }
                float* yr = y + ((long)pl * P + p) * Q;
                long* ar = arg + ((long)pl * P + p) * Q;
                for (int q = 0; q < Q; q++) { yr[q] = best[q]; ar[q] = at[q]; }
            }
        }
    }

    /// <summary>
    /// dx (overwritten) from dy and the argmax saved by <see cref="MaxForward{T}"/>: dy is added at each winner
    /// (−1, a window outside the input, adds nothing; any other index outside the plane throws).
    /// </summary>
    public static void MaxBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<long> argmax, Span<T> dx, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.MaxBackward", s, dx.Length, dy.Length, argmax.Length);
        fixed (T* pdy = dy) fixed (T* pdx = dx) fixed (long* pa = argmax)
        {
            var a = new Args<T> { Dy = pdy, Dx = pdx, Arg = pa, S = s, Planes = s.N * s.C, Hw = s.H * s.W };
            Run(ref a, s.XLength + s.YLength, &MaxBackwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaxBackwardChunk<T>(int chunk, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        int pq = a.S.P * a.S.Q, hw = a.Hw;
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* dx = a.Dx + (long)pl * hw, dy = a.Dy + (long)pl * pq;
            long* arg = a.Arg + (long)pl * pq;
            new Span<T>(dx, hw).Clear();
            for (int o = 0; o < pq; o++)
            {
                long i = arg[o];
                if ((ulong)i < (ulong)hw) dx[i] += dy[o];
                else if (i != -1) throw new ArgumentException($"Pool2d.MaxBackward: argmax {i} at output {o} of plane {pl} is outside the {a.S.H}x{a.S.W} plane");
            }
        }
    }

    /// <summary>Average pooling (divisor: <see cref="Pool2dShape.AvgDivisor"/>).</summary>
    public static void AvgForward<T>(ReadOnlySpan<T> x, Span<T> y, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.AvgForward", s, x.Length, y.Length, average: true);
        fixed (T* px = x) fixed (T* py = y)
        {
            var a = new Args<T> { X = px, Y = py, S = s, Planes = s.N * s.C };
            Run(ref a, s.YLength * s.R * s.S, &AvgForwardChunk<T>);
        }
    }

    // The input rows [h0, h1) and columns [w0, w1) of window (p, q) (average pooling has no dilation).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Window(in Pool2dShape s, int p, int q, out int h0, out int h1, out int w0, out int w1)
    {
        h0 = Math.Max(0, p * s.StrideH - s.PadH); h1 = Math.Min(s.H, p * s.StrideH - s.PadH + s.R);
        w0 = Math.Max(0, q * s.StrideW - s.PadW); w1 = Math.Min(s.W, q * s.StrideW - s.PadW + s.S);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AvgForwardChunk<T>(int chunk, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Pool2dShape s = ref a.S;
        int P = s.P, Q = s.Q, W = s.W;
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* img = a.X + (long)pl * s.H * W, y = a.Y + (long)pl * P * Q;
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    Window(s, p, q, out int h0, out int h1, out int w0, out int w1);
                    T sum = T.Zero;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) sum += img[h * W + w];
                    y[p * Q + q] = sum * (T.One / T.CreateTruncating(s.AvgDivisor(p, q)));
                }
        }
    }

    /// <summary>dx (overwritten) for average pooling: each dy divided by its window's divisor is added over the window.</summary>
    public static void AvgBackward<T>(ReadOnlySpan<T> dy, Span<T> dx, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.AvgBackward", s, dx.Length, dy.Length, average: true);
        fixed (T* pdy = dy) fixed (T* pdx = dx)
        {
            var a = new Args<T> { Dy = pdy, Dx = pdx, S = s, Planes = s.N * s.C, Hw = s.H * s.W };
            Run(ref a, s.YLength * s.R * s.S, &AvgBackwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AvgBackwardChunk<T>(int chunk, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Pool2dShape s = ref a.S;
        int P = s.P, Q = s.Q, W = s.W;
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* dx = a.Dx + (long)pl * a.Hw, dy = a.Dy + (long)pl * P * Q;
            new Span<T>(dx, a.Hw).Clear();
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                {
                    Window(s, p, q, out int h0, out int h1, out int w0, out int w1);
                    T g = dy[p * Q + q] * (T.One / T.CreateTruncating(s.AvgDivisor(p, q)));
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) dx[h * W + w] += g;
                }
        }
    }

    /// <summary>Global average pooling: y[n·C + c] = mean of plane (n, c) of x [N, C, H·W].</summary>
    public static void GlobalAvgForward<T>(ReadOnlySpan<T> x, Span<T> y, int n, int c, int hw) where T : unmanaged, INumber<T>
    {
        CheckGlobal("Pool2d.GlobalAvgForward", n, c, hw, x.Length, y.Length);
        T inv = T.One / T.CreateTruncating(hw);
        for (int pl = 0; pl < n * c; pl++) y[pl] = TensorPrimitives.Sum(x.Slice(pl * hw, hw)) * inv;
    }

    /// <summary>Global average pooling backward: dx (overwritten) plane (n, c) = dy[n·C + c] / (H·W).</summary>
    public static void GlobalAvgBackward<T>(ReadOnlySpan<T> dy, Span<T> dx, int n, int c, int hw) where T : unmanaged, INumber<T>
    {
        CheckGlobal("Pool2d.GlobalAvgBackward", n, c, hw, dx.Length, dy.Length);
        T inv = T.One / T.CreateTruncating(hw);
        for (int pl = 0; pl < n * c; pl++) dx.Slice(pl * hw, hw).Fill(dy[pl] * inv);
    }

    private static void CheckGlobal(string op, int n, int c, int hw, int xLen, int yLen)
    {
        if (n < 0 || c <= 0 || hw <= 0) throw new ArgumentException($"{op}: invalid sizes N={n} C={c} HW={hw}");
        if (xLen < (long)n * c * hw || yLen < (long)n * c)
            throw new ArgumentException($"{op}: x/dx has {xLen} and y/dy {yLen} elements, needs N·C·HW={(long)n * c * hw} and N·C={(long)n * c}");
    }

    // ---- float64 references: direct loops over every window cell, the padded ones included. ----

    /// <summary>Max pooling in float64 with the winners' in-plane indices (first maximum wins, NaN wins, −1 for an empty window).</summary>
    public static (double[] Y, long[] Argmax) MaxForwardReference(ReadOnlySpan<double> x, in Pool2dShape s)
    {
        CheckLengths("Pool2d.MaxForwardReference", s, x.Length, int.MaxValue);
        var y = new double[s.YLength]; var arg = new long[s.YLength];
        for (int pl = 0, o = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < s.P; p++)
                for (int q = 0; q < s.Q; q++, o++)
                {
                    double best = double.NegativeInfinity; long at = -1;
                    for (int r = 0; r < s.R; r++)
                        for (int t = 0; t < s.S; t++)
                        {
                            int h = p * s.StrideH - s.PadH + r * s.DilationH, w = q * s.StrideW - s.PadW + t * s.DilationW;
                            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                            double v = x[(pl * s.H + h) * s.W + w];
                            if (at < 0 || v > best || double.IsNaN(v)) { best = v; at = h * s.W + w; }
                        }
                    y[o] = best; arg[o] = at;
                }
        return (y, arg);
    }

    /// <summary>Max pooling backward in float64: dx[argmax] += dy (argmax −1 adds nothing).</summary>
    public static double[] MaxBackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<long> argmax, in Pool2dShape s)
    {
        CheckLengths("Pool2d.MaxBackwardReference", s, int.MaxValue, dy.Length, argmax.Length);
        var dx = new double[s.XLength];
        for (int pl = 0; pl < s.N * s.C; pl++)
            for (int o = 0; o < s.P * s.Q; o++)
            {
                long i = argmax[pl * s.P * s.Q + o];
                if (i >= 0) dx[pl * s.H * s.W + i] += dy[pl * s.P * s.Q + o];
            }
        return dx;
    }

    // The window's cell count that averages divide by, counted cell by cell: the cells inside the padded input
    // (count_include_pad) or inside the input.
    private static int ReferenceDivisor(in Pool2dShape s, int p, int q)
    {
        int count = 0, lo = s.CountIncludePad ? 1 : 0;
        for (int r = 0; r < s.R; r++)
            for (int t = 0; t < s.S; t++)
            {
                int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                if (h >= -lo * s.PadH && h < s.H + lo * s.PadH && w >= -lo * s.PadW && w < s.W + lo * s.PadW) count++;
            }
        return count;
    }

    /// <summary>Average pooling in float64.</summary>
    public static double[] AvgForwardReference(ReadOnlySpan<double> x, in Pool2dShape s)
    {
        CheckLengths("Pool2d.AvgForwardReference", s, x.Length, int.MaxValue, average: true);
        var y = new double[s.YLength];
        for (int pl = 0, o = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < s.P; p++)
                for (int q = 0; q < s.Q; q++, o++)
                {
                    double sum = 0;
                    for (int r = 0; r < s.R; r++)
                        for (int t = 0; t < s.S; t++)
                        {
                            int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                            if (h >= 0 && h < s.H && w >= 0 && w < s.W) sum += x[(pl * s.H + h) * s.W + w];
                        }
                    y[o] = sum / ReferenceDivisor(s, p, q);
                }
        return y;
    }

    /// <summary>Average pooling backward in float64.</summary>
    public static double[] AvgBackwardReference(ReadOnlySpan<double> dy, in Pool2dShape s)
    {
        CheckLengths("Pool2d.AvgBackwardReference", s, int.MaxValue, dy.Length, average: true);
        var dx = new double[s.XLength];
        for (int pl = 0, o = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < s.P; p++)
                for (int q = 0; q < s.Q; q++, o++)
                {
                    int divisor = ReferenceDivisor(s, p, q);
                    for (int r = 0; r < s.R; r++)
                        for (int t = 0; t < s.S; t++)
                        {
                            int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                            if (h >= 0 && h < s.H && w >= 0 && w < s.W) dx[(pl * s.H + h) * s.W + w] += dy[o] / divisor;
                        }
                }
        return dx;
    }

    /// <summary>Global average pooling in float64: the mean of each plane.</summary>
    public static double[] GlobalAvgForwardReference(ReadOnlySpan<double> x, int n, int c, int hw)
    {
        CheckGlobal("Pool2d.GlobalAvgForwardReference", n, c, hw, x.Length, int.MaxValue);
        var y = new double[n * c];
        for (int pl = 0; pl < n * c; pl++) { double sum = 0; for (int i = 0; i < hw; i++) sum += x[pl * hw + i]; y[pl] = sum / hw; }
        return y;
    }
}
