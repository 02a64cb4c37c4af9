using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using AttnCore.Tests.Models;
using AttnCore.Tests.Models.Vision;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary>
/// <c>--distributed</c> on every <c>attncore train ...</c> command other than gpt (DistributedTrainCliTests), run for real
/// under mpirun with 2 ranks on tiny synthetic data: only rank 0 prints (one JSON line, one "wrote" line) and writes, and
/// where the models are deterministic and have no batch statistics (DLinear, SASRec without dropout) the 2-rank run
/// computes the same training as one process with the whole batch, up to float32 rounding.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class DistributedTrainCommandsCliTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(180);
    private string _dir = "";

    [SetUp]
    public void MakeFolder() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-ddp-cli-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, true);

    [Test]
    public void Train_forecast_on_two_ranks_matches_one_process_and_only_rank_0_prints()
    {
        string csv = Path.Combine(_dir, "series.csv");
        var table = ForecastDataTests.Synthetic(300, 3);
        File.WriteAllLines(csv, new[] { "date,a,b,c" }.Concat(Enumerable.Range(0, table.Rows).Select(r =>
            table.Timestamps[r].ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + "," +
            string.Join(",", Enumerable.Range(0, 3).Select(c => table[r, c].ToString("R", CultureInfo.InvariantCulture))))));
        // 171 training windows in batches of 16: 11 steps an epoch, the last of 11 windows split 6 + 5 and weighted so.
        string[] Train(string run) => ["train", "forecast", "--data", csv, "--model", "dlinear", "--seq-len", "32", "--pred-len", "8", "--batch", "16",
            "--epochs", "2", "--out", run, "--json", "--threads", "1", "--distributed"];
        string two = Path.Combine(_dir, "two"), one = Path.Combine(_dir, "one");
        var ranks = OnTwoRanks(Train(two));
        var alone = Alone(Train(one));
        // The issue's 1e-6 relative (1e-4 percent). Not bit for bit (shard sums against whole-batch sums, see
        // docs/distributed.md): measured 8e-8 on a validation loss, 6e-9 on a train loss.
        Assert.That(ranks.Json.GetProperty("test_mse").GetDouble(), Is.EqualTo(alone.GetProperty("test_mse").GetDouble()).Within(1e-4).Percent);
        Assert.That(ranks.Json.GetProperty("test_mae").GetDouble(), Is.EqualTo(alone.GetProperty("test_mae").GetDouble()).Within(1e-4).Percent);
        double[] Losses(string run) => JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement
            .GetProperty("epochs").EnumerateArray().SelectMany(e => new[] { e.GetProperty("train_loss").GetDouble(), e.GetProperty("val_loss").GetDouble() }).ToArray();
        var (l2, l1) = (Losses(two), Losses(one));
        Assert.That(l2, Has.Length.EqualTo(4));
        for (int i = 0; i < l1.Length; i++) Assert.That(l2[i], Is.EqualTo(l1[i]).Within(1e-4).Percent, $"epoch {i / 2 + 1} {(i % 2 == 0 ? "train" : "validation")} loss");
        foreach (var f in new[] { "model.safetensors", "metrics.json", "loss.png", "forecast.png" }) Assert.That(File.Exists(Path.Combine(two, f)), f);
    }

    [Test]
    public void Train_recommend_on_two_ranks_matches_one_process_and_only_rank_0_prints()
    {
        // 60 users over 300 items (more than the 100 sampled negatives), 4 to 12 interactions each (the last two held out).
        string data = Path.Combine(_dir, "interactions.txt");
        var g = new Random(3);
        File.WriteAllLines(data, Enumerable.Range(1, 60).SelectMany(u => Enumerable.Range(0, g.Next(4, 13)).Select(_ => $"{u} {g.Next(1, 301)}")));
        // Rows split 8 + 8 but the loss is a mean over non-padded positions: each rank is weighted by its share of those.
        string[] Train(string run) => ["train", "recommend", "--data", data, "--model", "sasrec", "--epochs", "3", "--steps-per-epoch", "3", "--batch", "16",
            "--max-len", "10", "--dim", "8", "--heads", "2", "--blocks", "1", "--dropout", "0", "--lr", "0.01", "--eval-every", "1", "--eval-users", "60",
            "--out", run, "--json", "--threads", "1", "--distributed"];
        string two = Path.Combine(_dir, "two"), one = Path.Combine(_dir, "one");
        var ranks = OnTwoRanks(Train(two));
        var alone = Alone(Train(one));
        Assert.That(ranks.Json.GetProperty("ranks").GetInt32(), Is.EqualTo(2));
        Assert.That(alone.GetProperty("ranks").GetInt32(), Is.EqualTo(1));
        double[] Losses(string run) => JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement
            .GetProperty("history").EnumerateArray().Select(e => e.GetProperty("train_loss").GetDouble()).ToArray();
        var (l2, l1) = (Losses(two), Losses(one));
        Assert.That(l2, Has.Length.EqualTo(3));
        // The losses of the 9 steps (epoch means) move, and the two runs agree on them to float32 rounding.
        Assert.That(l1[2], Is.LessThan(l1[0]));
        // To the issue's 1e-6 relative (1e-4 percent); measured up to 8e-8.
        for (int i = 0; i < l1.Length; i++) Assert.That(l2[i], Is.EqualTo(l1[i]).Within(1e-4).Percent, $"epoch {i + 1} train loss");
        foreach (var key in new[] { "ndcg10", "hr10", "full_ndcg10" })
            Assert.That(ranks.Json.GetProperty(key).GetDouble(), Is.EqualTo(alone.GetProperty(key).GetDouble()).Within(1e-4), key);
        foreach (var f in new[] { "model.safetensors", "metrics.json", "validation.png", "attention.png" }) Assert.That(File.Exists(Path.Combine(two, f)), f);
    }

    [Test]
    public void Train_rl_on_two_ranks_splits_the_environments_and_rank_0_steps_its_own_as_one_process_would()
    {
        // --envs 4 over 2 ranks: each steps 2 environments (rank 0 environments 0-1, rank 1 environments 2-3, seeded by index)
        // for 4 iterations of 32 steps and averages the gradients of its 2 minibatches of 32 with the other rank's.
        string two = Path.Combine(_dir, "two"), one = Path.Combine(_dir, "one");
        var ranks = OnTwoRanks(["train", "rl", "--env", "cartpole", "--policy", "mlp", "--envs", "4", "--rollout", "32", "--minibatches", "2", "--epochs", "2",
            "--steps", "512", "--seed", "5", "--out", two, "--json", "--threads", "1", "--distributed"]);
        Assert.That(ranks.Json.GetProperty("ranks").GetInt32(), Is.EqualTo(2));
        Assert.That(ranks.Json.GetProperty("steps").GetInt32(), Is.EqualTo(512));
        Assert.That(File.Exists(Path.Combine(two, "policy-seed5.safetensors")) && File.Exists(Path.Combine(two, "learning_curve.png")), Is.True);
        // metrics.json holds rank 0's environments: 2 environments x 32 steps x 4 iterations.
        var run2 = Runs(two)[0];
        Assert.That(run2.GetProperty("steps").GetInt64(), Is.EqualTo(256));
        Assert.That(run2.GetProperty("iterations").GetArrayLength(), Is.EqualTo(4));

        // One process stepping the same 2 environments from the same policy takes the same first rollout (the updates after it
        // differ: they average in rank 1's gradients).
        Alone(["train", "rl", "--env", "cartpole", "--policy", "mlp", "--envs", "2", "--rollout", "32", "--minibatches", "2", "--epochs", "2",
            "--steps", "256", "--seed", "5", "--out", one, "--json", "--threads", "1"]);
        double[][] FirstRollout(JsonElement run) => run.GetProperty("episodes").EnumerateArray().Select(e => e.EnumerateArray().Select(v => v.GetDouble()).ToArray())
            .Where(e => e[0] <= 64).ToArray();
        var first = FirstRollout(run2);
        Assert.That(first, Is.Not.Empty, "CartPole episodes under a random policy end within 64 steps");
        Assert.That(first, Is.EqualTo(FirstRollout(Runs(one)[0])));
        // Rank 0 alone would have trained exactly the single process's policy: the averaged gradients make it another.
        Assert.That(File.ReadAllBytes(Path.Combine(two, "policy-seed5.safetensors")), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(one, "policy-seed5.safetensors"))));

        // --envs must split evenly over the ranks.
        var bad = MpiRun.Run(MpiRun.Launch(2, [MpiRun.Cli, "train", "rl", "--envs", "3", "--rollout", "32", "--steps", "512", "--out", Path.Combine(_dir, "bad"), "--distributed"]), Limit);
        Assert.That(bad.ExitCode, Is.Not.EqualTo(0), bad.ToString());
        Assert.That(bad.Stderr, Does.Contain("--envs 3 does not split evenly over the 2 ranks"), bad.ToString());
    }

    [Test]
    public void Train_vision_on_two_ranks_writes_once_and_one_process_resumes_its_checkpoint()
    {
        // 48 training and 16 test images of 8x8 pixels in 3 classes (brightness by class, plus noise).
        string data = Path.Combine(_dir, "idx");
        Directory.CreateDirectory(data);
        var g = new Random(5);
        void Split(string prefix, int n)
        {
            var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 3)).ToArray();
            var pixels = labels.SelectMany(l => Enumerable.Range(0, 64).Select(_ => (byte)Math.Clamp(60 * l + g.Next(0, 120), 0, 255))).ToArray();
            VisionTestData.WriteIdx(Path.Combine(data, $"{prefix}-images-idx3-ubyte"), [n, 8, 8], pixels, gzip: false);
            VisionTestData.WriteIdx(Path.Combine(data, $"{prefix}-labels-idx1-ubyte"), [n], labels, gzip: false);
        }
        Split("train", 48);
        Split("t10k", 16);
        string run = Path.Combine(_dir, "run");
        string[] Train(int epochs) => ["train", "vision", "--data", data, "--model", "resnet20", "--epochs", epochs.ToString(CultureInfo.InvariantCulture), "--batch", "8",
            "--pictures", "0", "--schedule", "cosine", "--out", run, "--json", "--threads", "1", "--distributed"];
        var ranks = OnTwoRanks(Train(1));
        Assert.That(ranks.Json.GetProperty("ranks").GetInt32(), Is.EqualTo(2));
        Assert.That(ranks.Json.GetProperty("steps").GetInt32(), Is.EqualTo(6));
        foreach (var f in new[] { "checkpoint.bin", "vision.safetensors", "metrics.json", "epochs.json", "loss.png", "curves.png", "confusion.png" })
            Assert.That(File.Exists(Path.Combine(run, f)), f);

        // The checkpoint of 2 ranks continues on 1 process: epoch 2 is added to the same table.
        var resumed = Alone([.. Train(2), "--resume"]);
        Assert.That(resumed.GetProperty("ranks").GetInt32(), Is.EqualTo(1));
        Assert.That(resumed.GetProperty("steps").GetInt32(), Is.EqualTo(12));
        var epochs = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "epochs.json"))).RootElement.EnumerateArray().Select(e => e.GetProperty("Epoch").GetInt32());
        Assert.That(epochs, Is.EqualTo(new[] { 1, 2 }));
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement;
        Assert.That(metrics[metrics.GetArrayLength() - 1].GetProperty("Step").GetInt32(), Is.EqualTo(12));
    }

    private static JsonElement[] Runs(string folder) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "metrics.json"))).RootElement.GetProperty("runs").EnumerateArray().ToArray();

    // mpirun -np 2 attncore ARGS: it succeeds, and rank 1 printed nothing: stdout holds one result line and one JSON line.
    private static (MpiRun.Result Run, JsonElement Json) OnTwoRanks(string[] args)
    {
        var r = MpiRun.Run(MpiRun.Launch(2, [MpiRun.Cli, .. args]), Limit);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.ToString());
        // .NET's console may put a terminal-mode escape (ESC [?1h ESC =) before the first line.
        var lines = Regex.Replace(r.Stdout, @"\x1b(\[[?0-9;]*[A-Za-z]|[=>])", "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(lines.Count(l => l.StartsWith('{')), Is.EqualTo(1), $"one JSON line (rank 0's)\n{r}");
        Assert.That(lines.Count(l => l.StartsWith("wrote ", StringComparison.Ordinal)), Is.EqualTo(1), $"one 'wrote' line (rank 0's)\n{r}");
        return (r, JsonDocument.Parse(lines.Last(l => l.StartsWith('{'))).RootElement);
    }

    // The same command in this process, a world of one.
    private static JsonElement Alone(string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = AttnCore.Cli.Program.Run(args, stdout, stderr);
        Assert.That(exit, Is.EqualTo(0), stderr.ToString());
        return JsonDocument.Parse(stdout.ToString().Trim().Split('\n')[^1]).RootElement;
    }
}
