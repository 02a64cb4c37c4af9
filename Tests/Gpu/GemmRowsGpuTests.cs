using AttnCore.Backends;
using AttnCore.Kernels.Gpu;
using AttnCore.Tests.Reference;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;
using GemmKernels = AttnCore.Kernels.Gpu.Gemm;
using SoftmaxKernels = AttnCore.Kernels.Gpu.Softmax;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The register-tiled SGEMM and the two builds (warp per row, group per row) of the row kernels, through
/// <see cref="IBackend"/> on raw storages: GEMM against a float64 reference at sizes that straddle the 32 (CPU
/// accelerator) and 128 (GPU launch sizes, as PoCL runs them) blocks; softmax against float64; layer norm against
/// the SIMD CPU backend (cross-entropy: CrossEntropyGpuTests). Sizes stay small: every emulated thread is an OS thread.
/// </summary>
public class GemmRowsGpuTests(string deviceName) : DeviceFixture<GemmRowsGpuTests>(deviceName)
{
    static IlgpuBackend B => (IlgpuBackend)TestDevice.Backend;
    static IBackend Cpu => Device.Cpu.Backend;

    // Later fixtures count the pool's driver allocations from a known state: leave no cached buffers behind.
    [OneTimeTearDown]
    public void ReturnCachedBuffers() => B.Memory.Trim();

    [TearDown]
    public void RestoreModes()
    {
        B.GemmKernel = GemmKernelMode.Auto;
        B.RowTeam = RowTeamMode.Auto;
    }

    static Storage Upload(IBackend backend, float[] data) => DeviceStorage.Upload(backend, data);
    static float[] Download(IBackend backend, Storage s, long n) => DeviceStorage.Download(backend, s, n);

    static float[] Values(Random rng, long n, double scale = 1) =>
        Enumerable.Range(0, (int)n).Select(_ => (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();

    static void Close(float[] got, double[] want, string what, double tol)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < want.Length; i++)
        {
            if (double.IsNaN(want[i]) && float.IsNaN(got[i])) continue;
            if (double.IsInfinity(want[i]) && got[i] == want[i]) continue;
            double err = Math.Abs(got[i] - want[i]);
            if (!(err <= tol + tol * Math.Abs(want[i])))
                Assert.Fail($"{what}: element {i} is {got[i]:R}, reference {want[i]:R} (|error| {err:E2})");
        }
    }

    static void Close(float[] got, float[] want, string what, double tol) => Close(got, want.Select(v => (double)v).ToArray(), what, tol);

    static IEnumerable<RowTeamMode> Teams() => B.HasWarpShuffles ? [RowTeamMode.Warp, RowTeamMode.Group] : [RowTeamMode.Group];

    // ---- GEMM -----------------------------------------------------------------------------------------------

