using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary>Starts programs under Open MPI's mpirun with 2 ranks, as .ci/run's machine and a user's laptop would.</summary>
internal static class MpiRun
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, double Seconds)
    {
        public override string ToString() => $"exit {ExitCode} after {Seconds:F1} s\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    /// <summary>mpirun's path, or Assert.Ignore naming it when Open MPI is not installed.</summary>
    public static string Mpirun()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "mpirun");
            if (File.Exists(candidate)) return candidate;
        }
        Assert.Ignore("mpirun (Open MPI) is not on PATH: apt-get install openmpi-bin libopenmpi-dev (.ci/run installs them)");
        return "";
    }

    /// <summary>dotnet, as the test host was started by it.</summary>
    public static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";

    /// <summary>This test assembly (whose entry point is <see cref="MpiWorker"/>).</summary>
    public static string TestAssembly => typeof(MpiWorker).Assembly.Location;

    /// <summary>The attncore CLI beside the tests.</summary>
    public static string Cli => Path.Combine(AppContext.BaseDirectory, "attncore.dll");

    /// <summary>The mpirun arguments for <paramref name="ranks"/> processes of <paramref name="program"/>, allowed as root and on 2 cores.</summary>
    public static string[] Launch(int ranks, params string[] program) =>
        ["--allow-run-as-root", "--oversubscribe", "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), Dotnet, .. program];

    /// <summary>Runs mpirun with <paramref name="arguments"/>; kills the whole tree and fails after <paramref name="timeout"/>.</summary>
    public static Result Run(string[] arguments, TimeSpan timeout, Action<Process>? whileRunning = null)
    {
        var psi = new ProcessStartInfo(Mpirun()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        // Containers often forbid the cross-memory-attach syscalls of Open MPI's shared-memory transport.
        psi.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
        psi.Environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1";
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            whileRunning?.Invoke(p);
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
                Assert.Fail($"mpirun {string.Join(' ', arguments)} did not finish within {timeout.TotalSeconds:F0} s\n{stdout}\n{stderr}");
            }
            p.WaitForExit();
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
        lock (stdout) lock (stderr) return new Result(p.ExitCode, stdout.ToString(), stderr.ToString(), clock.Elapsed.TotalSeconds);
    }

    /// <summary>The process ids of <paramref name="root"/>'s descendants whose environment says they are MPI rank <paramref name="rank"/>.</summary>
    public static int[] RankProcesses(int root, int rank)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                int ppid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
                (children.TryGetValue(ppid, out var l) ? l : children[ppid] = []).Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var found = new List<int>();
        var pending = new Stack<int>([root]);
        while (pending.Count > 0)
        {
            int pid = pending.Pop();
            foreach (var c in children.GetValueOrDefault(pid) ?? [])
            {
                pending.Push(c);
                try
                {
                    var env = File.ReadAllText($"/proc/{c}/environ").Split('\0');
                    if (env.Contains($"OMPI_COMM_WORLD_RANK={rank}")) found.Add(c);
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
        return [.. found];
    }
}
