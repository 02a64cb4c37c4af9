using AttnCore.Backends;
using AttnCore.Kernels;
using AttnCore.Kernels.Gpu;
using AttnCore.Tests.Engine;
using AttnCore.Tests.Reference;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;
using GemmKernels = AttnCore.Kernels.Gpu.Gemm;
using ReduceKernels = AttnCore.Kernels.Gpu.Reduce;
using SoftmaxKernels = AttnCore.Kernels.Gpu.Softmax;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The ILGPU kernels on ILGPU's CPU accelerator, called through <see cref="IBackend"/> on raw storages and
/// compared element by element with a float64 reference written here. Inputs are small (every emulated GPU
/// thread is an OS thread) and come in awkward layouts: offsets, transposes, strides, broadcasts, size-0 and
/// size-1 dims, ranks above the kernels' 6 packed dims. Tolerance: |got - want| &lt;= 1e-5 + 1e-5*|want|.
/// </summary>
public class IlgpuBackendTests(string deviceName) : DeviceFixture<IlgpuBackendTests>(deviceName)
{
    static IlgpuBackend B => (IlgpuBackend)TestDevice.Backend;

    // ---- plumbing: host data, views, the float64 reference ------------------------------------------------

    /// <summary>Host values plus a device copy; the view's layout says which elements the op sees.</summary>
    sealed class View(float[] host, Storage storage, Layout layout) : IDisposable
    {
        public float[] Host { get; } = host;
        public Storage Storage { get; } = storage;
        public Layout Layout { get; } = layout;
        public double this[long i] => Host[Offset(Layout, i)];
        public void Dispose() => Storage.Release();
    }

    enum Kind { Contiguous, Transposed, Strided, Broadcast }

    static long Offset(Layout l, long i)
    {
        long o = l.Offset;
        for (int d = l.Rank - 1; d >= 0; d--) { o += i % l.Shape[d] * l.Strides[d]; i /= l.Shape[d]; }
        return o;
    }

    static Storage Upload(float[] data) => DeviceStorage.Upload(B, data);
    static float[] Download(Storage s, long n) => DeviceStorage.Download(B, s, n);

    static float[] Values(Random rng, long n, Func<double, double>? map = null) =>
        Enumerable.Range(0, (int)n).Select(_ => (float)(map ?? (v => v))(Normal(rng))).ToArray();

    static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>A view of <paramref name="shape"/> laid out as <paramref name="kind"/> (Broadcast: every other dim expanded from size 1).</summary>
    static View Make(int[] shape, Kind kind, Random rng, Func<double, double>? map = null)
    {
        switch (kind)
        {
            case Kind.Transposed:
            {
                var rev = shape.Reverse().ToArray();
                var host = Values(rng, Shape.Numel(rev), map);
                var strides = Shape.ContiguousStrides(rev).Reverse().ToArray();
                return new View(host, Upload(host), new Layout((int[])shape.Clone(), strides, 0));
            }
            case Kind.Strided when shape.Length > 0:
            {
                var big = (int[])shape.Clone();
                big[^1] = 2 * shape[^1] + 1;
                var host = Values(rng, Shape.Numel(big), map);
                var strides = Shape.ContiguousStrides(big);
                strides[^1] = 2;
                return new View(host, Upload(host), new Layout((int[])shape.Clone(), strides, 1));
            }
            case Kind.Broadcast:
            {
                var small = shape.Select((d, i) => i % 2 == 0 ? 1 : d).ToArray();
                var host = Values(rng, Shape.Numel(small), map);
                return new View(host, Upload(host), Layout.Contiguous(small).BroadcastTo(shape));
            }
            default:
            {
                var host = Values(rng, Shape.Numel(shape) + 3, map); // offset 3: the kernels must honour Offset
                return new View(host, Upload(host), Layout.Contiguous(shape, 3));
            }
        }
    }

