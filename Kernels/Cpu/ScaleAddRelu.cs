// ScaleAddRelu: the end of a ResNet block with Squeeze-and-Excitation fused, y = max(0, x·s + r), where s holds one
// scale per run of contiguous values (SE's s[n, c] over the H·W values of channel c of image n) and r is the shortcut;
// and its gradient in one pass.
// Forward: y[i, j] = max(0, x[i, j]·s[i] + r[i, j]) for run i and j < L: reads x and r, writes y (the unfused pair
// writes x·s and reads it back for the add and ReLU).
// Backward, with d = dy·[y > 0] (the ReLU's mask from the saved output):
//   dr[i, j] = d[i, j],   dx[i, j] = d[i, j]·s[i],   ds[i] = Σ_j d[i, j]·x[i, j]
// in one pass that reads dy, y and x and writes dr and dx; unfused, the ReLU backward writes d, the product's backward
// reads it twice, writes d·s and d·x, and a reduction reads d·x back. ds is summed in float64 per run (from float
// vector partials flushed every 4096 values), as BatchNorm's sums.
// NaN: max(NaN, 0) propagates NaN (Vector.Max, T.Max), and a NaN output passes no gradient (NaN > 0 is false), as the
// separate ReLU and its backward.
// Threads: runs are split into WorkerPool chunks when there are 128K values or more.
// FLOPs: 3 per element forward, 4 backward. Bytes per float element: forward 12, backward 20. Bound: memory bandwidth.
// Reference: the float64 loops in Tests/Kernels/ScaleAddReluTests.cs, at run lengths around the vector widths.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>y = max(0, x·s + r) with one scale per run of values (SE's recalibration, the residual add and the ReLU), and its gradient.</summary>
public static unsafe class ScaleAddRelu
{
    private const long ParallelLength = 128 * 1024;   // below this a second thread costs more than it saves
    private const int FlushEvery = 4096;             // values summed in T before a run's partial sum moves to float64

    private struct Args<T> where T : unmanaged
    {
        public T* X, S, R, Y, Dy, Dx, Ds, Dr;
        public int Runs, RunLength, RunsPerChunk;
    }

    private static void Check(string op, int runs, int runLength, params (int Length, string Name, long Need, bool Optional)[] spans)
    {
        if (runs < 0 || runLength < 0) throw new ArgumentException($"{op}: invalid sizes runs={runs} runLength={runLength}");
        if ((long)runs * runLength > int.MaxValue) throw new ArgumentException($"{op}: runs·runLength = {(long)runs * runLength} is too large for 32-bit indexing");
        foreach (var (len, name, need, optional) in spans)
            if (len < need && !(optional && len == 0))
                throw new ArgumentException($"{op}: {name} has {len} elements, needs {need} (runs={runs}, runLength={runLength}){(optional ? " or none" : "")}");
    }

    private static void Run<T>(ref Args<T> a, delegate*<int, nint, void> body) where T : unmanaged
    {
        long total = (long)a.Runs * a.RunLength;
        int chunks = total < ParallelLength || WorkerPool.ThreadCount == 1 ? 1 : Math.Min(a.Runs, WorkerPool.ChunkCount(total, ParallelLength / 4, 2));
        a.RunsPerChunk = Math.Max(1, (a.Runs + chunks - 1) / Math.Max(1, chunks));
        chunks = (a.Runs + a.RunsPerChunk - 1) / a.RunsPerChunk;
        fixed (Args<T>* pa = &a)
        {
            if (chunks <= 1) body(0, (nint)pa);
            else WorkerPool.For(chunks, body, (nint)pa);
        }
    }

