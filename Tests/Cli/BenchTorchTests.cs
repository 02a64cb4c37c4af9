using System.Diagnostics;
using System.Text.Json;
using AttnCore.Cli.Bench;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// The PyTorch reference of <c>bench --vs torch</c> runs at its best: it does not inherit the OpenBLAS core
/// overrides of this environment, it gets an allocator that keeps freed memory and a passive OpenMP; and
/// bench reports GEMM and attention rates as fractions of the FMA peak it measured.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class BenchTorchTests
{
    const string Jemalloc = "/opt/test/libjemalloc.so.2";
    static readonly string[] Overrides = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LD_PRELOAD", "MALLOC_CONF", "MALLOC_MMAP_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT"];

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static JsonElement LastJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;

    // Runs body with the environment this machine has (OPENBLAS_CORETYPE=Haswell etc.), whatever the test host inherited.
    static void WithParentEnvironment(Action body)
    {
        var saved = Overrides.ToDictionary(n => n, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable("OPENBLAS_CORETYPE", "Haswell");
            Environment.SetEnvironmentVariable("OPENBLAS_L2_SIZE", "512");
            Environment.SetEnvironmentVariable("LD_PRELOAD", null);
            Environment.SetEnvironmentVariable("MALLOC_CONF", null);
            Environment.SetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_", null);
            Environment.SetEnvironmentVariable("OMP_NUM_THREADS", "7");
            Environment.SetEnvironmentVariable("OPENBLAS_THREAD_TIMEOUT", null);
            body();
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }
    }

    static IDictionary<string, string?> Env(TorchSettings settings, string? jemalloc) =>
        TorchBridge.CreateStartInfo("/usr/bin/python3", "torch_bench.py", settings, jemalloc).Environment;

    [Test]
    public void Reference_process_drops_the_openblas_overrides_and_gets_the_allocator_and_openmp_settings()
    {
        WithParentEnvironment(() =>
        {
            // Default: jemalloc where installed, with purging off.
            var env = Env(new TorchSettings(3), Jemalloc);
            Assert.That(env.ContainsKey("OPENBLAS_CORETYPE"), Is.False, "OPENBLAS_CORETYPE=Haswell would force AVX2 kernels");
            Assert.That(env.ContainsKey("OPENBLAS_L2_SIZE"), Is.False);
            Assert.That(env["OMP_NUM_THREADS"], Is.EqualTo("3"));
            Assert.That(env["OMP_WAIT_POLICY"], Is.EqualTo("PASSIVE"));
            Assert.That(env["OPENBLAS_THREAD_TIMEOUT"], Is.EqualTo("18"), "OpenBLAS's threads must not spin through PyTorch's own OpenMP work");
            Assert.That(env["LD_PRELOAD"], Is.EqualTo(Jemalloc));
            Assert.That(env["MALLOC_CONF"], Is.EqualTo("dirty_decay_ms:-1,muzzy_decay_ms:-1"));
            Assert.That(env["PATH"], Is.EqualTo(Environment.GetEnvironmentVariable("PATH")), "everything else is inherited");

            // No jemalloc installed: glibc malloc keeps large blocks (16 GiB thresholds, 1 GiB top pad).
            foreach (var settings in new[] { new TorchSettings(1), new TorchSettings(1, Allocator: TorchAllocator.GlibcTuned) })
            {
                env = Env(settings, settings.Allocator == TorchAllocator.Auto ? null : Jemalloc);
                Assert.That(env.ContainsKey("OPENBLAS_CORETYPE"), Is.False);
                Assert.That(env.ContainsKey("LD_PRELOAD"), Is.False);
                Assert.That(env["MALLOC_MMAP_THRESHOLD_"], Is.EqualTo("17179869184"));
                Assert.That(env["MALLOC_TRIM_THRESHOLD_"], Is.EqualTo("17179869184"));
                Assert.That(env["MALLOC_TOP_PAD_"], Is.EqualTo("1073741824"));
                Assert.That(env["OMP_NUM_THREADS"], Is.EqualTo("1"));
            }

            // The system allocator: no allocator settings, but still no OpenBLAS overrides.
            env = Env(new TorchSettings(2, Allocator: TorchAllocator.System), Jemalloc);
            Assert.That(env.ContainsKey("OPENBLAS_CORETYPE") || env.ContainsKey("LD_PRELOAD") || env.ContainsKey("MALLOC_MMAP_THRESHOLD_"), Is.False);

            // Untuned (to show the difference): the parent's environment as it is, with the thread count and passive waiting.
            env = Env(new TorchSettings(2, Untuned: true), Jemalloc);
            Assert.That(env["OPENBLAS_CORETYPE"], Is.EqualTo("Haswell"));
            Assert.That(env["OPENBLAS_L2_SIZE"], Is.EqualTo("512"));
            Assert.That(env.ContainsKey("LD_PRELOAD") || env.ContainsKey("MALLOC_MMAP_THRESHOLD_"), Is.False);
            Assert.That((env["OMP_NUM_THREADS"], env["OMP_WAIT_POLICY"]), Is.EqualTo(("2", "PASSIVE")));
            Assert.That(env.ContainsKey("OPENBLAS_THREAD_TIMEOUT"), Is.False, "untuned: OpenBLAS's default spinning");
            Assert.That(Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE"), Is.EqualTo("Haswell"), "only the child's environment changes");
        });
    }

    [Test]
    public void A_preloaded_library_of_the_parent_stays_after_jemalloc()
    {
        string? saved = Environment.GetEnvironmentVariable("LD_PRELOAD");
        try
        {
            Environment.SetEnvironmentVariable("LD_PRELOAD", "/opt/other.so");
            Assert.That(Env(new TorchSettings(1), Jemalloc)["LD_PRELOAD"], Is.EqualTo(Jemalloc + ":/opt/other.so"));
        }
        finally { Environment.SetEnvironmentVariable("LD_PRELOAD", saved); }
    }

    [Test]
    public void Impossible_reference_settings_fail_with_the_option_and_the_fix()
    {
        var e = Assert.Throws<ArgumentException>(() => Env(new TorchSettings(1, Allocator: TorchAllocator.Jemalloc), null))!;
        Assert.That(e.Message, Does.Contain("--torch-allocator jemalloc").And.Contain("libjemalloc2").And.Contain("libjemalloc.so.2"));
        e = Assert.Throws<ArgumentException>(() => Env(new TorchSettings(1, Untuned: true, Allocator: TorchAllocator.GlibcTuned), Jemalloc))!;
        Assert.That(e.Message, Does.Contain("--torch-untuned").And.Contain("--torch-allocator glibc-tuned"));
        e = Assert.Throws<ArgumentException>(() => Env(new TorchSettings(0), Jemalloc))!;
        Assert.That(e.Message, Does.Contain("thread").And.Contain("0"));
        // On the command line: torch options without a PyTorch reference.
        var (code, _, err) = Run("bench", "gemm", "--n", "8", "--seconds", "0.1", "--torch-allocator", "jemalloc");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("--torch-allocator jemalloc").And.Contain("--vs torch"));
        (code, _, err) = Run("bench", "softmax", "--rows", "4", "--cols", "4", "--torch-untuned");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("--torch-untuned").And.Contain("--vs torch"));
        (code, _, err) = Run("bench", "gemm", "--n", "8", "--vs", "torch", "--torch-allocator", "tcmalloc");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("tcmalloc"));
    }

    [Test]
    public void Bench_peak_reports_one_thread_and_all_threads_in_json()
    {
        var (code, stdout, stderr) = Run("bench", "peak", "--threads", "2", "--seconds", "0.05", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        int bits = j.GetProperty("vector_bits").GetInt32();
        Assert.That(bits, Is.EqualTo(AttnCore.Kernels.Cpu.FmaPeak.DefaultVectorBits));
        Assert.That(j.GetProperty("chains").GetInt32(), Is.EqualTo(bits == 512 ? 16 : 12));
        Assert.That(j.GetProperty("threads").GetInt32(), Is.EqualTo(2));
        Assert.That(j.GetProperty("gflops_1_thread").GetDouble(), Is.GreaterThan(0));
        Assert.That(j.GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(stdout, Does.Contain("1 thread").And.Contain("2 threads"));
        // Usage errors (exit 2), found while parsing, naming the option and the value.
        (code, _, stderr) = Run("bench", "peak", "--seconds", "0");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--seconds").And.Contain("got 0"));
        (code, _, stderr) = Run("bench", "peak", "--threads", "0");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--threads").And.Contain("got 0"));
    }

    [Test]
    public void Gemm_and_attention_report_their_fraction_of_the_measured_peak_and_row_kernels_do_not()
    {
        var (code, stdout, stderr) = Run("bench", "gemm", "--n", "48", "--seconds", "0.1", "--threads", "1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        double peak = j.GetProperty("peak_gflops").GetDouble(), gflops = j.GetProperty("gflops").GetDouble();
        Assert.That(peak, Is.GreaterThan(0));
        Assert.That(j.GetProperty("peak_fraction").GetDouble(), Is.EqualTo(gflops / peak).Within(2e-3 * gflops / peak + 1e-6));
        Assert.That(stdout, Does.Contain("% of peak").And.Contain("peak "));
        (code, stdout, stderr) = Run("bench", "attention", "--b", "1", "--h", "1", "--l", "16", "--d", "8", "--seconds", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).GetProperty("peak_fraction").GetDouble(), Is.GreaterThan(0));
        (code, stdout, stderr) = Run("bench", "softmax", "--rows", "8", "--cols", "8", "--seconds", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).TryGetProperty("peak_fraction", out _), Is.False, "a memory-bound kernel is not measured against the FMA peak");
        // The CPU's FMA peak says nothing about an ILGPU device.
        (code, stdout, stderr) = Run("bench", "gemm", "--n", "8", "--device", "ilgpu-cpu", "--seconds", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).TryGetProperty("peak_fraction", out _), Is.False);
    }

    [Test]
    public void Gemm_times_the_transposed_layouts_of_a_training_step_and_says_which_it_ran()
    {
        var (code, stdout, stderr) = Run("bench", "gemm", "--m", "20", "--n", "24", "--k", "12", "--layout", "tn", "--seconds", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("layout").GetString(), Is.EqualTo("tn"));
        Assert.That((j.GetProperty("m").GetInt32(), j.GetProperty("n").GetInt32(), j.GetProperty("k").GetInt32()), Is.EqualTo((20, 24, 12)));
        (code, _, stderr) = Run("bench", "gemm", "--n", "8", "--layout", "tt");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--layout").And.Contain("tt"));
        (code, _, stderr) = Run("bench", "gemm", "--n", "8", "--layout", "nt", "--blockings", "96,512,1024");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--blockings times A @ B only"));
        if (!TorchInstalled()) return;   // the reference side of the layouts runs where PyTorch is installed
        (code, stdout, stderr) = Run("bench", "gemm", "--m", "20", "--n", "24", "--k", "12", "--layout", "nt", "--seconds", "0.1", "--threads", "1", "--vs", "torch", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).GetProperty("layout").GetString(), Is.EqualTo("nt"));
    }

    /// <summary>Whether /usr/bin/python3 can import torch: .ci/run does not install PyTorch (700 MB), so the tests
    /// that run the reference end to end skip, saying why, where it is absent.</summary>
    internal static bool TorchInstalled()
    {
        if (!File.Exists("/usr/bin/python3")) return false;
        using var p = Process.Start(new ProcessStartInfo("/usr/bin/python3", "-c \"import torch\"") { RedirectStandardError = true, RedirectStandardOutput = true })!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    [TestCase("Prescott", "avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16", "Cooperlake")]
    [TestCase("Prescott", "avx2 fma avx512f avx512bw avx512dq avx512vl", "SkylakeX")]
    [TestCase("Nehalem", "avx2 fma avx512f avx512cd", "Haswell")] // AVX-512 foundation alone is not SkylakeX's set
    [TestCase("Core2", "avx2 fma", "Haswell")]
    [TestCase("Prescott", "sse3 ssse3", null)]                   // nothing better to name
    [TestCase("Cooperlake", "avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16", null)]
    [TestCase("Zen", "avx2 fma avx512f avx512bw avx512dq avx512vl", null)] // a core OpenBLAS chose for a CPU it knows stays
    [TestCase("Haswell", "avx2 fma avx512f avx512bw avx512dq avx512vl", null)]
    [TestCase("none (no OpenBLAS loaded)", "avx2 fma", null)]
    public void The_openblas_core_is_named_only_where_openblas_fell_back_to_a_generic_one(string detected, string flags, string? expected)
        => Assert.That(TorchBridge.CoreTypeFor(detected, flags.Split(' ').ToHashSet()), Is.EqualTo(expected));

    [Test]
    public void The_reference_process_reports_the_openblas_core_and_settings_it_actually_runs_with()
    {
        if (!TorchInstalled())
            Assert.Ignore("PyTorch is not installed at /usr/bin/python3 (apt-get install -y python3-torch python3-numpy libopenblas0-pthread); "
                + ".ci/run does not install it (700 MB), so this end-to-end check runs only where it is present. The ProcessStartInfo test above always runs.");
        WithParentEnvironment(() =>
        {
            var setup = new Dictionary<string, object> { ["op"] = "gemm", ["m"] = 8, ["n"] = 8, ["k"] = 8 };
            using (var tuned = TorchBridge.Start(setup, new TorchSettings(1)))
            {
                var c = tuned.Configuration;
                // The tuned reference never runs a generic core on a CPU with AVX2 or AVX-512 (OpenBLAS 0.3.21 on
                // an Emerald Rapids Xeon picks Prescott by itself); it names the core only where OpenBLAS fell back.
                Assert.That(TorchBridge.CoreTypeFor(c["blas_core"], TorchBridge.CpuFlags()), Is.Null, $"the reference runs OpenBLAS's generic {c["blas_core"]} kernels");
                // A run without AVX-512 (the portable-width child runs) holds the reference to AVX2 (IsaMatchFor).
                var held = TorchBridge.IsaMatchFor(AttnCore.Kernels.Cpu.FmaPeak.DefaultVectorBits, TorchBridge.CpuFlags());
                string expectedCoreType = held is { } isa ? isa.Core
                    : c.TryGetValue(TorchBridge.FallbackKey, out var generic) ? TorchBridge.CoreTypeFor(generic, TorchBridge.CpuFlags())! : "(unset)";
                Assert.That(c["openblas_coretype"], Is.EqualTo(expectedCoreType));
                Assert.That(c["openblas_l2_size"], Is.EqualTo("(unset)"));
                Assert.That(c["openblas_thread_timeout"], Is.EqualTo(TorchBridge.OpenBlasThreadTimeout));
                Assert.That((c["threads"], c["omp_num_threads"], c["omp_wait_policy"]), Is.EqualTo(("1", "1", "PASSIVE")));
                Assert.That(c["allocator"], TorchBridge.FindJemalloc() is null ? Does.StartWith("glibc malloc (MALLOC_MMAP_THRESHOLD_=17179869184") : Does.StartWith("jemalloc"));
                Assert.That(c["blas_core"], Is.Not.Empty);
                Assert.That(c["torch"], Is.EqualTo(tuned.Version));
                Assert.That(tuned.Run(2), Has.Length.EqualTo(2));
            }
            using var untuned = TorchBridge.Start(setup, new TorchSettings(1, Untuned: true));
            Assert.That(untuned.Configuration["openblas_coretype"], Is.EqualTo("Haswell"));
            Assert.That(untuned.Configuration["openblas_thread_timeout"], Is.EqualTo("(unset)"));
            Assert.That(untuned.Configuration["allocator"], Is.EqualTo("glibc malloc (defaults)"));
            if (untuned.Configuration["blas_library"].Length > 0)
                Assert.That(untuned.Configuration["blas_core"], Is.EqualTo("Haswell"), "the core name is read from the OpenBLAS PyTorch loaded");
        });
        // And bench prints the configuration in its text and its JSON.
        var (code, stdout, stderr) = Run("bench", "gemm", "--n", "16", "--seconds", "0.1", "--threads", "1", "--vs", "torch", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("torch_tuned").GetBoolean(), Is.True);
        var config = j.GetProperty("torch_config");
        bool fellBack = config.TryGetProperty(TorchBridge.FallbackKey, out var fallback);
        var heldCore = TorchBridge.IsaMatchFor(AttnCore.Kernels.Cpu.FmaPeak.DefaultVectorBits, TorchBridge.CpuFlags())?.Core;
        Assert.That(config.GetProperty("openblas_coretype").GetString(),
            Is.EqualTo(heldCore ?? (fellBack ? TorchBridge.CoreTypeFor(fallback.GetString()!, TorchBridge.CpuFlags()) : "(unset)")));
        if (fellBack) Assert.That(stdout, Does.Contain("set from the CPU's flags: by itself OpenBLAS chose " + fallback.GetString()));
        Assert.That(config.GetProperty("omp_wait_policy").GetString(), Is.EqualTo("PASSIVE"));
        Assert.That(j.GetProperty("torch_peak_fraction").GetDouble(), Is.GreaterThan(0));
        Assert.That(stdout, Does.Contain("reference (tuned): PyTorch").And.Contain("BLAS core " + config.GetProperty("blas_core").GetString()));
    }

    [TestCase(512, "avx512f avx2 avx sse4_2", null, null)]
    [TestCase(256, "avx512f avx2 fma avx sse4_2", "avx2", "Haswell")]
    [TestCase(256, "avx2 fma avx sse4_2", null, null)]
    [TestCase(128, "avx512f avx2 avx sse4_2", "default", "Nehalem")]
    [TestCase(128, "asimd fp", null, null)]
    public void The_reference_is_held_to_attncores_vector_width_only_where_attncore_runs_narrower_than_the_cpu(int bits, string flags, string? capability, string? core)
    {
        var held = TorchBridge.IsaMatchFor(bits, flags.Split(' ').ToHashSet());
        Assert.That(held?.Capability, Is.EqualTo(capability));
        Assert.That(held?.Core, Is.EqualTo(core));
    }

    [Test]
    public void A_held_reference_gets_the_aten_capability_and_openblas_core_and_an_unheld_one_inherits_neither()
    {
        WithParentEnvironment(() =>
        {
            string? saved = Environment.GetEnvironmentVariable("ATEN_CPU_CAPABILITY");
            try
            {
                Environment.SetEnvironmentVariable("ATEN_CPU_CAPABILITY", "default");
                var free = Env(new TorchSettings(2), Jemalloc);
                Assert.That(free.ContainsKey("ATEN_CPU_CAPABILITY"), Is.False, "an inherited ATEN_CPU_CAPABILITY would hold PyTorch below the CPU");
                Assert.That(free.ContainsKey("OPENBLAS_CORETYPE"), Is.False);
                var held = TorchBridge.CreateStartInfo("/usr/bin/python3", "torch_bench.py", new TorchSettings(2), Jemalloc, ("avx2", "Haswell")).Environment;
                Assert.That((held["ATEN_CPU_CAPABILITY"], held["OPENBLAS_CORETYPE"]), Is.EqualTo(("avx2", "Haswell")));
            }
            finally { Environment.SetEnvironmentVariable("ATEN_CPU_CAPABILITY", saved); }
        });
    }

    [Test]
    public void Bench_without_avx512_holds_the_reference_to_avx2_and_says_so()
    {
        if (!TorchInstalled()) Assert.Ignore("PyTorch is not installed at /usr/bin/python3");
        if (!TorchBridge.CpuFlags().Contains("avx512f")) Assert.Ignore("this CPU has no AVX-512 to switch off");
        string cli = Path.Combine(AppContext.BaseDirectory, "attncore.dll");
        var r = ExternalProcess.Run(AttnCore.Tests.Distributed.MpiRun.Dotnet,
            [cli, "bench", "gemm", "--n", "64", "--seconds", "0.1", "--threads", "1", "--vs", "torch", "--json"],
            AppContext.BaseDirectory, TimeSpan.FromMinutes(3), new Dictionary<string, string> { ["DOTNET_EnableAVX512"] = "0" });
        Assert.That(r.ExitCode, Is.Zero, r.Output);
        var config = LastJson(r.StdOut).GetProperty("torch_config");
        Assert.That(config.GetProperty("aten_cpu_capability").GetString(), Is.EqualTo("avx2"));
        Assert.That(config.GetProperty("openblas_coretype").GetString(), Is.EqualTo("Haswell"));
        if (config.GetProperty("blas_library").GetString()!.Length > 0)
            Assert.That(config.GetProperty("blas_core").GetString(), Is.EqualTo("Haswell"), "OpenBLAS runs its AVX2 kernels");
        Assert.That(r.StdOut, Does.Contain("instruction set matched: 256-bit"));
    }
}
