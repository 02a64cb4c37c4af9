// Pool: 2-d max, average and global-average pooling on NCHW tensors, forward and backward (PyTorch semantics).
//
// Max: each output is the max of its R x S window; padding never wins (out-of-range cells are skipped), NaN
// propagates (the first NaN wins), and the flat in-plane index h·W + w of the winner is saved so backward
// can scatter-add dy to it (the first maximum wins ties, as PyTorch).
// Average: the window sum divided by R·S with padding cells counted as zeros (count_include_pad = true,
// PyTorch's default; with padding at most half the window no window reaches past the padded border, so the
// divisor is always R·S); backward spreads dy/(R·S) over the window.
// Global average (ResNet heads): y[n, c] = mean of the H·W plane; backward fills the plane with dy/(H·W).
// float32 max pooling runs one output row at a time, vectorised along the row with masked selects (a
// scalar "if (v > best)" mispredicts on real data); other types use the scalar loop.
// Planes are independent: they are split over WorkerPool when there is enough work.
// FLOPs: R·S per output (global: H·W per plane). Bytes: x read once (windows overlap in cache), y written
// once, plus 8 bytes of argmax per output for max pooling. Bound: memory bandwidth (and, for small
// windows, the per-output loop overhead).
// Reference: MaxForwardReference / AvgForwardReference / ...Reference (float64), and independent loops
// in Tests/Kernels/ConvPoolNormTests.cs.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Sizes of a pooling window over x [N, C, H, W]; y is [N, C, P, Q].</summary>
public readonly record struct Pool2dShape(int N, int C, int H, int W, int R, int S, int StrideH, int StrideW, int PadH = 0, int PadW = 0)
{
    /// <summary>Output height.</summary>
    public int P => (H + 2 * PadH - R) / StrideH + 1;
    /// <summary>Output width.</summary>
    public int Q => (W + 2 * PadW - S) / StrideW + 1;
    /// <summary>Elements of x: N·C·H·W.</summary>
    public long XLength => (long)N * C * H * W;
    /// <summary>Elements of y (and of argmax): N·C·P·Q.</summary>
    public long YLength => (long)N * C * P * Q;

    /// <summary>Throws an <see cref="ArgumentException"/> naming <paramref name="op"/> and the sizes when they are invalid.</summary>
    public void Validate(string op)
    {
        if (N < 0 || C <= 0 || H <= 0 || W <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0 || PadH < 0 || PadW < 0)
            throw new ArgumentException($"{op}: invalid sizes {this}");
        if (PadH > R / 2 || PadW > S / 2) throw new ArgumentException($"{op}: padding {PadH}x{PadW} must be at most half the {R}x{S} window (as in PyTorch)");
        if (P <= 0 || Q <= 0) throw new ArgumentException($"{op}: a {R}x{S} window does not fit a {H}x{W} input");
        if (XLength > int.MaxValue || YLength > int.MaxValue) throw new ArgumentException($"{op}: sizes too large for 32-bit indexing ({this})");
    }
}

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

    private static void CheckLengths(string op, in Pool2dShape s, int xLen, int yLen, int argLen = int.MaxValue)
    {
        s.Validate(op);
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

    /// <summary>Max pooling; <paramref name="argmax"/> receives the winner's in-plane index h·W + w per output (for backward).</summary>
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
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* img = a.X + (long)pl * s.H * W, y = a.Y + (long)pl * P * Q;
            long* arg = a.Arg + (long)pl * P * Q;
            for (int p = 0; p < P; p++)
            {
                int h0 = Math.Max(0, p * s.StrideH - s.PadH), h1 = Math.Min(s.H, p * s.StrideH - s.PadH + s.R);
                for (int q = 0; q < Q; q++)
                {
                    int w0 = Math.Max(0, q * s.StrideW - s.PadW), w1 = Math.Min(W, q * s.StrideW - s.PadW + s.S);
                    int at = h0 * W + w0;
                    T best = img[at];
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++)
                        {
                            T v = img[h * W + w];
                            if (v > best || (T.IsNaN(v) && !T.IsNaN(best))) { best = v; at = h * W + w; }
                        }
                    y[p * Q + q] = best; arg[p * Q + q] = at;
                }
            }
        }
    }

    private const int MaxVectorRow = 1024;

    // float32 max pooling one output row at a time, vectorised across the row: per window cell, lanes whose value
    // beats the running max (or is the first NaN) take it and its index with masked selects. The scalar loop's
    // "if (v > best)" mispredicts about once per window on real data (measured ~8x slower).
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
                int h0 = Math.Max(0, p * s.StrideH - s.PadH), h1 = Math.Min(s.H, p * s.StrideH - s.PadH + s.R);
                for (int q = 0; q < Q; q++) { best[q] = float.NegativeInfinity; at[q] = -1; }
                for (int h = h0; h < h1; h++)
                    for (int t = 0; t < s.S; t++)
                    {
                        int off = t - s.PadW, lo = off >= 0 ? 0 : (-off + sw - 1) / sw, hi = Math.Min(Q, (W - 1 - off) / sw + 1);
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
                                // take val where it is larger, or NaN over a non-NaN, or where nothing was taken yet
                                var take = Vector512.GreaterThan(val, cur) | (~Vector512.Equals(val, val) & Vector512.Equals(cur, cur)) | Vector512.Equals(idx, Vector512.Create(-1)).AsSingle();
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
                                var take = Vector256.GreaterThan(val, cur) | (~Vector256.Equals(val, val) & Vector256.Equals(cur, cur)) | Vector256.Equals(idx, Vector256.Create(-1)).AsSingle();
                                Vector256.ConditionalSelect(take, val, cur).Store(best + q0);
                                Vector256.ConditionalSelect(take.AsInt32(), iota + Vector256.Create(baseIndex + q0 * sw), idx).Store(at + q0);
                                if (q1 == hi - 8) { q0 = hi; break; }
                            }
                        }
                        for (; q0 < hi; q0++)
                        {
                            float val = v[q0];
                            if (at[q0] < 0 || val > best[q0] || (float.IsNaN(val) && !float.IsNaN(best[q0]))) { best[q0] = val; at[q0] = baseIndex + q0 * sw; }
                        }
                    }
                float* yr = y + ((long)pl * P + p) * Q;
                long* ar = arg + ((long)pl * P + p) * Q;
                for (int q = 0; q < Q; q++) { yr[q] = best[q]; ar[q] = at[q]; }
            }
        }
    }

    /// <summary>dx (overwritten) from dy and the argmax saved by <see cref="MaxForward{T}"/>: dy is added at each winner.</summary>
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
                if ((ulong)i >= (ulong)hw) throw new ArgumentException($"Pool2d.MaxBackward: argmax {i} at output {o} of plane {pl} is outside the {a.S.H}x{a.S.W} plane");
                dx[i] += dy[o];
            }
        }
    }

    /// <summary>Average pooling, zero padding counted in the divisor (count_include_pad = true).</summary>
    public static void AvgForward<T>(ReadOnlySpan<T> x, Span<T> y, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.AvgForward", s, x.Length, y.Length);
        fixed (T* px = x) fixed (T* py = y)
        {
            var a = new Args<T> { X = px, Y = py, S = s, Planes = s.N * s.C };
            Run(ref a, s.YLength * s.R * s.S, &AvgForwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AvgForwardChunk<T>(int chunk, nint state) where T : unmanaged, INumber<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        ref readonly Pool2dShape s = ref a.S;
        int P = s.P, Q = s.Q, W = s.W;
        T inv = T.One / T.CreateTruncating(s.R * s.S);
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* img = a.X + (long)pl * s.H * W, y = a.Y + (long)pl * P * Q;
            for (int p = 0; p < P; p++)
            {
                int h0 = Math.Max(0, p * s.StrideH - s.PadH), h1 = Math.Min(s.H, p * s.StrideH - s.PadH + s.R);
                for (int q = 0; q < Q; q++)
                {
                    int w0 = Math.Max(0, q * s.StrideW - s.PadW), w1 = Math.Min(W, q * s.StrideW - s.PadW + s.S);
                    T sum = T.Zero;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) sum += img[h * W + w];
                    y[p * Q + q] = sum * inv;
                }
            }
        }
    }

    /// <summary>dx (overwritten) for average pooling: each dy/(R·S) is added over its window.</summary>
    public static void AvgBackward<T>(ReadOnlySpan<T> dy, Span<T> dx, in Pool2dShape s) where T : unmanaged, INumber<T>
    {
        CheckLengths("Pool2d.AvgBackward", s, dx.Length, dy.Length);
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
        T inv = T.One / T.CreateTruncating(s.R * s.S);
        for (int pl = chunk * a.PlanesPerChunk, end = Math.Min(a.Planes, pl + a.PlanesPerChunk); pl < end; pl++)
        {
            T* dx = a.Dx + (long)pl * a.Hw, dy = a.Dy + (long)pl * P * Q;
            new Span<T>(dx, a.Hw).Clear();
            for (int p = 0; p < P; p++)
            {
                int h0 = Math.Max(0, p * s.StrideH - s.PadH), h1 = Math.Min(s.H, p * s.StrideH - s.PadH + s.R);
                for (int q = 0; q < Q; q++)
                {
                    int w0 = Math.Max(0, q * s.StrideW - s.PadW), w1 = Math.Min(W, q * s.StrideW - s.PadW + s.S);
                    T g = dy[p * Q + q] * inv;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) dx[h * W + w] += g;
                }
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

    /// <summary>Max pooling in float64 with the winners' in-plane indices (first maximum wins).</summary>
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
                            int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                            double v = x[(pl * s.H + h) * s.W + w];
                            if (at < 0 || v > best || (double.IsNaN(v) && !double.IsNaN(best))) { best = v; at = h * s.W + w; }
                        }
                    y[o] = best; arg[o] = at;
                }
        return (y, arg);
    }

    /// <summary>Max pooling backward in float64: dx[argmax] += dy.</summary>
    public static double[] MaxBackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<long> argmax, in Pool2dShape s)
    {
        CheckLengths("Pool2d.MaxBackwardReference", s, int.MaxValue, dy.Length, argmax.Length);
        var dx = new double[s.XLength];
        for (int pl = 0; pl < s.N * s.C; pl++)
            for (int o = 0; o < s.P * s.Q; o++) dx[pl * s.H * s.W + argmax[pl * s.P * s.Q + o]] += dy[pl * s.P * s.Q + o];
        return dx;
    }

    /// <summary>Average pooling in float64 (count_include_pad = true).</summary>
    public static double[] AvgForwardReference(ReadOnlySpan<double> x, in Pool2dShape s)
    {
        CheckLengths("Pool2d.AvgForwardReference", s, x.Length, int.MaxValue);
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
                    y[o] = sum / (s.R * s.S);
                }
        return y;
    }

    /// <summary>Average pooling backward in float64.</summary>
    public static double[] AvgBackwardReference(ReadOnlySpan<double> dy, in Pool2dShape s)
    {
        CheckLengths("Pool2d.AvgBackwardReference", s, int.MaxValue, dy.Length);
        var dx = new double[s.XLength];
        for (int pl = 0, o = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < s.P; p++)
                for (int q = 0; q < s.Q; q++, o++)
                    for (int r = 0; r < s.R; r++)
                        for (int t = 0; t < s.S; t++)
                        {
                            int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                            if (h >= 0 && h < s.H && w >= 0 && w < s.W) dx[(pl * s.H + h) * s.W + w] += dy[o] / (s.R * s.S);
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
