using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

[TestFixture, Category("Cli"), NonParallelizable]
public class RlCliTests
{
    string _dir = "";

    [SetUp]
    public void MakeFolder() => _dir = Path.Combine(Path.GetTempPath(), "attncore-cli-rl-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void RemoveFolder() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static JsonElement LastJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;

    static void AssertPng(string path) =>
        Assert.That(File.ReadAllBytes(path).Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }), path);

    /// <summary>
    /// train rl on CartPole with the MLP for 4 iterations of CleanRL's batch and two seeds: the JSON line of the issue, the
    /// policy files, metrics.json with every run's episodes, the learning curve; then play evaluates a saved policy.
    /// </summary>
    [Test]
    public void Train_rl_reports_json_writes_its_files_and_play_evaluates_the_policy()
    {
        var (code, stdout, stderr) = Run("train", "rl", "--env", "cartpole", "--policy", "mlp", "--steps", "2048", "--runs", "2", "--seed", "5", "--out", _dir, "--json", "--threads", "1");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("env").GetString(), Is.EqualTo("cartpole"));
        Assert.That(j.GetProperty("policy").GetString(), Is.EqualTo("mlp"));
        Assert.That(j.GetProperty("steps").GetInt32(), Is.EqualTo(2048));
        Assert.That(j.GetProperty("runs").GetInt32(), Is.EqualTo(2));
        Assert.That(j.GetProperty("mean_return_100").GetDouble(), Is.InRange(8.0, 500.0));
        Assert.That(j.GetProperty("steps_to_solve").ValueKind, Is.EqualTo(JsonValueKind.Null), "2048 steps cannot solve CartPole");
        Assert.That(j.GetProperty("wall_s").GetDouble(), Is.GreaterThan(0));
        AssertPng(Path.Combine(_dir, "learning_curve.png"));
        Assert.That(File.Exists(Path.Combine(_dir, "attention.png")), Is.False, "an MLP has no attention to draw");
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "metrics.json"))))
        {
            var runs = metrics.RootElement.GetProperty("runs").EnumerateArray().ToArray();
            Assert.That(runs.Select(r => r.GetProperty("seed").GetInt32()), Is.EqualTo(new[] { 5, 6 }));
            foreach (var r in runs)
            {
                Assert.That(r.GetProperty("iterations").GetArrayLength(), Is.EqualTo(4));
                Assert.That(r.GetProperty("finished").GetBoolean(), Is.True);
                // the phases are parts of the rollout and update times, and the processor time is counted
                var last = r.GetProperty("iterations")[3];
                double Seconds(string name) => last.GetProperty(name).GetDouble();
                Assert.That(Seconds("ActSeconds"), Is.GreaterThan(0).And.LessThanOrEqualTo(Seconds("RolloutSeconds")));
                Assert.That(Seconds("ForwardSeconds") + Seconds("BackwardSeconds") + Seconds("OptimizerSeconds"), Is.GreaterThan(0).And.LessThanOrEqualTo(Seconds("UpdateSeconds")));
                Assert.That(Seconds("CpuSeconds"), Is.GreaterThan(0));
                var episodes = r.GetProperty("episodes").EnumerateArray().ToArray();
                Assert.That(episodes.Length, Is.GreaterThan(20));
                // each episode: [end step, return, length]; CartPole's return is its length
                Assert.That(episodes.All(e => e[1].GetDouble() == e[2].GetDouble() && e[0].GetDouble() <= 2048), Is.True);
            }
        }
        Assert.That(Directory.GetFiles(_dir, "*tmp*"), Is.Empty);

        string policy = Path.Combine(_dir, "policy-seed6.safetensors");
        (code, stdout, stderr) = Run("play", "--checkpoint", policy, "--episodes", "5", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        j = LastJson(stdout);
        Assert.That(j.GetProperty("episodes").GetInt32(), Is.EqualTo(5));
        Assert.That(j.GetProperty("env").GetString(), Is.EqualTo("cartpole"));
        Assert.That(j.GetProperty("mean_return").GetDouble(), Is.InRange(j.GetProperty("min_return").GetDouble(), j.GetProperty("max_return").GetDouble()));
        Assert.That(stdout, Does.Contain("mean return").And.Contain("over 5 episodes"));
    }

    /// <summary>The Transformer policy on the memory task: the success rate in the JSON and the attention picture.</summary>
    [Test]
    public void Train_rl_with_the_transformer_draws_its_attention()
    {
        var (code, stdout, stderr) = Run("train", "rl", "--env", "memory", "--policy", "transformer", "--steps", "512", "--context", "8", "--dim", "16", "--heads", "2",
            "--out", _dir, "--json", "--threads", "1");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("success_rate_100").GetDouble(), Is.InRange(0.0, 1.0));
        AssertPng(Path.Combine(_dir, "attention.png"));
        AssertPng(Path.Combine(_dir, "learning_curve.png"));
        (code, stdout, stderr) = Run("play", "--checkpoint", Path.Combine(_dir, "policy-seed1.safetensors"), "--episodes", "3", "--greedy");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("transformer policy on memory").And.Contain("reach the rewarding end"));

        // the MLP next to the Transformer in one learning curve, and a baseline from another environment refused
        string both = Path.Combine(_dir, "both");
        (code, _, stderr) = Run("train", "rl", "--env", "memory", "--policy", "mlp", "--steps", "512", "--baseline", Path.Combine(_dir, "metrics.json"), "--out", both, "--quiet", "--threads", "1");
        Assert.That(code, Is.EqualTo(0), stderr);
        AssertPng(Path.Combine(both, "learning_curve.png"));
        (code, _, stderr) = Run("train", "rl", "--env", "cartpole", "--steps", "512", "--baseline", Path.Combine(_dir, "metrics.json"), "--out", Path.Combine(_dir, "other"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("--baseline").And.Contain("trained on memory").And.Contain("cartpole"));
        Assert.That(Directory.Exists(Path.Combine(_dir, "other")), Is.False, "refused before anything is written");
    }

    [Test]
    public void Inconsistent_options_and_foreign_checkpoints_fail_with_one_line()
    {
        var (code, stdout, err) = Run("train", "rl", "--envs", "3", "--rollout", "5", "--minibatches", "4", "--out", _dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("--minibatches 4").And.Contain("15"));
        Assert.That(Directory.Exists(_dir), Is.False, "a usage error writes nothing");
        (code, _, err) = Run("train", "rl", "--env", "mountaincar");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("mountaincar"));
        (code, _, err) = Run("train", "rl", "--policy", "transformer", "--dim", "30", "--heads", "4");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("--dim 30"));

        Directory.CreateDirectory(_dir);
        string foreign = Path.Combine(_dir, "tensors.safetensors");
        using (var t = Tensor.Zeros([2])) AttnCore.Models.IO.Safetensors.Save(foreign, new Dictionary<string, Tensor> { ["x"] = t });
        (code, stdout, err) = Run("play", "--checkpoint", foreign);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain(foreign).And.Contain("not a PPO policy"));
    }
}
