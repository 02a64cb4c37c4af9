using System.Diagnostics;
using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary><c>attncore train gpt --distributed</c> under mpirun: a rank that dies, and the checkpoint it leaves.</summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class DistributedTrainCliTests
{
    [Test]
    public void A_killed_rank_ends_the_run_within_seconds_and_the_last_checkpoint_resumes_on_one_process()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"attncore-ddp-kill-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string text = Path.Combine(dir, "input.txt");
            var words = new[] { "the", "king", "queen", "and", "of", "my", "lord", "thou" };
            var g = new Random(1);
            File.WriteAllText(text, string.Join(' ', Enumerable.Range(0, 3000).Select(_ => words[g.Next(words.Length)])));
            string run = Path.Combine(dir, "run"), checkpoint = Path.Combine(run, "checkpoint.bin");
            string[] Train(int steps) => ["train", "gpt", "--data", text, "--distributed", "--threads", "1", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--batch", "4", "--block", "16", "--layers", "1", "--heads", "2", "--dim", "16", "--warmup", "5", "--eval-every", "1000", "--eval-batches", "2",
                "--checkpoint-every", "5", "--out", run, "--quiet"];

            var sinceKill = new Stopwatch();
            var result = MpiRun.Run(MpiRun.Launch(2, [MpiRun.Cli, .. Train(100_000)]), TimeSpan.FromSeconds(150), mpirun =>
            {
                var wait = Stopwatch.StartNew();
                while (!File.Exists(checkpoint) && !mpirun.HasExited && wait.Elapsed < TimeSpan.FromSeconds(90)) Thread.Sleep(100);
                Assert.That(File.Exists(checkpoint), Is.True, $"no checkpoint within {wait.Elapsed.TotalSeconds:F0} s");
                Thread.Sleep(500);   // a few steps more: the kill lands in the middle of training, perhaps of a checkpoint write
                var rank1 = MpiRun.RankProcesses(mpirun.Id, 1);
                Assert.That(rank1, Has.Length.EqualTo(1), "rank 1's process under mpirun");
                using (var victim = Process.GetProcessById(rank1[0])) victim.Kill();   // SIGKILL: no chance to say goodbye
                sinceKill.Start();
            });
            sinceKill.Stop();
            Assert.That(result.ExitCode, Is.Not.EqualTo(0), result.ToString());
            Assert.That(sinceKill.Elapsed.TotalSeconds, Is.LessThan(30), $"the surviving rank took {sinceKill.Elapsed.TotalSeconds:F1} s to stop\n{result}");
            Assert.That(result.Stderr, Does.Contain("exited on signal 9"), result.ToString());
            Assert.That(result.Stderr, Does.Contain("rank 0 of 2 stopped by the launcher (SIGTERM)"), result.ToString());

            // The checkpoint is whole (written under a temporary name and renamed) and any number of ranks resumes it.
            int step;
            using (var r = new BinaryReader(File.OpenRead(checkpoint)))
            {
                Assert.That(r.ReadString(), Is.EqualTo("AttnCore.Checkpoint/1"));
                step = r.ReadInt32();
            }
            Assert.That(step % 5, Is.EqualTo(0));
            Assert.That(step, Is.GreaterThanOrEqualTo(5));
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int exit = AttnCore.Cli.Program.Run([.. Train(step + 3), "--resume", "--json"], stdout, stderr);
            Assert.That(exit, Is.EqualTo(0), stderr.ToString());
            var last = JsonDocument.Parse(stdout.ToString().Trim().Split('\n')[^1]).RootElement;
            Assert.That(last.GetProperty("ranks").GetInt32(), Is.EqualTo(1));
            var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement;
            Assert.That(metrics[metrics.GetArrayLength() - 1].GetProperty("Step").GetInt32(), Is.EqualTo(step + 3));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
