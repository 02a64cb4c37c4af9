using AttnCore.Kernels.Cpu;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace AttnCore.Cli.Bench;

/// <summary>
/// Drives Cli/Bench/torch_bench.py in a long-lived /usr/bin/python3 child, one JSON command per line, so
/// AttnCore and PyTorch runs can alternate within one benchmark.
/// </summary>
public sealed class TorchBridge : IBenchReference
{
    /// <summary>How to get the reference installed (printed when it is missing).</summary>
    public const string InstallHint = "PyTorch is needed for --vs torch: apt-get install -y python3-torch python3-numpy libopenblas0-pthread (it runs /usr/bin/python3, or the interpreter named by ATTNCORE_PYTHON)";

    /// <summary>Environment variable that names another Python interpreter (one with PyTorch) instead of /usr/bin/python3.</summary>
    public const string PythonVariable = "ATTNCORE_PYTHON";

    private readonly Process _process;

    private TorchBridge(Process p) => _process = p;

    /// <summary>Starts the child with the reference configuration of <paramref name="settings"/> and sets up <paramref name="setup"/>; throws <see cref="InvalidOperationException"/> with the install hint when PyTorch is unavailable.</summary>
    /// <exception cref="ArgumentException">The settings ask for an allocator that is not installed, or contradict each other.</exception>
    public static TorchBridge Start(Dictionary<string, object> setup, TorchSettings settings)
    {
        // Debian's python3-torch lives under /usr/bin/python3, not under a pyenv/venv python3 earlier on PATH.
        string python = Environment.GetEnvironmentVariable(PythonVariable) is { Length: > 0 } chosen ? chosen
            : File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        string script = Path.Combine(AppContext.BaseDirectory, "Bench", "torch_bench.py");
        if (!File.Exists(script)) throw new InvalidOperationException($"bench: {script} is missing from the build output");
        // AttnCore held below this CPU's widest vectors (DOTNET_EnableAVX512=0: an AVX2 machine) holds the reference
        // to the same instruction set, so the comparison is the one a user of such a machine would see.
        var isa = settings.Untuned ? null : IsaMatchFor(FmaPeak.DefaultVectorBits, CpuFlags());
        var bridge = StartOnce(CreateStartInfo(python, script, settings, FindJemalloc(), isa), setup, settings);
        if (settings.Untuned) return bridge;
        if (isa is { } held)
        {
            bridge.Configuration = new Dictionary<string, string>(bridge.Configuration)
            {
                [IsaMatchKey] = $"{FmaPeak.DefaultVectorBits}-bit (AttnCore runs {FmaPeak.DefaultVectorBits}-bit vectors on a CPU with wider ones: the reference is held to ATEN_CPU_CAPABILITY={held.Capability}, OPENBLAS_CORETYPE={held.Core})",
            };
            return bridge;
        }
        // OpenBLAS reads its core once, when it loads, so a core it picked wrongly is fixed by starting again.
        string detected = bridge.Configuration.TryGetValue("blas_core", out var c) ? c : "";
        if (CoreTypeFor(detected, CpuFlags()) is not { } core) return bridge;
        bridge.Dispose();
        var psi = CreateStartInfo(python, script, settings, FindJemalloc());
        psi.Environment[InheritedOverrides[0]] = core;
        bridge = StartOnce(psi, setup, settings);
        bridge.Configuration = new Dictionary<string, string>(bridge.Configuration) { [FallbackKey] = detected };
        return bridge;
    }