    static void Close(float[] got, double[] want, string what, double tol = 1e-5)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < want.Length; i++)
        {
            if (double.IsNaN(want[i]) && float.IsNaN(got[i])) continue;
            if (double.IsInfinity(want[i]) && got[i] == want[i]) continue;
            double err = Math.Abs(got[i] - want[i]);
            if (!(err <= tol + tol * Math.Abs(want[i])))
                Assert.Fail($"{what}: element {i} is {got[i]:R}, float64 reference {want[i]:R} (|error| {err:E2})");
        }
    }

    /// <summary>
    /// erf in double: the Maclaurin series below |x| = 2 (terms stay under 25, so cancellation costs &lt; 1e-14),
    /// above it 1 - erfc with erfc from its continued fraction x + (1/2)/(x + 1/(x + (3/2)/(x + ...))).
    /// </summary>
    static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax >= 2)
        {
            double k = ax;
            for (int n = 80; n >= 1; n--) k = ax + n / 2.0 / k;
            return Math.Sign(x) * (1 - Math.Exp(-ax * ax) / (Math.Sqrt(Math.PI) * k));
        }
        double series = 0, t = x;
        for (int n = 0; n < 100 && Math.Abs(t) > 1e-18; n++)
        {
            series += t / (2 * n + 1);
            t *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * series;
    }

    static double UnaryRef(UnaryOp op, double x, double s)
    {
        const double c = 0.044715, k = 0.7978845608028654; // sqrt(2/pi)
        double Phi(double v) => 0.5 * (1 + Erf(v / Math.Sqrt(2)));
        return op switch
        {
            UnaryOp.Neg => -x, UnaryOp.Abs => Math.Abs(x), UnaryOp.Exp => Math.Exp(x), UnaryOp.Log => Math.Log(x),
            UnaryOp.Sqrt => Math.Sqrt(x), UnaryOp.Rsqrt => 1 / Math.Sqrt(x), UnaryOp.Tanh => Math.Tanh(x),
            UnaryOp.Sigmoid => 1 / (1 + Math.Exp(-x)), UnaryOp.Relu => Math.Max(x, 0), UnaryOp.Gelu => x * Phi(x),
            UnaryOp.GeluTanh => 0.5 * x * (1 + Math.Tanh(k * (x + c * x * x * x))), UnaryOp.Silu => x / (1 + Math.Exp(-x)),
            UnaryOp.Sin => Math.Sin(x), UnaryOp.Cos => Math.Cos(x), UnaryOp.Square => x * x, UnaryOp.Reciprocal => 1 / x,
            UnaryOp.Sign => Math.Sign(x), UnaryOp.AddScalar => x + s, UnaryOp.MulScalar => x * s, UnaryOp.PowScalar => Math.Pow(x, s),
            UnaryOp.RSubScalar => s - x, UnaryOp.RDivScalar => s / x, UnaryOp.ClampMin => Math.Max(x, s), UnaryOp.ClampMax => Math.Min(x, s),
            UnaryOp.GeluGrad => Phi(x) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI),
            UnaryOp.GeluTanhGrad => GeluTanhGrad(x),
            UnaryOp.Softplus => ElementwiseTests.SoftplusRef(x), UnaryOp.Mish => ElementwiseTests.MishRef(x),
            UnaryOp.LogSigmoid => ElementwiseTests.LogSigmoidRef(x),
            _ => throw new ArgumentOutOfRangeException(nameof(op)),
        };

        static double GeluTanhGrad(double x)
        {
            double t = Math.Tanh(k * (x + c * x * x * x));
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);
        }
    }

    static double BinaryRef(BinaryOp op, double a, double b) => op switch
    {
        BinaryOp.Add => a + b, BinaryOp.Sub => a - b, BinaryOp.Mul => a * b, BinaryOp.Div => a / b, BinaryOp.Pow => Math.Pow(a, b),
        BinaryOp.Maximum => Math.Max(a, b), BinaryOp.Minimum => Math.Min(a, b),
        BinaryOp.Eq => a == b ? 1 : 0, BinaryOp.Ne => a != b ? 1 : 0, BinaryOp.Lt => a < b ? 1 : 0,
        BinaryOp.Le => a <= b ? 1 : 0, BinaryOp.Gt => a > b ? 1 : 0, BinaryOp.Ge => a >= b ? 1 : 0,
        BinaryOp.GeluBackward => a * ElementwiseTests.GeluGrad(b), BinaryOp.GeluTanhBackward => a * ElementwiseTests.GeluTanhGrad(b),
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    static readonly int[][] Shapes = [[3, 5, 4], [1, 7], [2, 0, 3], [], [2, 1, 2, 1, 2, 1, 2, 3]];

    // ---- element-wise -------------------------------------------------------------------------------------

    [Test]
    public void Every_unary_op_matches_float64_on_strided_views_and_odd_shapes()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var shape in Shapes)
            foreach (var kind in new[] { Kind.Contiguous, Kind.Transposed, Kind.Strided })
                foreach (var op in Enum.GetValues<UnaryOp>())
                {
                    bool positive = ElementwiseCatalogue.Of(op).PositiveOnly;
                    double s = op switch { UnaryOp.PowScalar => 3, UnaryOp.ClampMin => -0.3, UnaryOp.ClampMax => 0.4, _ => 1.7 };
                    using var x = Make(shape, kind, rng, positive ? v => Math.Abs(v) + 0.1 : v => 2 * v);
                    long n = x.Layout.Numel;
                    var dst = B.Allocate(DType.Float32, n);
                    B.Unary(op, s, x.Storage, x.Layout, dst);
                    var want = new double[n];
                    for (long i = 0; i < n; i++) want[i] = UnaryRef(op, x[i], (float)s);
                    Close(Download(dst, n), want, $"{op} {Shape.Format(shape)} {kind} seed={seed}", 2e-5);
                    dst.Release();
                }
    }

    [Test]
    public void Every_binary_op_and_where_broadcast_like_the_reference()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var shape in Shapes)
            foreach (var (ka, kb) in new[] { (Kind.Strided, Kind.Broadcast), (Kind.Transposed, Kind.Contiguous), (Kind.Broadcast, Kind.Strided) })
            {
                // Rounded values make the comparisons see equal pairs too.
                using var a = Make(shape, ka, rng, v => Math.Round(2 * v, 1));
                using var b = Make(shape, kb, rng, v => Math.Round(2 * v, 1));
                using var bPos = Make(shape, kb, rng, v => Math.Abs(v) + 0.5);
                long n = a.Layout.Numel;
                var dst = B.Allocate(DType.Float32, n);
                // The logical ops take bool masks (the bool tests); on float tensors they must throw, as on the CPU.
                foreach (var op in Enum.GetValues<BinaryOp>().Where(o => o is not (BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor)))
                {
                    var (lhs, rhs) = op is BinaryOp.Pow ? (bPos, a) : (a, b); // positive base
                    B.Binary(op, lhs.Storage, lhs.Layout, rhs.Storage, rhs.Layout, dst);
                    var want = new double[n];
                    for (long i = 0; i < n; i++) want[i] = BinaryRef(op, lhs[i], rhs[i]);
                    Close(Download(dst, n), want, $"{op} {Shape.Format(shape)} {ka}/{kb} seed={seed}");
                }
                Assert.Throws<NotSupportedException>(() => B.Binary(BinaryOp.LogicalAnd, a.Storage, a.Layout, b.Storage, b.Layout, dst));
                B.Where(b.Storage, b.Layout, a.Storage, a.Layout, bPos.Storage, bPos.Layout, dst);
                var w = new double[n];
                for (long i = 0; i < n; i++) w[i] = b[i] != 0 ? a[i] : bPos[i];
                Close(Download(dst, n), w, $"Where {Shape.Format(shape)} seed={seed}");
                dst.Release();
            }
    }

    [Test]
    public void Nan_and_negative_bases_follow_pytorch()
    {
        using var x = Make([4], Kind.Contiguous, new Random(1));
        float[] v = [float.NaN, -2f, 0f, 3f];
        B.Upload<float>(v, x.Storage);
        var layout = Layout.Contiguous([4]);
        var dst = B.Allocate(DType.Float32, 4);
        B.Unary(UnaryOp.PowScalar, 3, x.Storage, layout, dst);
        Assert.That(Download(dst, 4), Is.EqualTo(new[] { float.NaN, -8f, 0f, 27f }));
        B.Unary(UnaryOp.Relu, 0, x.Storage, layout, dst);
        Assert.That(Download(dst, 4), Is.EqualTo(new[] { float.NaN, 0f, 0f, 3f }));
        B.Binary(BinaryOp.Maximum, x.Storage, layout, x.Storage, new Layout([4], [0], 3), dst); // max(x, 3)
        Assert.That(Download(dst, 4), Is.EqualTo(new[] { float.NaN, 3f, 3f, 3f }));
        dst.Release();
    }

    [Test]
    public void Fill_and_copy_touch_exactly_the_strided_elements()
    {
        var rng = new Random((int)FreshSeed());
        using var src = Make([3, 4, 2], Kind.Transposed, rng);
        using var dst = Make([3, 4, 2], Kind.Strided, rng);
        var before = Download(dst.Storage, dst.Host.Length);
        B.Copy(src.Storage, src.Layout, dst.Storage, dst.Layout);
        var want = before.Select(v => (double)v).ToArray();
        for (long i = 0; i < 24; i++) want[Offset(dst.Layout, i)] = src[i];
        Close(Download(dst.Storage, dst.Host.Length), want, "Copy transposed -> strided", 0);

        B.Fill(dst.Storage, dst.Layout, -1.5);
        for (long i = 0; i < 24; i++) want[Offset(dst.Layout, i)] = -1.5;
        Close(Download(dst.Storage, dst.Host.Length), want, "Fill strided", 0);

        // int64: fill, copy through a transposed view, and both conversions.
        var ints = B.Allocate(DType.Int64, 6);
        B.Upload<long>([1, 2, 3, 4, 5, 6], ints);
        var intsT = B.Allocate(DType.Int64, 6);
        B.Copy(ints, new Layout([3, 2], [1, 3], 0), intsT, Layout.Contiguous([3, 2]));
        var got = new long[6];
        B.Download<long>(intsT, 0, got);
        Assert.That(got, Is.EqualTo(new long[] { 1, 4, 2, 5, 3, 6 }));
        B.Fill(intsT, new Layout([3], [2], 1), 7);
        B.Download<long>(intsT, 0, got);
        Assert.That(got, Is.EqualTo(new long[] { 1, 7, 2, 7, 3, 7 }));
        var f = B.Allocate(DType.Float32, 6);
        B.Copy(intsT, Layout.Contiguous([6]), f, Layout.Contiguous([6]));
        Assert.That(Download(f, 6), Is.EqualTo(new float[] { 1, 7, 2, 7, 3, 7 }));
        B.Upload<float>([-2.7f, 2.7f], f);
        B.Copy(f, Layout.Contiguous([2]), ints, Layout.Contiguous([2]));
        B.Download<long>(ints, 0, got.AsSpan(0, 2));
        Assert.That(got[..2], Is.EqualTo(new long[] { -2, 2 }));
        ints.Release(); intsT.Release(); f.Release();
    }

    // ---- reductions ---------------------------------------------------------------------------------------

    [Test]
    public void Sum_max_min_over_trailing_dims_match_float64_on_both_kernels()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        // [3,70] and [2,5,20] with keptRank 1 reduce >= 64 elements per output: the group-per-output kernel.
        foreach (var (shape, kind) in new[] { (new[] { 4, 3, 5 }, Kind.Transposed), (new[] { 3, 70 }, Kind.Strided), (new[] { 2, 5, 20 }, Kind.Transposed),
                     (new[] { 2, 1, 3, 1, 2, 1, 2, 2 }, Kind.Contiguous), (new[] { 6, 4 }, Kind.Broadcast) })
            for (int kept = 0; kept <= shape.Length; kept++)
                foreach (var op in Enum.GetValues<ReduceOp>())
                {
                    using var x = Make(shape, kind, rng);
                    long outCount = Shape.Numel(shape.AsSpan(0, kept)), count = Shape.Numel(shape.AsSpan(kept));
                    var dst = B.Allocate(DType.Float32, outCount);
                    B.Reduce(op, x.Storage, x.Layout, kept, dst);
                    var want = new double[outCount];
                    for (long o = 0; o < outCount; o++)
                    {
                        double acc = op == ReduceOp.Sum ? 0 : x[o * count];
                        for (long j = 0; j < count; j++)
                            acc = op switch { ReduceOp.Sum => acc + x[o * count + j], ReduceOp.Max => Math.Max(acc, x[o * count + j]), _ => Math.Min(acc, x[o * count + j]) };
                        want[o] = acc;
                    }
                    Close(Download(dst, outCount), want, $"{op} {Shape.Format(shape)} {kind} kept={kept} seed={seed}", op == ReduceOp.Sum ? 1e-5 : 0);
                    dst.Release();
                }
    }

    [Test]
    public void Reductions_handle_empty_blocks_and_nan()
    {
        using var empty = Make([3, 0], Kind.Contiguous, new Random(2));
        var dst = B.Allocate(DType.Float32, 3);
        B.Upload<float>([5, 5, 5], dst);
        B.Reduce(ReduceOp.Sum, empty.Storage, empty.Layout, 1, dst);
        Assert.That(Download(dst, 3), Is.EqualTo(new float[] { 0, 0, 0 }));
        Assert.Throws<ArgumentException>(() => B.Reduce(ReduceOp.Max, empty.Storage, empty.Layout, 1, dst));

        using var x = Make([2, 80], Kind.Contiguous, new Random(3));
        var host = x.Host.ToArray();
        host[3 + 5] = float.NaN; host[3 + 80 + 79] = float.NaN;
        B.Upload<float>(host, x.Storage);
        foreach (var op in Enum.GetValues<ReduceOp>())
        {
            B.Reduce(op, x.Storage, x.Layout, 1, dst);
            Assert.That(Download(dst, 2), Is.All.NaN, op.ToString());
        }
        dst.Release();
    }

    [Test]
    public void Argmax_and_argmin_pick_the_first_extremum_along_the_last_dim()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var (shape, kind) in new[] { (new[] { 4, 7 }, Kind.Strided), (new[] { 2, 3, 5 }, Kind.Transposed), (new[] { 5 }, Kind.Contiguous), (new[] { 3, 1 }, Kind.Contiguous) })
            foreach (var op in new[] { ReduceOp.Max, ReduceOp.Min })
            {
                using var x = Make(shape, kind, rng, v => Math.Round(v)); // small integers: ties are common
                int len = shape[^1];
                long rows = x.Layout.Numel / len;
                var dst = B.Allocate(DType.Int64, rows);
                B.ArgReduce(op, x.Storage, x.Layout, dst);
                var got = new long[rows];
                B.Download<long>(dst, 0, got);
                for (long r = 0; r < rows; r++)
                {
                    long best = 0;
                    for (int j = 1; j < len; j++)
                        if (op == ReduceOp.Max ? x[r * len + j] > x[r * len + best] : x[r * len + j] < x[r * len + best]) best = j;
                    Assert.That(got[r], Is.EqualTo(best), $"Arg{op} {Shape.Format(shape)} {kind} row {r} seed={seed}");
                }
                dst.Release();
            }
    }

    // ---- matrix product and softmax -----------------------------------------------------------------------

    static IEnumerable<(int Batch, int M, int N, int K, bool TA, bool TB, bool BroadcastB)> GemmCases() =>
    [
        (1, 5, 7, 9, false, false, false), (3, 4, 4, 4, true, false, false), (2, 6, 5, 3, false, true, true),
        (2, 9, 1, 7, true, true, false), (1, 1, 1, 1, false, false, false), (2, 3, 5, 0, false, false, false), (1, 17, 13, 11, false, true, false),
    ];

    [Test]
    public void Tiled_matmul_honours_offsets_ld_transposes_and_batch_broadcast()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var (batch, m, n, k, ta, tb, bcast) in GemmCases())
        {
            // Stored rows are padded by 2 (ld > cols) and each operand starts at a small offset.
            int ldA = (ta ? m : k) + 2, ldB = (tb ? k : n) + 2;
            long sizeA = (long)(ta ? k : m) * ldA, sizeB = (long)(tb ? n : k) * ldB;
            var aOp = new MatrixOperand(1, sizeA, ldA, ta);
            var bOp = new MatrixOperand(2, bcast ? 0 : sizeB, ldB, tb);
            var ha = Values(rng, 1 + batch * sizeA);
            var hb = Values(rng, 2 + (bcast ? 1 : batch) * sizeB);
            var (sa, sb) = (Upload(ha), Upload(hb));
            var c = B.Allocate(DType.Float32, (long)batch * m * n);
            B.MatMul(sa, aOp, sb, bOp, c, batch, m, n, k);
            var want = new double[batch * m * n];
            for (int z = 0; z < batch; z++)
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double acc = 0;
                        for (int p = 0; p < k; p++)
                        {
                            double av = ha[aOp.Offset + z * aOp.BatchStride + (ta ? (long)p * ldA + i : (long)i * ldA + p)];
                            double bv = hb[bOp.Offset + z * bOp.BatchStride + (tb ? (long)j * ldB + p : (long)p * ldB + j)];
                            acc += av * bv;
                        }
                        want[(z * m + i) * n + j] = acc;
                    }
            Close(Download(c, want.Length), want, $"MatMul b={batch} m={m} n={n} k={k} ta={ta} tb={tb} bcast={bcast} seed={seed}");
            sa.Release(); sb.Release(); c.Release();
        }
    }

    [Test]
    public void Matmul_rejects_operands_that_reach_past_their_storage()
    {
        var a = B.Allocate(DType.Float32, 6);
        var c = B.Allocate(DType.Float32, 4);
        var ex = Assert.Throws<ArgumentException>(() => B.MatMul(a, new MatrixOperand(0, 0, 3, false), a, new MatrixOperand(1, 0, 2, false), c, 1, 2, 2, 3));
        Assert.That(ex!.Message, Does.Contain("MatMul").And.Contain("b (3x2"));
        a.Release(); c.Release();
    }

    [Test]
    public void Softmax_and_log_softmax_match_float64_around_the_group_size()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (int cols in new[] { 1, 15, 16, 17, 70 })
            foreach (bool log in new[] { false, true })
            {
                int rows = 3;
                var host = Values(rng, rows * cols, v => 3 * v);
                host[0] += 1000; // stability: a huge logit must not overflow exp
                if (cols > 1) host[cols + 1] = float.NegativeInfinity;
                var (src, dst) = (Upload(host), B.Allocate(DType.Float32, rows * cols));
                B.Softmax(src, dst, rows, cols, log);
                var want = new NdArray([rows, cols], Array.ConvertAll(host, v => (double)v)).Rows(log ? NdArray.LogSoftmax : NdArray.Softmax).Data;
                Close(Download(dst, rows * cols), want, $"{(log ? "LogSoftmax" : "Softmax")} cols={cols} seed={seed}", 2e-6);
                src.Release(); dst.Release();
            }
    }

    // ---- memory, errors, portability ----------------------------------------------------------------------

    [Test]
    public void Freed_buffers_are_reused_per_size_class_and_trim_returns_them()
    {
        B.Memory.Trim(); // start from an empty cache, whatever earlier tests left in it
        B.Allocate(DType.Float32, 1000).Release(); // 4000 bytes: the 4 KiB class
        long misses = B.DriverAllocations;
        for (int i = 0; i < 10; i++)
        {
            var f = B.Allocate(DType.Float32, 900 + i);
            var l = B.Allocate(DType.Int64, 500); // 4000 bytes: the same class, another buffer
            f.Release(); l.Release();
        }
        Assert.That(B.DriverAllocations, Is.EqualTo(misses + 1));
        Assert.That(B.Memory.CachedBytes, Is.GreaterThanOrEqualTo(8192));
        B.Memory.Trim();
        Assert.That(B.Memory.CachedBytes, Is.Zero);
        // Four classes per power of two: nothing is rounded up by more than a quarter (256 bytes at least).
        Assert.That(new[] { 1L, 256, 257, 4000, 4097, 5121, 6000, 7169, 1L << 30 }.Select(IlgpuMemoryPool.RoundedSize),
            Is.EqualTo(new[] { 256L, 256, 320, 4096, 5120, 6144, 6144, 8192, 1L << 30 }));
        for (long bytes = 200; bytes < 1 << 20; bytes = bytes * 5 / 4 + 7)
            Assert.That(IlgpuMemoryPool.RoundedSize(bytes), Is.InRange(bytes, Math.Max(256, bytes + bytes / 4)), $"{bytes} bytes");
    }

    [Test]
    public void The_storage_limit_is_the_backends_and_a_larger_tensor_names_it_and_the_device()
    {
        // A device buffer launches one thread per element (int.MaxValue); a CPU storage is one .NET array.
        Assert.That(B.MaxElements(DType.Float32), Is.EqualTo(int.MaxValue));
        Assert.That(B.MaxElements(DType.Int64), Is.EqualTo(int.MaxValue));
        Assert.That(Device.Cpu.Backend.MaxElements(DType.Float32), Is.EqualTo(Array.MaxLength));
        foreach (var dtype in new[] { DType.Float32, DType.Int64, DType.Bool })
        {
            Assert.That(AttnCore.Shape.MaxElements(dtype, TestDevice), Is.EqualTo(B.MaxElements(dtype)));
            Assert.That(AttnCore.Shape.MaxElements(dtype, Device.Cpu), Is.EqualTo(Device.Cpu.Backend.MaxElements(dtype)));
        }
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([65536, 32768], device: TestDevice));
        Assert.That(e!.Message, Is.EqualTo($"Zeros: shape [65536,32768] has 2147483648 elements; one float32 storage on {TestDevice} holds at most 2147483647"));
    }

    [Test]
    public void Unsupported_dtypes_and_ops_name_the_op_the_dtype_and_the_device()
    {
        var ns = Assert.Throws<NotSupportedException>(() => B.Allocate(DType.Float64, 4));
        Assert.That(ns!.Message, Does.Contain("float64").And.Contain(TestDevice.ToString()));
        var ints = B.Allocate(DType.Int64, 4);
        var f = B.Allocate(DType.Float32, 4);
        ns = Assert.Throws<NotSupportedException>(() => B.Unary(UnaryOp.Exp, 0, ints, Layout.Contiguous([4]), f));
        Assert.That(ns!.Message, Does.Contain("Exp").And.Contain("int64").And.Contain(TestDevice.ToString()));
        ns = Assert.Throws<NotSupportedException>(() => B.Conv2dForward(ints, f, null, f, new AttnCore.Kernels.Conv2dShape(1, 1, 2, 2, 1, 1, 1)));
        Assert.That(ns!.Message, Is.EqualTo($"IlgpuBackend: Conv2d does not support int64 tensors on {TestDevice} (devices hold float32, and int64 for index and integer ops)"));
        Assert.Throws<ArgumentException>(() => B.Unary(UnaryOp.Neg, 0, f, Layout.Contiguous([5]), f));
        ints.Release(); f.Release();
    }

    [Test]
    public void Every_unary_code_has_its_own_case_on_the_device_and_an_unknown_code_gives_nan()
    {
        // The kernels switch on the shared UnaryOp itself, so names cannot drift; what could still go wrong is a
        // code without a case. Each named code must give the CPU backend's result for the same input (no case
        // falling through to another op's function), and a code outside the enum must give NaN, not a number.
        var rng = new Random(7);
        float[] host = Values(rng, 8, v => Math.Abs(v) + 0.25);
        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            var src = Upload(host);
            var dst = B.Allocate(DType.Float32, host.Length);
            B.Unary(op, 1.5, src, Layout.Contiguous([host.Length]), dst);
            using var x = Tensor.FromArray(host);
            using var want = x.EmptyLike();
            Device.Cpu.Backend.Unary(op, 1.5, x.Storage, x.Layout, want.Storage);
            Close(Download(dst, host.Length), want.ToArray<float>().Select(v => (double)v).ToArray(), $"{op} on the device against the CPU backend", 2e-5);
            src.Release(); dst.Release();
        }
        int unknown = Enum.GetValues<UnaryOp>().Length;
        Assert.That(Elementwise.ApplyUnary(unknown, 0.5f, 1f), Is.NaN, "a unary code without a case");
        Assert.That(Elementwise.ApplyBinary(Enum.GetValues<BinaryOp>().Length, 0.5f, 1f), Is.NaN, "a binary code without a case");
        Assert.That(new[] { ReduceKernels.Sum, ReduceKernels.Max, ReduceKernels.Min }, Is.EqualTo(new[] { (int)ReduceOp.Sum, (int)ReduceOp.Max, (int)ReduceOp.Min }));
    }

    /// <summary>
    /// Every kernel (every public static *Kernel method of AttnCore.Kernels.Gpu, generic ones built with their
    /// [GpuTypeArguments]), in its GPU launch sizes (16x16 GEMM tiles, 256-thread groups), compiles to PTX for sm_70, sm_80 and sm_90
    /// with no GPU present: the check that the CUDA backend can load them (a math call without an intrinsic,
    /// a managed array or an exception in a kernel would fail here).
    /// </summary>
    [TestCase(70), TestCase(80), TestCase(90)]
    public void Every_kernel_compiles_to_ptx_at_gpu_launch_sizes(int sm)
    {
        var arch = sm switch { 70 => CudaArchitecture.SM_70, 80 => CudaArchitecture.SM_80, _ => CudaArchitecture.SM_90 };
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_80, null);
        var kernels = GpuKernelMethods.All();
        Assert.That(kernels.Select(k => k.Method.Name), Does.Contain("TiledKernel").And.Contain("AdamKernel"), "the kernel list is found by reflection");
        foreach (var (method, grouped) in kernels)
        {
            var entry = grouped ? EntryPointDescription.FromExplicitlyGroupedKernel(method) : EntryPointDescription.FromImplicitlyGroupedKernel(method);
            var compiled = (PTXCompiledKernel)ptx.Compile(entry, new KernelSpecialization());
            Assert.That(compiled.PTXAssembly, Does.Contain(".entry"), method.Name);
        }
    }
}

