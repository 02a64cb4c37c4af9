using System.CommandLine;
using System.Globalization;
using AttnCore.Models.Tasks;
using AttnCore.Presentation;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore demo</c>: the embedded default job (an encoder-decoder Transformer learning to reverse digit strings).</summary>
public static class DemoCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var steps = NumericOption.Int("--steps", "training steps", 600, 1);
        var output = PathRule.OutputFolder("--out", "run folder for attention.png, loss.png, metrics.json", Path.Combine("runs", "demo"));
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar" };
        var cmd = common.AddTo(new Command("demo", "Train a Transformer to reverse digit strings (no download), print examples, draw its attention") { steps, output, quiet });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            bool json = p.GetValue(common.Json);
            int n = p.GetValue(steps);
            string outDir = p.GetValue(output)!;
            PathRule.PrepareOutputFolder("demo", "--out", outDir);
            var opts = new DigitReversalDemo.Options(Steps: n, Seed: p.GetValue(common.Seed), RunDirectory: outDir,
                Callbacks: TrainingCallbacks.For(io, showProgress: !p.GetValue(quiet) && !json), Device: device);
            var r = DigitReversalDemo.Run(opts, msg => io.Out.WriteLine(msg));
            Plots.AttentionMap(r.Attention.Weights, r.Attention.QueryTokens, r.Attention.KeyTokens, r.Attention.Title, Path.Combine(r.RunDirectory, "attention.png"));
            io.Out.WriteLine();
            io.Out.WriteLine("held-out examples (source -> expected | predicted):");
            foreach (var (src, exp, pred) in r.Examples)
                io.Out.WriteLine($"  {src,-12} -> {exp,-12} | {pred,-12} {(exp == pred ? "ok" : "WRONG")}");
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"exact match on held-out strings: {r.ExactMatch:P1}   final loss {r.FinalLoss:F4}   {r.WallSeconds:F1} s"));
            io.Out.WriteLine($"wrote {Path.Combine(r.RunDirectory, "attention.png")}, {Path.Combine(r.RunDirectory, "loss.png")}, {Path.Combine(r.RunDirectory, "metrics.json")}");
            if (json) io.Json(new { demo = "digit-reversal-transformer", exact_match = r.ExactMatch, final_loss = r.FinalLoss, steps = r.Steps, wall_s = r.WallSeconds, device = device.ToString() });
            return 0;
        });
        return cmd;
    }
}