    /// <summary>y[i·L + j] = max(0, x[i·L + j]·s[i] + r[i·L + j]) for runs i &lt; <paramref name="runs"/> of L = <paramref name="runLength"/> values.</summary>
    public static void Forward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> s, ReadOnlySpan<T> r, Span<T> y, int runs, int runLength) where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "ScaleAddRelu.Forward";
        long n = (long)runs * runLength;
        Check(op, runs, runLength, (x.Length, "x", n, false), (s.Length, "s", runs, false), (r.Length, "r", n, false), (y.Length, "y", n, false));
        fixed (T* px = x) fixed (T* ps = s) fixed (T* pr = r) fixed (T* py = y)
        {
            var a = new Args<T> { X = px, S = ps, R = pr, Y = py, Runs = runs, RunLength = runLength };
            Run(ref a, &ForwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardChunk<T>(int chunk, nint state) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        int len = a.RunLength;
        for (int run = chunk * a.RunsPerChunk, end = Math.Min(a.Runs, run + a.RunsPerChunk); run < end; run++)
        {
            long off = (long)run * len;
            T* x = a.X + off, r = a.R + off, y = a.Y + off;
            T s = a.S[run];
            int i = 0;
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                var vs = Vector512.Create(s);
                for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count)
                    Vector512.Max(Vector512.Load(x + i) * vs + Vector512.Load(r + i), Vector512<T>.Zero).Store(y + i);
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                var vs = Vector256.Create(s);
                for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count)
                    Vector256.Max(Vector256.Load(x + i) * vs + Vector256.Load(r + i), Vector256<T>.Zero).Store(y + i);
            }
            for (; i < len; i++) y[i] = T.Max(x[i] * s + r[i], T.Zero);
        }
    }

    /// <summary>
    /// The gradient of <see cref="Forward{T}"/> from dy and its saved output y: dr = dy·[y &gt; 0], dx = dr·s[i],
    /// ds[i] = Σ_j dr·x (each overwritten; any of the three may be empty when not wanted).
    /// </summary>
    public static void Backward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> y, ReadOnlySpan<T> x, ReadOnlySpan<T> s, Span<T> dx, Span<T> ds, Span<T> dr, int runs, int runLength)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "ScaleAddRelu.Backward";
        long n = (long)runs * runLength;
        Check(op, runs, runLength, (dy.Length, "dy", n, false), (y.Length, "y", n, false), (x.Length, "x", ds.IsEmpty ? 0 : n, false), (s.Length, "s", dx.IsEmpty ? 0 : runs, false),
            (dx.Length, "dx", n, true), (ds.Length, "ds", runs, true), (dr.Length, "dr", n, true));
        fixed (T* pdy = dy) fixed (T* py = y) fixed (T* px = x) fixed (T* ps = s) fixed (T* pdx = dx) fixed (T* pds = ds) fixed (T* pdr = dr)
        {
            var a = new Args<T>
            {
                Dy = pdy, Y = py, X = px, S = ps, Dx = dx.IsEmpty ? null : pdx, Ds = ds.IsEmpty ? null : pds, Dr = dr.IsEmpty ? null : pdr,
                Runs = runs, RunLength = runLength,
            };
            Run(ref a, &BackwardChunk<T>);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardChunk<T>(int chunk, nint state) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref Args<T> a = ref *(Args<T>*)state;
        int len = a.RunLength;
        for (int run = chunk * a.RunsPerChunk, end = Math.Min(a.Runs, run + a.RunsPerChunk); run < end; run++)
        {
            long off = (long)run * len;
            T* dy = a.Dy + off, y = a.Y + off, x = a.X + off, dx = a.Dx == null ? null : a.Dx + off, dr = a.Dr == null ? null : a.Dr + off;
            T s = a.S == null ? T.Zero : a.S[run];
            bool wantS = a.Ds != null;
            double sum = 0;
            int i = 0;
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                var vs = Vector512.Create(s);
                while (i + Vector512<T>.Count <= len)
                {
                    var acc = Vector512<T>.Zero;
                    for (int stop = Math.Min(len, i + FlushEvery); i + Vector512<T>.Count <= stop; i += Vector512<T>.Count)
                    {
                        var d = Vector512.Load(dy + i) & Vector512.GreaterThan(Vector512.Load(y + i), Vector512<T>.Zero);
                        if (dr != null) d.Store(dr + i);
                        if (dx != null) (d * vs).Store(dx + i);
                        if (wantS) acc += d * Vector512.Load(x + i);
                    }
                    sum += double.CreateTruncating(Vector512.Sum(acc));
                }
            }
            else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                var vs = Vector256.Create(s);
                while (i + Vector256<T>.Count <= len)
                {
                    var acc = Vector256<T>.Zero;
                    for (int stop = Math.Min(len, i + FlushEvery); i + Vector256<T>.Count <= stop; i += Vector256<T>.Count)
                    {
                        var d = Vector256.Load(dy + i) & Vector256.GreaterThan(Vector256.Load(y + i), Vector256<T>.Zero);
                        if (dr != null) d.Store(dr + i);
                        if (dx != null) (d * vs).Store(dx + i);
                        if (wantS) acc += d * Vector256.Load(x + i);
                    }
                    sum += double.CreateTruncating(Vector256.Sum(acc));
                }
            }
            for (; i < len; i++)
            {
                T d = y[i] > T.Zero ? dy[i] : T.Zero;
                if (dr != null) dr[i] = d;
                if (dx != null) dx[i] = d * s;
                if (wantS) sum += double.CreateTruncating(d * x[i]);
            }
            if (wantS) a.Ds[run] = T.CreateTruncating(sum);
        }
    }
}