/// <summary>The same kernels reached through Tensor: transfers, printing, and ops against the SIMD CPU backend.</summary>
public class IlgpuTensorTests(string deviceName) : DeviceFixture<IlgpuTensorTests>(deviceName)
{
    static Device Gpu => TestDevice;

    static void SameOnBoth(Func<Tensor[], Tensor> op, Tensor[] cpuInputs, double tol, string what)
    {
        using var cpu = op(cpuInputs);
        var moved = cpuInputs.Select(t => t.To(Gpu)).ToArray();
        try
        {
            using var gpu = op(moved);
            Assert.That(gpu.Device, Is.EqualTo(Gpu), what);
            Close(gpu, NdArray.From(cpu), tol, tol, what);
        }
        finally { foreach (var t in moved) t.Dispose(); }
    }

    [Test]
    public void Tensor_ops_on_the_device_match_the_cpu_backend()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        using var x = Make([3, 5, 4], Layouts.Transposed, g);
        using var y = Make([5, 1], Layouts.Contiguous, g);
        (string, Func<Tensor[], Tensor>)[] ops =
        [
            ("Gelu", t => t[0].Gelu()), ("Scalars", t => (2.0 - t[0] * 3.0 + 1) / 4.0), ("Add", t => t[0] + t[1]),
            ("Where", t => Tensor.Where(t[0].Gt(0), t[0], t[1])), ("MaskedFill", t => t[0].MaskedFill(t[1].Gt(0), -1)),
            ("Sum", t => t[0].Sum()), ("SumDims", t => t[0].Sum([0, 2], keepDim: true)), ("Max", t => t[0].Max(1)), ("Mean", t => t[0].Mean(-1)),
            ("Softmax", t => t[0].Softmax()), ("MatMul", t => t[0].MatMul(t[0].Transpose(-1, -2))),
        ];
        foreach (var (name, f) in ops) SameOnBoth(f, [x, y], 1e-5, $"{name} seed={seed}");
        using var cpuArg = x.ArgMax(1);
        using var gx = x.To(Gpu);
        using var gpuArg = gx.ArgMax(1);
        Assert.That(gpuArg.ToArray<long>(), Is.EqualTo(cpuArg.ToArray<long>()));
    }

    [Test]
    public void Index_ops_and_their_scatter_add_adjoints_match_the_cpu_backend()
    {
        ulong seed = FreshSeed();
        var g = new Generator(seed);
        using var w = Make([9, 5], Layouts.Contiguous, g);
        using var x = Make([3, 4, 6], Layouts.Transposed, g);
        using var ids = Tensor.FromArray(new long[] { 3, 0, 8, 3, 3, 1 }, [2, 3]);
        using var flat = Tensor.FromArray(new long[] { 2, 2, 0, 5, 1 });
        using var gidx = Tensor.RandInt(0, 4, [3, 2, 6], seed);
        using var src = Make([3, 2, 6], Layouts.Contiguous, g);
        using var rows = Make([3, 4, 5], Layouts.Strided, g);
        SameOnBoth(t => Tensor.Embedding(t[0], t[1]), [ids, w], 0, $"Embedding seed={seed}");
        SameOnBoth(t => t[0].IndexSelect(2, t[1]), [x, flat], 0, $"IndexSelect seed={seed}");
        SameOnBoth(t => t[0].Gather(1, t[1]), [x, gidx], 0, $"Gather seed={seed}");
        // Repeated indices must accumulate (atomic adds on the device).
        SameOnBoth(t => t[0].ZerosLike().IndexAdd(2, t[1], t[2]), [x, flat, rows], 1e-5, $"IndexAdd seed={seed}");
        SameOnBoth(t => t[0].ZerosLike().ScatterAdd(1, t[1], t[2]), [x, gidx, src], 1e-5, $"ScatterAdd seed={seed}");
    }

    [Test]
    public void Index_add_with_many_indices_sorts_them_and_matches_the_cpu_and_the_scan()
    {
        ulong seed = FreshSeed();
        var rng = new Random((int)(seed % int.MaxValue));
        var g = new Generator(seed);
        // 1,000 indices into 37 rows (far above the sorted path's threshold, many repeats; 1,000 is not a power of
        // two, so the sort pads), with outer = 3 and inner = 4 around the indexed dim.
        using var idx = Tensor.FromArray(Enumerable.Range(0, 1000).Select(_ => (long)rng.Next(37)).ToArray());
        using var x = Make([3, 37, 4], Layouts.Contiguous, g);
        using var src = Make([3, 1000, 4], Layouts.Contiguous, g);
        SameOnBoth(t => t[0].IndexAdd(1, t[1], t[2]), [x, idx, src], 1e-4, $"IndexAdd sorted seed={seed}");
        // The embedding's backward takes the same path.
        using var w = Make([37, 6], Layouts.Contiguous, g);
        SameOnBoth(t =>
        {
            using var wg = t[0].Detach().RequiresGrad_();
            using (var y = Tensor.Embedding(t[1], wg)) using (var s = (y * y).Sum()) s.Backward();
            return wg.Grad!.Clone();
        }, [w, idx], 1e-4, $"Embedding backward seed={seed}");
        // Sorted and scanning paths add in the same order: the same bits.
        var backend = (IlgpuBackend)Gpu.Backend;
        using var dx = x.To(Gpu); using var didx = idx.To(Gpu); using var dsrc = src.To(Gpu);
        using var sorted = dx.IndexAdd(1, didx, dsrc);
        int saved = backend.SortedIndexAddThreshold;
        backend.SortedIndexAddThreshold = int.MaxValue;
        try
        {
            using var scanned = dx.IndexAdd(1, didx, dsrc);
            Assert.That(sorted.ToArray<float>(), Is.EqualTo(scanned.ToArray<float>()));
        }
        finally { backend.SortedIndexAddThreshold = saved; }
    }

    [Test]
    public void Gpt_training_steps_on_the_device_give_the_cpu_losses()
    {
        // Same initial weights (drawn on the host from one seed), same batch, three AdamW steps on each device.
        // Tolerance 2e-4: float32 sums in a different order across ~30 ops per layer, over three steps.
        double[] Train(Device device)
        {
            using var model = new AttnCore.Models.Transformers.Gpt(new AttnCore.Models.Transformers.GptConfig(11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 16), new Generator(3), device);
            using var opt = new AttnCore.Optim.AdamW(model.Parameters(), 1e-2);
            using var x = Tensor.FromArray(new long[] { 1, 4, 2, 9, 0, 3, 3, 7, 5, 5, 6, 10, 2, 8, 1, 0 }, [2, 8], device);
            using var y = Tensor.FromArray(new long[] { 4, 2, 9, 0, 3, 3, 7, 1, 5, 6, 10, 2, 8, 1, 0, 4 }, [2, 8], device);
            var losses = new double[3];
            for (int i = 0; i < 3; i++)
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                var loss = model.Loss(x, y);
                loss.Backward();
                AttnCore.Optim.GradClip.ClipGradNorm(model.Parameters(), 1.0);
                opt.Step();
                losses[i] = loss.Item();
            }
            return losses;
        }
        var cpu = Train(Device.Cpu);
        var gpu = Train(Gpu);
        Assert.That(gpu, Is.EqualTo(cpu).Within(2e-4), $"losses on {Gpu}: [{string.Join(", ", gpu)}], on cpu: [{string.Join(", ", cpu)}]");
        Assert.That(cpu[2], Is.LessThan(cpu[0]), "and it learns");
    }

    [Test]
    public void Tensors_round_trip_and_print_from_the_device()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2.5f, -3 }, null, Gpu);
        Assert.That(x.ToArray<float>(), Is.EqualTo(new float[] { 1, 2.5f, -3 }));
        Assert.That(x.ToString(), Is.EqualTo($"tensor([ 1.0000,  2.5000, -3.0000], device='{Gpu}')"));
        using var i = Tensor.FromArray(new long[] { 4, 5 }, null, Gpu);
        Assert.That(i.ToArray<long>(), Is.EqualTo(new long[] { 4, 5 }));
        using var back = x.To(Device.Cpu);
        Assert.That(back.Device, Is.EqualTo(Device.Cpu));
    }

    [Test]
    public void Mixing_devices_or_unsupported_ops_give_clear_errors()
    {
        using var c = Tensor.Zeros([2, 3]);
        using var d = Tensor.Zeros([2, 3], DType.Float32, Gpu);
        var ex = Assert.Throws<ArgumentException>(() => _ = c + d);
        Assert.That(ex!.Message, Is.EqualTo($"Add: tensors are on different devices: cpu [2,3] and {Gpu} [2,3]; move one with To(device)"));
        using var img = Tensor.Zeros([1, 1, 2, 3], DType.Float32, Gpu);
        var ns = Assert.Throws<NotSupportedException>(() => img.To(DType.Float64));
        Assert.That(ns!.Message, Does.Contain("float64").And.Contain(Gpu.ToString()));
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros([2], DType.Float64, Gpu));
    }

    [Test]
    public void A_steady_loop_of_tensor_ops_asks_the_driver_for_nothing()
    {
        var backend = (IlgpuBackend)Gpu.Backend;
        using (var warm = Tensor.Ones([100], DType.Float32, Gpu)) { using var w2 = warm * 2.0; }
        long before = backend.DriverAllocations;
        for (int i = 0; i < 20; i++) { using var t = Tensor.Ones([100], DType.Float32, Gpu); using var u = t * 2.0; }
        Assert.That(backend.DriverAllocations, Is.EqualTo(before));
    }
}