    private static TorchBridge StartOnce(ProcessStartInfo psi, Dictionary<string, object> setup, TorchSettings settings)
    {
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException(InstallHint);
        }
        catch (System.ComponentModel.Win32Exception) { throw new InvalidOperationException(InstallHint); }
        var bridge = new TorchBridge(p);
        var reply = bridge.Send(new Dictionary<string, object>(setup) { ["cmd"] = "setup", ["threads"] = settings.Threads });
        if (!reply.TryGetProperty("ok", out var ok) || !ok.GetBoolean())
        {
            string err = reply.TryGetProperty("error", out var e) ? e.GetString() ?? "" : "no reply";
            bridge.Dispose();
            throw new InvalidOperationException(err.Contains("import torch", StringComparison.Ordinal) ? InstallHint : $"bench: PyTorch failed to set up: {err}");
        }
        bridge.Version = reply.TryGetProperty("torch", out var v) ? v.GetString() ?? "?" : "?";
        if (reply.TryGetProperty("config", out var config) && config.ValueKind == JsonValueKind.Object)
            bridge.Configuration = config.EnumerateObject().ToDictionary(kv => kv.Name, kv => kv.Value.ToString());
        return bridge;
    }

    /// <summary>Configuration key, present only when the reference is held to AttnCore's narrower instruction set (<see cref="IsaMatchFor"/>).</summary>
    public const string IsaMatchKey = "isa_matched";

    /// <summary>
    /// The ATen CPU capability and OpenBLAS core that hold the reference to AttnCore's vector width, where this
    /// process runs narrower vectors than the CPU has (the JIT told to leave AVX-512 or AVX2 out, as
    /// DOTNET_EnableAVX512=0 or DOTNET_EnableAVX2=0 do), else null: 256 bits on an AVX-512 CPU is an AVX2 machine
    /// (avx2, Haswell); 128 bits on an x64 CPU with AVX is an SSE4.2 one (default, Nehalem: 128-bit, no FMA).
    /// </summary>
    public static (string Capability, string Core)? IsaMatchFor(int vectorBits, IReadOnlySet<string> cpuFlags) => vectorBits switch
    {
        256 when cpuFlags.Contains("avx512f") => ("avx2", "Haswell"),
        128 when cpuFlags.Contains("avx") && cpuFlags.Contains("sse4_2") => ("default", "Nehalem"),
        _ => null,
    };

    /// <summary>Configuration key, present only when the reference had to name OpenBLAS's core: the generic core OpenBLAS chose by itself.</summary>
    public const string FallbackKey = "openblas_fallback_core";

    private static readonly string[] CoresThatKnowTheCpu = ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"];

    /// <summary>
    /// The OPENBLAS_CORETYPE the tuned reference needs when OpenBLAS did not recognise this CPU, else null.
    /// An OpenBLAS older than the CPU falls back to a generic core (0.3.21 picks Prescott, SSE3 kernels, on an
    /// Emerald Rapids Xeon: about 9 instead of 50-60 GFLOP/s SGEMM on one thread); the kernels the CPU's
    /// instruction set allows are then named from its flags (/proc/cpuinfo). A core OpenBLAS chose for a CPU
    /// it knows is never replaced.
    /// </summary>
    public static string? CoreTypeFor(string detectedCore, IReadOnlySet<string> cpuFlags)
    {
        if (detectedCore.Length == 0 || detectedCore.StartsWith("none", StringComparison.Ordinal)
            || CoresThatKnowTheCpu.Contains(detectedCore, StringComparer.OrdinalIgnoreCase)) return null;
        bool Has(params string[] names) => names.All(cpuFlags.Contains);
        if (Has("avx512f", "avx512bw", "avx512dq", "avx512vl")) return Has("avx512_bf16") ? "Cooperlake" : "SkylakeX";
        if (Has("avx2", "fma")) return "Haswell";
        return null;
    }

    /// <summary>This CPU's feature flags from /proc/cpuinfo (empty where there is none).</summary>
    public static IReadOnlySet<string> CpuFlags()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags", StringComparison.Ordinal) && line.IndexOf(':') is var colon and > 0)
                    return line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new HashSet<string>();
    }

    /// <summary>
    /// The start information of the reference process: /usr/bin/python3 (or <paramref name="python"/>) running
    /// <paramref name="script"/>, with an environment that gives PyTorch its best configuration on this machine
    /// unless <see cref="TorchSettings.Untuned"/>: the OpenBLAS core overrides of the parent are dropped, OpenBLAS's
    /// idle threads spin briefly (<see cref="OpenBlasThreadTimeout"/>), the
    /// allocator keeps freed memory instead of returning (and re-faulting) it, and OpenMP has the thread count
    /// and a passive wait policy. <paramref name="jemallocPath"/> is libjemalloc.so.2 where installed, else null;
    /// <paramref name="isa"/> (<see cref="IsaMatchFor"/>) holds ATen and OpenBLAS to AttnCore's narrower instruction set.
    /// </summary>
    /// <exception cref="ArgumentException">jemalloc was asked for but <paramref name="jemallocPath"/> is null, or an allocator was asked for together with Untuned.</exception>
    public static ProcessStartInfo CreateStartInfo(string python, string script, TorchSettings settings, string? jemallocPath,
        (string Capability, string Core)? isa = null)
    {
        if (settings.Threads < 1) throw new ArgumentException($"bench --vs torch: the reference needs at least 1 thread, got {settings.Threads}");
        var allocator = ResolveAllocator(settings, jemallocPath);
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(script);
        var env = psi.Environment;
        // OpenBLAS's own threads and OpenMP's follow the same count as torch.set_num_threads in the child.
        env["OMP_NUM_THREADS"] = settings.Threads.ToString(CultureInfo.InvariantCulture);
        // Idle OpenMP threads must sleep, not spin, between PyTorch batches: spinning would steal the cores
        // from the AttnCore batch that runs next and bias the comparison against AttnCore.
        env["OMP_WAIT_POLICY"] = "PASSIVE";
        if (settings.Untuned) return psi;
        // Set for other tools on this machine, these make OpenBLAS run its AVX2 (Haswell) kernels on an AVX-512
        // CPU, at well under half the SGEMM rate: the reference must pick its core by itself.
        foreach (var name in InheritedOverrides) env.Remove(name);
        if (isa is { } held)
        {
            env["ATEN_CPU_CAPABILITY"] = held.Capability;
            env["OPENBLAS_CORETYPE"] = held.Core;
        }
        env["OPENBLAS_THREAD_TIMEOUT"] = OpenBlasThreadTimeout;
        switch (allocator)
        {
            case TorchAllocator.Jemalloc:
                string? preload = env.TryGetValue("LD_PRELOAD", out var p) && !string.IsNullOrEmpty(p) ? p : null;
                env["LD_PRELOAD"] = preload is null ? jemallocPath : $"{jemallocPath}:{preload}";
                env["MALLOC_CONF"] = JemallocConf;
                break;
            case TorchAllocator.GlibcTuned:
                foreach (var (name, value) in GlibcTunedSettings) env[name] = value;
                break;
        }
        return psi;
    }

    /// <summary>
    /// OPENBLAS_THREAD_TIMEOUT of the tuned reference: OpenBLAS's idle threads spin for 2^18 cycles (about 70 µs)
    /// before they sleep, instead of its default 2^28 (about 0.1 s).
    /// </summary>
    // With the default, OpenBLAS's two threads kept spinning after each matmul while PyTorch's OpenMP threads ran the
    // softmax, GELU or layer norm that came next, on the same two cores. Measured here (2026-12-06, `bench --vs torch`,
    // 2 threads): PyTorch's attention forward took 22.3 ms with the default against 17.6-18.0 ms with 4, 12 or 18;
    // the causal forward 30.1 against 22.0 ms (4); the GPT-small step 1414 against 1265-1344 ms, and in two
    // alternated rounds 1327-1462 ms with 4 against 1285-1314 ms with 18; SGEMM alone did not move.
    public const string OpenBlasThreadTimeout = "18";

    /// <summary>The parent's variables the tuned reference process does not inherit.</summary>
    public static readonly string[] InheritedOverrides = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ATEN_CPU_CAPABILITY"];

    /// <summary>
    /// glibc malloc settings that keep large freed blocks in the process: page faults are expensive in a
    /// virtual machine, and by default every large PyTorch temporary is mapped and faulted in afresh.
    /// </summary>
    public static readonly (string Name, string Value)[] GlibcTunedSettings =
    [
        ("MALLOC_MMAP_THRESHOLD_", "17179869184"), ("MALLOC_TRIM_THRESHOLD_", "17179869184"), ("MALLOC_TOP_PAD_", "1073741824"),
    ];

    /// <summary>jemalloc's options for the reference: never purge dirty or muzzy pages (by default it returns them to the OS after 10 s, and re-faults them).</summary>
    // Checked here with a naive attention forward (B1 H8 L1024 D64): preloaded with its default decay, jemalloc was
    // no faster than glibc's defaults, since the pages still went back to the OS; with purging off it beat glibc tuned.
    public const string JemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";

    private static readonly string[] JemallocCandidates =
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2",
    ];

    /// <summary>The installed libjemalloc.so.2 (Debian/Ubuntu package libjemalloc2), or null.</summary>
    public static string? FindJemalloc() => JemallocCandidates.FirstOrDefault(File.Exists);

    /// <summary>The allocator a reference process runs with: Auto means jemalloc where installed, else glibc tuned; Untuned means the system's.</summary>
    /// <exception cref="ArgumentException">jemalloc is asked for and not installed, or an allocator is asked for with Untuned.</exception>
    public static TorchAllocator ResolveAllocator(TorchSettings settings, string? jemallocPath)
    {
        if (settings.Untuned)
        {
            if (settings.Allocator is TorchAllocator.Auto or TorchAllocator.System) return TorchAllocator.System;
            throw new ArgumentException($"bench: --torch-untuned runs PyTorch with the system allocator; it cannot be combined with --torch-allocator {AllocatorName(settings.Allocator)}");
        }
        return settings.Allocator switch
        {
            TorchAllocator.Auto => jemallocPath is null ? TorchAllocator.GlibcTuned : TorchAllocator.Jemalloc,
            TorchAllocator.Jemalloc when jemallocPath is null => throw new ArgumentException(
                $"bench: --torch-allocator jemalloc: libjemalloc.so.2 is not installed (looked for {string.Join(", ", JemallocCandidates)}); apt-get install -y libjemalloc2, or use --torch-allocator glibc-tuned"),
            var chosen => chosen,
        };
    }

    /// <summary>The command-line spelling of <paramref name="allocator"/>.</summary>
    public static string AllocatorName(TorchAllocator allocator) => allocator switch
    {
        TorchAllocator.Jemalloc => "jemalloc",
        TorchAllocator.GlibcTuned => "glibc-tuned",
        TorchAllocator.System => "system",
        _ => "auto",
    };

    /// <summary>
    /// What the reference process reports about itself after setup: torch version, OpenBLAS core and threads,
    /// allocator, torch threads, OMP_WAIT_POLICY and the OPENBLAS_* overrides it sees.
    /// </summary>
    public IReadOnlyDictionary<string, string> Configuration { get; private set; } = new Dictionary<string, string>();

    /// <summary>PyTorch's version string.</summary>
    public string Version { get; private set; } = "?";

    /// <inheritdoc/>
    public string Key => "torch";

    /// <inheritdoc/>
    public string Label => $"PyTorch {Version}";

    private JsonElement Send(Dictionary<string, object> command)
    {
        try
        {
            _process.StandardInput.WriteLine(JsonSerializer.Serialize(command));
            _process.StandardInput.Flush();
        }
        catch (IOException) { } // the child already exited (e.g. no torch): its last words are still on stdout/stderr
        string? line = _process.StandardOutput.ReadLine();
        if (line is null)
        {
            string err = _process.StandardError.ReadToEnd();
            throw new InvalidOperationException(err.Contains("No module named 'torch'", StringComparison.Ordinal) || err.Contains("import torch", StringComparison.Ordinal)
                ? InstallHint : $"bench: the PyTorch process ended: {err.Split('\n').LastOrDefault(l => l.Length > 0)}");
        }
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    /// <summary>Times <paramref name="reps"/> runs in PyTorch, in milliseconds.</summary>
    public double[] Run(int reps)
    {
        var reply = Send(new Dictionary<string, object> { ["cmd"] = "run", ["reps"] = reps });
        if (!reply.TryGetProperty("times_ms", out var times)) throw new InvalidOperationException($"bench: PyTorch failed: {reply}");
        WaitUntilIdle();
        return times.EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }

    // After its last call PyTorch's BLAS threads keep spinning, waiting for more work: OpenBLAS's thread server used
    // 0.13 s of CPU in the 2 s after a 2048 SGEMM on 2 threads here (2026-12-04, os.times() in the child), none with
    // OPENBLAS_THREAD_TIMEOUT=4. Between PyTorch's own timed calls that spinning is what PyTorch is, so it is left
    // alone; but AttnCore's next turn (and the peak measured after the warm-up) would share a core with it. So the
    // turn ends when the child has used no CPU for 50 ms, after at most 2 s.
    private void WaitUntilIdle()
    {
        var limit = Stopwatch.StartNew();
        _process.Refresh();
        var before = _process.TotalProcessorTime;
        while (limit.Elapsed.TotalSeconds < 2)
        {
            Thread.Sleep(50);
            _process.Refresh();
            var now = _process.TotalProcessorTime;
            if ((now - before).TotalMilliseconds < 1) return;
            before = now;
        }
    }

    /// <summary>Stops the child.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.StandardInput.WriteLine("{\"cmd\": \"quit\"}");
                _process.StandardInput.Flush();
                if (!_process.WaitForExit(5000)) _process.Kill();
            }
        }
        catch (IOException) { }
        _process.Dispose();
    }
}

/// <summary>The allocator the PyTorch reference process runs with.</summary>
public enum TorchAllocator
{
    /// <summary>jemalloc where libjemalloc.so.2 is installed, else <see cref="GlibcTuned"/>.</summary>
    Auto,
    /// <summary>jemalloc through LD_PRELOAD, with page purging off (<see cref="TorchBridge.JemallocConf"/>).</summary>
    Jemalloc,
    /// <summary>glibc malloc with <see cref="TorchBridge.GlibcTunedSettings"/>.</summary>
    GlibcTuned,
    /// <summary>Whatever the environment gives (glibc malloc's defaults here).</summary>
    System,
}

/// <summary>How the PyTorch reference process is configured.</summary>
/// <param name="Threads">torch.set_num_threads and OMP_NUM_THREADS: the thread count AttnCore runs with.</param>
/// <param name="Untuned">Inherit the parent's environment as it is (OPENBLAS_CORETYPE included) with the system allocator, to show what tuning changes.</param>
/// <param name="Allocator">The allocator (ignored as Auto when Untuned).</param>
public sealed record TorchSettings(int Threads, bool Untuned = false, TorchAllocator Allocator = TorchAllocator.Auto);