    // C = A @ B for one case, checked against float64; C carries guard elements after the product that must stay untouched.
    static void CheckGemm(Random rng, int batch, int m, int n, int k, bool ta, bool tb, bool bcastA, bool bcastB, string what)
    {
        int ldA = (ta ? m : k) + 3, ldB = (tb ? k : n) + 1; // padded rows: ld > stored columns
        long sizeA = (long)(ta ? k : m) * ldA, sizeB = (long)(tb ? n : k) * ldB;
        var aOp = new MatrixOperand(5, bcastA ? 0 : sizeA, ldA, ta);
        var bOp = new MatrixOperand(2, bcastB ? 0 : sizeB, ldB, tb);
        var ha = Values(rng, 5 + (bcastA ? 1 : batch) * sizeA);
        var hb = Values(rng, 2 + (bcastB ? 1 : batch) * sizeB);
        const int guard = 7;
        long cn = (long)batch * m * n;
        var (sa, sb, sc) = (Upload(B, ha), Upload(B, hb), Upload(B, Enumerable.Repeat(-123f, (int)cn + guard).ToArray()));
        try
        {
            B.MatMul(sa, aOp, sb, bOp, sc, batch, m, n, k);
            var want = new double[cn + guard];
            for (int z = 0; z < batch; z++)
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double acc = 0;
                        for (int p = 0; p < k; p++)
                            acc += (double)ha[aOp.Offset + z * aOp.BatchStride + (ta ? (long)p * ldA + i : (long)i * ldA + p)]
                                 * hb[bOp.Offset + z * bOp.BatchStride + (tb ? (long)j * ldB + p : (long)p * ldB + j)];
                        want[((long)z * m + i) * n + j] = acc;
                    }
            for (int g = 0; g < guard; g++) want[cn + g] = -123;
            // float32 sums of k products of unit normals: error grows like sqrt(k) ulps of the terms.
            Close(Download(B, sc, cn + guard), want, what, 2e-6 * Math.Sqrt(Math.Max(k, 1)) + 1e-6);
        }
        finally { sa.Release(); sb.Release(); sc.Release(); }
    }

    [Test]
    public void Register_tiled_matmul_matches_float64_at_awkward_sizes_and_every_transpose()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        B.GemmKernel = GemmKernelMode.RegisterTiled;
        (int M, int N, int K)[] sizes = [(1, 1, 1), (7, 33, 1), (33, 65, 7), (65, 7, 33), (37, 41, 43), (1, 65, 37), (130, 3, 17), (3, 131, 9)];
        foreach (var (m, n, k) in sizes)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    CheckGemm(rng, 1, m, n, k, ta, tb, false, false, $"RegisterTiled m={m} n={n} k={k} ta={ta} tb={tb} seed={seed}");
    }

    [Test]
    public void Register_tiled_matmul_handles_batches_broadcasts_and_empty_k()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        B.GemmKernel = GemmKernelMode.RegisterTiled;
        CheckGemm(rng, 3, 33, 17, 9, false, true, bcastA: true, bcastB: false, $"batch 3, A broadcast seed={seed}");
        CheckGemm(rng, 2, 40, 35, 66, true, false, bcastA: false, bcastB: true, $"batch 2, B broadcast seed={seed}");
        CheckGemm(rng, 4, 5, 6, 7, true, true, bcastA: false, bcastB: false, $"batch 4 seed={seed}");
        CheckGemm(rng, 2, 9, 10, 0, false, false, bcastA: false, bcastB: false, $"k = 0 writes zeros seed={seed}");
    }

    [Test]
    public void Tiled_and_register_tiled_kernels_agree_and_auto_picks_one()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var mode in new[] { GemmKernelMode.Tiled, GemmKernelMode.Auto })
        {
            B.GemmKernel = mode;
            CheckGemm(rng, 2, 29, 34, 19, false, false, false, true, $"{mode} seed={seed}");
            CheckGemm(rng, 1, 70, 3, 5, true, true, false, false, $"{mode} seed={seed}");
        }
    }

    // ---- softmax --------------------------------------------------------------------------------------------

    [Test]
    public void Softmax_matches_float64_with_a_warp_and_with_a_group_per_row()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var team in Teams())
        {
            B.RowTeam = team;
            // Rows shorter than a warp, around the warp and group widths, and long rows; 5 rows leave the warp build's last group partly idle.
            foreach (int cols in new[] { 1, 3, 4, 5, 31, 32, 33, 100, 1500 })
                foreach (bool log in new[] { false, true })
                {
                    int rows = 5;
                    var host = Values(rng, rows * cols, 3);
                    host[0] += 1000; // a huge logit must not overflow exp
                    if (cols > 2) { host[cols + 1] = float.NegativeInfinity; host[2 * cols + cols - 1] = float.NegativeInfinity; }
                    if (cols > 1) for (int j = 0; j < cols; j++) host[3 * cols + j] = float.NegativeInfinity; // a row of -inf is NaN, as in PyTorch
                    var (src, dst) = (Upload(B, host), B.Allocate(DType.Float32, rows * cols));
                    B.Softmax(src, dst, rows, cols, log);
                    var want = new NdArray([rows, cols], Array.ConvertAll(host, v => (double)v)).Rows(log ? NdArray.LogSoftmax : NdArray.Softmax).Data;
                    // exp is approximate on GPUs (ex2.approx); log-softmax errors grow with the magnitude of the row's log-sum.
                    Close(Download(B, dst, rows * cols), want, $"{(log ? "LogSoftmax" : "Softmax")} {team} cols={cols} seed={seed}", log ? 1e-5 : 2e-6);
                    src.Release(); dst.Release();
                }
        }
    }

    [Test]
    public void Warp_rows_are_offered_only_where_the_device_has_shuffles()
    {
        Assert.That(B.HasWarpShuffles, Is.EqualTo(DeviceName != "opencl"), "CPU accelerator: emulated 4-lane warps; CUDA: 32-lane warps; PoCL: no sub-groups");
        if (!B.HasWarpShuffles)
        {
            var ex = Assert.Throws<NotSupportedException>(() => B.RowTeam = RowTeamMode.Warp);
            Assert.That(ex!.Message, Does.Contain("warp shuffles").And.Contain(TestDevice.ToString()));
        }
    }

    // ---- layer norm against the CPU backend -------------------------------------------------

    [Test]
    public void Layer_norm_forward_and_backward_match_the_cpu_backend_with_both_teams()
    {
        int seed = (int)FreshSeed();
        var rng = new Random(seed);
        foreach (var team in Teams())
        {
            B.RowTeam = team;
            // (rows, cols): 5 rows are one chunk of the two-stage dgamma/dbeta sums; 301 rows of 7 are 10 chunks with a short last one.
            foreach (var (rows, cols) in new[] { (5, 1), (5, 3), (5, 32), (5, 33), (5, 200), (5, 1100), (301, 7) })
                foreach (bool affine in new[] { true, false })
                foreach (bool fused in new[] { false, true })
                {
                    var x = Values(rng, rows * cols, 2).Select(v => v + 3f).ToArray(); // a mean far from 0 tests the two-pass variance
                    var gamma = Values(rng, cols); var beta = Values(rng, cols); var dy = Values(rng, rows * cols);
                    // fused: the residual add in the forward (x + residual, written to sum) and an addend in the backward.
                    var residual = fused ? Values(rng, rows * cols) : null; var addend = fused ? Values(rng, rows * cols) : null;
                    var got = RunLayerNorm(B, x, gamma, beta, dy, rows, cols, affine, residual, addend);
                    var want = RunLayerNorm(Cpu, x, gamma, beta, dy, rows, cols, affine, residual, addend);
                    string what = $"LayerNorm {team} cols={cols} affine={affine} fused={fused} seed={seed}";
                    string[] names = ["y", "mean", "rstd", "dx", "dgamma", "dbeta", "sum"];
                    for (int i = 0; i < got.Length; i++) Close(got[i], want[i], $"{what} {names[i]}", 2e-4);
                }
        }
    }

    static float[][] RunLayerNorm(IBackend be, float[] x, float[] gamma, float[] beta, float[] dy, int rows, int cols, bool affine, float[]? residual = null, float[]? addend = null)
    {
        var (sx, sg, sb, sdy) = (Upload(be, x), Upload(be, gamma), Upload(be, beta), Upload(be, dy));
        var (y, mean, rstd, dx) = (be.Allocate(DType.Float32, rows * cols), be.Allocate(DType.Float32, rows), be.Allocate(DType.Float32, rows), be.Allocate(DType.Float32, rows * cols));
        var (dg, db) = (be.Allocate(DType.Float32, cols), be.Allocate(DType.Float32, cols));
        var (sr, sum, sa) = (residual is null ? null : Upload(be, residual), residual is null ? null : be.Allocate(DType.Float32, rows * cols), addend is null ? null : Upload(be, addend));
        try
        {
            be.LayerNorm(sx, affine ? sg : null, affine ? sb : null, y, mean, rstd, rows, cols, 1e-5, sr, sum);
            be.LayerNormBackward(sdy, sum ?? sx, mean, rstd, affine ? sg : null, dx, dg, db, rows, cols, sa);
            float[][] outputs = [Download(be, y, rows * cols), Download(be, mean, rows), Download(be, rstd, rows), Download(be, dx, rows * cols), Download(be, dg, cols), Download(be, db, cols)];
            return sum is null ? outputs : [.. outputs, Download(be, sum, rows * cols)];
        }
        finally { foreach (var s in new[] { sx, sg, sb, sdy, y, mean, rstd, dx, dg, db, sr, sum, sa }) s?.Release(); }
    }
}