/// <summary>The ILGPU devices the Gpu tests run on; OpenCL ones skip with the reason when the machine has none.</summary>
/// <summary>Every kernel of AttnCore.Kernels.Gpu, found by reflection: explicitly grouped ones take no index argument.</summary>
internal static class GpuKernelMethods
{
    public static List<(System.Reflection.MethodInfo Method, bool Grouped)> All()
    {
        var found = new List<(System.Reflection.MethodInfo, bool)>();
        foreach (var type in typeof(Elementwise).Assembly.GetTypes().Where(t => t.Namespace == "AttnCore.Kernels.Gpu" && t.IsClass))
            foreach (var m in type.GetMethods(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static).Where(m => m.Name.EndsWith("Kernel")))
            {
                var method = m;
                if (m.IsGenericMethodDefinition)
                {
                    var args = m.GetCustomAttributes(typeof(GpuTypeArgumentsAttribute), false).Cast<GpuTypeArgumentsAttribute>().SingleOrDefault()
                        ?? throw new InvalidOperationException($"{type.Name}.{m.Name} is generic but has no [GpuTypeArguments]");
                    method = m.MakeGenericMethod(args.Types);
                }
                var first = method.GetParameters().FirstOrDefault()?.ParameterType;
                bool grouped = first is null || !(first == typeof(Index1D) || first == typeof(Index2D) || first == typeof(Index3D));
                found.Add((method, grouped));
            }
        return found;
    }
}

