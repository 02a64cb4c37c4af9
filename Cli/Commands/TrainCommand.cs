using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Models.Data;
using AttnCore.Models.IO;
using AttnCore.Models.Training;
using AttnCore.Models.Transformers;
using AttnCore.Optim;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore train gpt</c>: a character-level GPT, with nanoGPT's shakespeare-char CPU settings as defaults.</summary>
public static class TrainCommand
{
    /// <summary>Builds <c>train</c> and its sub-commands.</summary>
    public static Command Create(CliIO io)
    {
        var train = new Command("train", "Train a model");
        train.Subcommands.Add(Gpt(io));
        train.Subcommands.Add(TrainVisionCommand.Create(io));
        train.Subcommands.Add(RecommendCommand.Train(io));
        train.Subcommands.Add(TrainRlCommand.Create(io));
        train.Subcommands.Add(TrainForecastCommand.Create(io));
        return train;
    }

    private static Command Gpt(CliIO commandIO)
    {
        var common = new CommonOptions();
        var distributed = new DistributedOptions();
        var data = PathRule.ExistingFile("--data", "a UTF-8 text file (e.g. tinyshakespeare input.txt)");
        var steps = NumericOption.Int("--steps", "training iterations", 2000, 1);
        var batch = NumericOption.Int("--batch", "sequences per step", 12, 1, NumericOption.MaxSize);
        var block = NumericOption.Int("--block", "context length in characters", 64, 1, NumericOption.MaxSize);
        var layers = NumericOption.Int("--layers", "Transformer blocks", 4, 1, 1024);
        var heads = NumericOption.Int("--heads", "attention heads per block, a divisor of --dim", 4, 1, 1024);
        var dim = NumericOption.Int("--dim", "embedding width (channels)", 128, 1, NumericOption.MaxSize);
        var dropout = NumericOption.Number("--dropout", "dropout probability", 0.0, 0, 1, maxExclusive: true);
        var lr = NumericOption.Number("--lr", "peak learning rate (AdamW)", 1e-3, 0, minExclusive: true);
        var minLr = NumericOption.Number("--min-lr", "final learning rate of the cosine decay, at most --lr", 1e-4, 0);
        var warmup = NumericOption.Int("--warmup", "linear warm-up steps (more than --steps: warms up over the whole run, with a note)", 100, 0);
        var wd = NumericOption.Number("--weight-decay", "AdamW weight decay on matrices", 0.1, 0);
        var beta2 = NumericOption.Number("--beta2", "AdamW beta2", 0.99, 0, 1, maxExclusive: true);
        var clip = NumericOption.Number("--clip", "gradient-norm clip, 0 = off", 1.0, 0);
        var evalEvery = NumericOption.Int("--eval-every", "steps between validation estimates", 250, 1);
        var evalBatches = NumericOption.Int("--eval-batches", "fixed validation batches for the reported val loss", 200, 1, 1_000_000);
        var checkpointEvery = NumericOption.OptionalInt("--checkpoint-every", "steps between checkpoints in --out (default: --eval-every)", 1);
        var onNonFinite = new Option<string>("--on-nonfinite")
        {
            Description = "a step whose loss or gradient norm is NaN/inf: stop (keep the last checkpoint, exit 1) or skip it (no update, counted; stops after --max-skips in a row)",
            DefaultValueFactory = _ => "stop",
        }.AcceptOnlyFromAmong("stop", "skip");
        var maxSkips = NumericOption.Int("--max-skips", "with --on-nonfinite skip: stop after this many skipped steps in a row", 10, 1);
        var output = PathRule.OutputFolder("--out", "run folder: gpt.safetensors, checkpoint.bin, metrics.json, loss.png", Path.Combine("runs", "gpt"));
        var resume = new Option<bool>("--resume") { Description = "continue from the checkpoint in --out" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar" };
        var cmd = distributed.AddTo(common.AddTo(new Command("gpt", "Character-level GPT (defaults: nanoGPT's shakespeare-char CPU run)")
            { data, steps, batch, block, layers, heads, dim, dropout, lr, minLr, warmup, wd, beta2, clip, evalEvery, evalBatches, checkpointEvery, onNonFinite, maxSkips, output, resume, quiet }));
        cmd.AddRule(r =>
        {
            int d = r.GetValue(dim), h = r.GetValue(heads), b = r.GetValue(batch), t = r.GetValue(block);
            if (d % h != 0) return $"--dim {d} must be a multiple of --heads {h} (each head gets --dim / --heads channels)";
            if (r.GetValue(minLr) > r.GetValue(lr)) return string.Create(CultureInfo.InvariantCulture, $"--min-lr {r.GetValue(minLr)} must not exceed --lr {r.GetValue(lr)}");
            if (Math.Max((long)b * t * 4 * d, Math.Max((long)b * h * t * t, 4L * d * d)) > Array.MaxLength)
                return $"--batch {b}, --block {t}, --heads {h} and --dim {d} make a tensor (activations b x t x 4dim, attention b x heads x t x t, or the MLP's 4dim x dim) of more than {Array.MaxLength:N0} elements";
            return null;
        });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var run = distributed.Begin(p, commandIO, "train gpt");
            var io = run.IO;
            bool json = p.GetValue(common.Json);
            string dataPath = p.GetValue(data)!;
            var ds = CharDataset.FromFile(dataPath);
            var cfg = new GptConfig(ds.Vocabulary.Length, p.GetValue(block), p.GetValue(layers), p.GetValue(heads), p.GetValue(dim), p.GetValue(dropout));
            int b = p.GetValue(batch), n = p.GetValue(steps), vb = p.GetValue(evalBatches);
            int shortest = Math.Min(ds.Train.Length, ds.Validation.Length);
            if (shortest <= cfg.BlockSize)
                throw new ArgumentException($"train gpt: --block {cfg.BlockSize} needs more than {cfg.BlockSize} characters in both splits of --data '{dataPath}' (90% train, 10% validation); its {(ds.Train.Length < ds.Validation.Length ? "train" : "validation")} split has {shortest}");
            string outDir = p.GetValue(output)!;
            PathRule.PrepareOutputFolder("train gpt", "--out", outDir);
            // nanoGPT lets a warm-up outlast the run (the rate then never peaks); the schedule here needs warmup <= steps, so
            // a longer warm-up becomes the whole run, which is the same rate ramp cut at the last step.
            int warm = p.GetValue(warmup);
            if (warm > n)
            {
                io.Err.WriteLine($"attncore: note: --warmup {warm} is more than --steps {n}; warming up over all {n} steps");
                warm = n;
            }
            ulong seed = p.GetValue(common.Seed);
            using var model = new Gpt(cfg, new Generator(seed), device);
            run.Attach(model, b);
            // As nanoGPT: weight decay on the matrices (linear weights, embeddings), none on gains and biases.
            var decay = model.Parameters().Where(t => t.Rank >= 2);
            var noDecay = model.Parameters().Where(t => t.Rank < 2);
            using var opt = new AdamW([new ParamGroup(decay), new ParamGroup(noDecay, weightDecay: 0)], p.GetValue(lr), 0.9, p.GetValue(beta2), 1e-8, p.GetValue(wd));
            var schedule = new WarmupCosine(opt, warm, n, p.GetValue(minLr) / p.GetValue(lr));
            var dataGen = new Generator(seed + 1);
            if (!json) io.Out.WriteLine($"GPT: {cfg.Layers} layers, {cfg.Heads} heads, {cfg.Dim} channels, block {cfg.BlockSize}, vocab {cfg.Vocab}, {model.ParameterCount():N0} parameters; {ds.Train.Length:N0} train / {ds.Validation.Length:N0} val characters");
            double ValLoss(int batches, ulong valSeed)
            {
                var g = new Generator(valSeed);
                double sum = 0;
                for (int i = 0; i < batches; i++)
                {
                    using var scope = new TensorScope();
                    // Every rank draws every batch (the generator stays in step) and evaluates its share of them.
                    var (x, y) = ds.Batch(ds.Validation, b, cfg.BlockSize, g, device);
                    if (run.Evaluates(i)) sum += model.Loss(x, y).Item();
                }
                return run.SumOverRanks(sum) / batches;
            }
            var trainer = new Trainer(model, opt, schedule, dataGen, new TrainerOptions
            {
                Steps = n, EvalEvery = p.GetValue(evalEvery), CheckpointEvery = p.GetValue(checkpointEvery) ?? p.GetValue(evalEvery),
                RunDirectory = outDir, Resume = p.GetValue(resume), ClipNorm = p.GetValue(clip),
                Callbacks = run.CallbacksFor(TrainingCallbacks.For(io, showProgress: !json && !p.GetValue(quiet))), DataParallel = run.DataParallel, TokensPerStep = (long)b * cfg.BlockSize,
                OnNonFinite = p.GetValue(onNonFinite) == "skip" ? NonFinitePolicy.Skip : NonFinitePolicy.Stop, MaxConsecutiveSkips = p.GetValue(maxSkips),
            });
            var result = trainer.Run(
                () => { var (x, y) = ds.Batch(ds.Train, b, cfg.BlockSize, dataGen, device); return model.Loss(run.ShardOf(x), run.ShardOf(y)); },
                () => ValLoss(Math.Min(20, vb), 12345));
            double val;
            model.Eval();
            using (new NoGrad()) val = ValLoss(vb, 777);
            string ckpt = Path.Combine(outDir, "gpt.safetensors");
            if (run.IsPrimary) Safetensors.Save(ckpt, model, new Dictionary<string, string>
            {
                ["attncore.model"] = "gpt",
                ["attncore.config"] = JsonSerializer.Serialize(cfg),
                ["attncore.vocab"] = new string(ds.Vocabulary),
                ["attncore.steps"] = n.ToString(CultureInfo.InvariantCulture),
            });
            string skippedNote = result.SkippedSteps > 0 ? $"  ({result.SkippedSteps} steps skipped: non-finite loss)" : "";
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"steps {n}  train loss {result.TrainLoss:F4}  val loss {val:F4} ({vb} batches of {b}x{cfg.BlockSize})  {result.WallSeconds:F1} s{skippedNote}"));
            io.Out.WriteLine($"wrote {ckpt}, {Path.Combine(outDir, "loss.png")}, {Path.Combine(outDir, "metrics.json")}");
            if (json) io.Json(new { model = "gpt", train_loss = result.TrainLoss, val_loss = val, steps = n, skipped_steps = result.SkippedSteps, wall_s = result.WallSeconds, parameters = model.ParameterCount(), ranks = run.Size });
            run.Complete();
            return 0;
        });
        return cmd;
    }
}
