using System.Diagnostics;
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

    /// <summary>Starts the child and sets up <paramref name="setup"/>; throws <see cref="InvalidOperationException"/> with the install hint when PyTorch is unavailable.</summary>
    public static TorchBridge Start(Dictionary<string, object> setup)
    {
        // Debian's python3-torch lives under /usr/bin/python3, not under a pyenv/venv python3 earlier on PATH.
        string python = Environment.GetEnvironmentVariable(PythonVariable) is { Length: > 0 } chosen ? chosen
            : File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        string script = Path.Combine(AppContext.BaseDirectory, "Bench", "torch_bench.py");
        if (!File.Exists(script)) throw new InvalidOperationException($"bench: {script} is missing from the build output");
        Process p;
        try
        {
            var psi = new ProcessStartInfo(python, $"\"{script}\"")
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            // OpenBLAS must not pin or oversubscribe: it follows torch.set_num_threads.
            psi.Environment["OMP_NUM_THREADS"] = setup.TryGetValue("threads", out var t) ? t.ToString() : "1";
            // Idle OpenMP threads must sleep, not spin, between PyTorch batches: spinning would steal the cores
            // from the AttnCore batch that runs next and bias the comparison against AttnCore.
            psi.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
            p = Process.Start(psi) ?? throw new InvalidOperationException(InstallHint);
        }
        catch (System.ComponentModel.Win32Exception) { throw new InvalidOperationException(InstallHint); }
        var bridge = new TorchBridge(p);
        var reply = bridge.Send(new Dictionary<string, object>(setup) { ["cmd"] = "setup" });
        if (!reply.TryGetProperty("ok", out var ok) || !ok.GetBoolean())
        {
            string err = reply.TryGetProperty("error", out var e) ? e.GetString() ?? "" : "no reply";
            bridge.Dispose();
            throw new InvalidOperationException(err.Contains("import torch", StringComparison.Ordinal) ? InstallHint : $"bench: PyTorch failed to set up: {err}");
        }
        bridge.Version = reply.TryGetProperty("torch", out var v) ? v.GetString() ?? "?" : "?";
        return bridge;
    }

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
        return times.EnumerateArray().Select(e => e.GetDouble()).ToArray();
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