/// <summary>The OpenCL-only fix of ILGPU's barriers (CUDA's bar.sync orders all memory; nothing to fix there).</summary>
[TestFixture, Category("Gpu"), NonParallelizable]
public class OpenCLBarrierTests
{
    /// <summary>
    /// ILGPU writes Group.Barrier as a global-only fence in OpenCL C, which does not order shared (local) memory;
    /// the backend widens it before building. Checked on a shared-memory kernel: ILGPU's own output still lacks the
    /// local fence (if a later ILGPU fixes that, this test says the patch can go), the loaded source has it.
    /// </summary>
    [Test]
    public void OpenCL_barriers_fence_local_memory()
    {
        var method = typeof(ReduceKernels).GetMethod("GroupReduceKernel")!.MakeGenericMethod(typeof(Size256));
        var (generated, loaded) = ((IlgpuBackend)GpuDevices.Require("opencl").Backend).OpenCLSource(method);
        Assert.That(generated, Does.Contain("work_group_barrier").And.Not.Contain("CLK_LOCAL_MEM_FENCE"), "ILGPU's barrier is global-only");
        Assert.That(loaded, Does.Not.Match(@"work_group_barrier\s*\(\s*CLK_GLOBAL_MEM_FENCE\s*\)"));
        Assert.That(System.Text.RegularExpressions.Regex.Matches(loaded, "CLK_LOCAL_MEM_FENCE \\| CLK_GLOBAL_MEM_FENCE").Count,
            Is.EqualTo(System.Text.RegularExpressions.Regex.Matches(generated, "work_group_barrier").Count));
        Assert.That(IlgpuBackend.FenceLocalMemory("work_group_barrier ( CLK_GLOBAL_MEM_FENCE ,  memory_scope_work_group );"),
            Is.EqualTo("work_group_barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE,  memory_scope_work_group );"));
    }
}