/// <summary>Offline PTX checks of the register-tiled GEMM and the row-team builds (no device involved, so outside the device fixtures).</summary>
[TestFixture, Category("Gpu")]
public class GemmRowsPtxTests
{
    /// <summary>
    /// The register tile must live in registers: ILGPU does not unroll loops and puts indexed local arrays in .local
    /// memory, so a regression (an array, a loop over the micro-tile) shows as a .local depot or more shared loads
    /// than the 2 x 8 per k step the kernel is written with.
    /// </summary>
    [Test]
    public void Register_tiled_kernel_keeps_its_micro_tile_in_registers_in_ptx()
    {
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);
        string Compile(System.Reflection.MethodInfo m) =>
            ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(m), new KernelSpecialization())).PTXAssembly;

        string gemm = Compile(typeof(GemmKernels).GetMethod(nameof(GemmKernels.RegisterTiledKernel))!.MakeGenericMethod(typeof(Size16), typeof(Size8)));
        Assert.That(gemm, Does.Not.Contain(".local"), "the accumulators spilled to local memory");
        Assert.That(gemm, Does.Not.Contain("call."), "a helper was not inlined");
        int sharedLoads = gemm.Split('\n').Count(l => l.TrimStart().StartsWith("ld.shared", StringComparison.Ordinal));
        Assert.That(sharedLoads, Is.EqualTo(2 * GemmKernels.MicroTile), "shared loads per k step");

        // The warp build reduces with shuffles; the group build has none (it must compile where sub-groups are missing).
        var softmax = typeof(SoftmaxKernels).GetMethod(nameof(SoftmaxKernels.RowKernel))!;
        Assert.That(Compile(softmax.MakeGenericMethod(typeof(WarpTeam), typeof(Size256))), Does.Contain("shfl.sync"));
        Assert.That(Compile(softmax.MakeGenericMethod(typeof(GroupTeam), typeof(Size256))), Does.Not.Contain("shfl").And.Contain("bar.sync"));
    }

    /// <summary>
    /// ILGPU 1.5.3 at O2 promises a warp-uniform branch (bra.uni) on data a thread loaded through its own index in an
    /// implicitly grouped kernel (its analysis takes the index parameter as uniform); on an H200 argmax then returned
    /// other lanes' indices. What AttnCore loads on CUDA carries no uniform hint, in implicitly and explicitly grouped
    /// kernels alike, and is otherwise ILGPU's PTX unchanged.
    /// </summary>
    [Test]
    public void Cuda_kernels_are_loaded_without_the_uniform_branch_hints_of_ilgpu()
    {
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O2).EnableAlgorithms());
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);

        var (generated, loaded) = IlgpuKernels.CudaPtx(ptx, typeof(AttnCore.Kernels.Gpu.Reduce).GetMethod(nameof(AttnCore.Kernels.Gpu.Reduce.ArgReduceKernel))!, explicitlyGrouped: false);
        // The data-dependent branch of the argmax loop: the NaN test of the loaded element, then a jump.
        Assert.That(generated, Does.Match(@"testp\.notanumber\.f32\s+(%p\d+)[^\n]*\n(\s*not\.pred[^\n]*\n)?\s*@!?%p\d+ bra\.uni"),
            "ILGPU no longer marks the argmax's divergent branch uniform: the workaround may be obsolete");
        Assert.That(loaded, Does.Not.Contain(".uni"));
        Assert.That(loaded, Is.EqualTo(generated.Replace(".uni", "")));

        var softmax = typeof(SoftmaxKernels).GetMethod(nameof(SoftmaxKernels.RowKernel))!.MakeGenericMethod(typeof(WarpTeam), typeof(Size256));
        var (groupedGenerated, groupedLoaded) = IlgpuKernels.CudaPtx(ptx, softmax, explicitlyGrouped: true);
        Assert.That(groupedGenerated, Does.Contain(".uni"));
        Assert.That(groupedLoaded, Does.Not.Contain(".uni").And.Contain("shfl.sync"));

        Assert.That(IlgpuKernels.WithoutUniformHints("@%p1 bra.uni L_1;\n\tbra.uni L_2;\n\tret.uni;\n\tcall.uni (r), f, (a);\n\tbrx.idx.uni %r1, t;\n\tmov.b32 %universe, 1;"),
            Is.EqualTo("@%p1 bra L_1;\n\tbra L_2;\n\tret;\n\tcall (r), f, (a);\n\tbrx.idx %r1, t;\n\tmov.b32 %universe, 1;"));
    }
}