[TestFixture, Category("Gpu")]
public class DeviceSelectionTests
{
    [Test]
    public void Device_names_parse_and_missing_devices_say_how_many_were_found()
    {
        Assert.That(Device.Parse("cpu"), Is.EqualTo(Device.Cpu));
        Assert.That(Device.Parse("ILGPU-CPU"), Is.EqualTo(Device.IlgpuCpu));
        // CUDA first, then an OpenCL GPU, then the SIMD CPU (PoCL is an OpenCL CPU device: never chosen).
        using (var context = Context.Create(b => b.OpenCL(_ => true)))
        {
            var cl = context.GetCLDevices();
            int gpu = -1;
            for (int i = cl.Count - 1; i >= 0; i--)
                if (cl[i].DeviceType.HasFlag(CLDeviceType.CL_DEVICE_TYPE_GPU)) gpu = i;
            var expected = Device.CudaCount > 0 ? Device.Cuda(0) : gpu >= 0 ? Device.OpenCL(gpu) : Device.Cpu;
            Assert.That(Device.Best(), Is.EqualTo(expected));
        }
        Assert.That(Device.Parse("best"), Is.EqualTo(Device.Best()));
        var ex = Assert.Throws<ArgumentException>(() => Device.Parse($"cuda:{Device.CudaCount}"));
        Assert.That(ex!.Message, Does.Contain("CUDA").And.Contain($"{Device.CudaCount} found"));
        ex = Assert.Throws<ArgumentException>(() => Device.Parse($"opencl:{Device.OpenCLCount}"));
        Assert.That(ex!.Message, Does.Contain("OpenCL").And.Contain($"{Device.OpenCLCount} found"));
        Assert.Throws<ArgumentException>(() => Device.Parse("opencl:x"));
        Assert.Throws<ArgumentException>(() => Device.Parse("tpu"));
        if (Device.OpenCLCount > 0) Assert.That(Device.Parse("opencl").ToString(), Is.EqualTo("opencl:0"));
    }
}
