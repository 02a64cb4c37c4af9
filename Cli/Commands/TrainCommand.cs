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
        return train;
    }

    private static Command Gpt(CliIO io)
    {
        var common = new CommonOptions();
        var data = new Option<string>("--data") { Description = "a UTF-8 text file (e.g. tinyshakespeare input.txt)", Required = true };
        var steps = new Option<int>("--steps") { Description = "training iterations", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { Description = "sequences per step", DefaultValueFactory = _ => 12 };
        var block = new Option<int>("--block") { Description = "context length in characters", DefaultValueFactory = _ => 64 };
        var layers = new Option<int>("--layers") { Description = "Transformer blocks", DefaultValueFactory = _ => 4 };
        var heads = new Option<int>("--heads") { Description = "attention heads per block", DefaultValueFactory = _ => 4 };
        var dim = new Option<int>("--dim") { Description = "embedding width (channels)", DefaultValueFactory = _ => 128 };
        var dropout = new Option<double>("--dropout") { Description = "dropout probability", DefaultValueFactory = _ => 0.0 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 1e-3 };
        var minLr = new Option<double>("--min-lr") { Description = "final learning rate of the cosine decay", DefaultValueFactory = _ => 1e-4 };
        var warmup = new Option<int>("--warmup") { Description = "linear warm-up steps", DefaultValueFactory = _ => 100 };
        var wd = new Option<double>("--weight-decay") { Description = "AdamW weight decay on matrices", DefaultValueFactory = _ => 0.1 };
        var beta2 = new Option<double>("--beta2") { Description = "AdamW beta2", DefaultValueFactory = _ => 0.99 };
        var clip = new Option<double>("--clip") { Description = "gradient-norm clip", DefaultValueFactory = _ => 1.0 };
        var evalEvery = new Option<int>("--eval-every") { Description = "steps between validation estimates", DefaultValueFactory = _ => 250 };
        var evalBatches = new Option<int>("--eval-batches") { Description = "fixed validation batches for the reported val loss", DefaultValueFactory = _ => 200 };
        var output = new Option<string>("--out") { Description = "run folder: gpt.safetensors, metrics.json, loss.png", DefaultValueFactory = _ => Path.Combine("runs", "gpt") };
        var resume = new Option<bool>("--resume") { Description = "continue from the checkpoint in --out" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar" };
        var cmd = common.AddTo(new Command("gpt", "Character-level GPT (defaults: nanoGPT's shakespeare-char CPU run)")
            { data, steps, batch, block, layers, heads, dim, dropout, lr, minLr, warmup, wd, beta2, clip, evalEvery, evalBatches, output, resume, quiet });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            bool json = p.GetValue(common.Json);
            var ds = CharDataset.FromFile(p.GetValue(data)!);
            var cfg = new GptConfig(ds.Vocabulary.Length, p.GetValue(block), p.GetValue(layers), p.GetValue(heads), p.GetValue(dim), p.GetValue(dropout));
            int b = p.GetValue(batch), n = p.GetValue(steps), vb = p.GetValue(evalBatches);
            if (b < 1 || n < 1 || vb < 1) throw new ArgumentException("train gpt: --batch, --steps and --eval-batches must be positive");
            ulong seed = p.GetValue(common.Seed);
            using var model = new Gpt(cfg, new Generator(seed), device);
            // As nanoGPT: weight decay on the matrices (linear weights, embeddings), none on gains and biases.
            var decay = model.Parameters().Where(t => t.Rank >= 2);
            var noDecay = model.Parameters().Where(t => t.Rank < 2);
            using var opt = new AdamW([new ParamGroup(decay), new ParamGroup(noDecay, weightDecay: 0)], p.GetValue(lr), 0.9, p.GetValue(beta2), 1e-8, p.GetValue(wd));
            var schedule = new WarmupCosine(opt, p.GetValue(warmup), n, p.GetValue(minLr) / p.GetValue(lr));
            var dataGen = new Generator(seed + 1);
            string outDir = p.GetValue(output)!;
            if (!json) io.Out.WriteLine($"GPT: {cfg.Layers} layers, {cfg.Heads} heads, {cfg.Dim} channels, block {cfg.BlockSize}, vocab {cfg.Vocab}, {model.ParameterCount():N0} parameters; {ds.Train.Length:N0} train / {ds.Validation.Length:N0} val characters");
            double ValLoss(int batches, ulong valSeed)
            {
                var g = new Generator(valSeed);
                double sum = 0;
                for (int i = 0; i < batches; i++)
                {
                    using var scope = new TensorScope();
                    var (x, y) = ds.Batch(ds.Validation, b, cfg.BlockSize, g, device);
                    sum += model.Loss(x, y).Item();
                }
                return sum / batches;
            }
            var trainer = new Trainer(model, opt, schedule, dataGen, new TrainerOptions
            {
                Steps = n, EvalEvery = p.GetValue(evalEvery), RunDirectory = outDir, Resume = p.GetValue(resume), ClipNorm = p.GetValue(clip),
                ShowProgress = !json && !p.GetValue(quiet), TokensPerStep = (long)b * cfg.BlockSize,
            });
            var result = trainer.Run(
                () => { var (x, y) = ds.Batch(ds.Train, b, cfg.BlockSize, dataGen, device); return model.Loss(x, y); },
                () => ValLoss(Math.Min(20, vb), 12345));
            double val;
            model.Eval();
            using (new NoGrad()) val = ValLoss(vb, 777);
            string ckpt = Path.Combine(outDir, "gpt.safetensors");
            Safetensors.Save(ckpt, model, new Dictionary<string, string>
            {
                ["attncore.model"] = "gpt",
                ["attncore.config"] = JsonSerializer.Serialize(cfg),
                ["attncore.vocab"] = new string(ds.Vocabulary),
                ["attncore.steps"] = n.ToString(CultureInfo.InvariantCulture),
            });
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"steps {n}  train loss {result.TrainLoss:F4}  val loss {val:F4} ({vb} batches of {b}x{cfg.BlockSize})  {result.WallSeconds:F1} s"));
            io.Out.WriteLine($"wrote {ckpt}, {Path.Combine(outDir, "loss.png")}, {Path.Combine(outDir, "metrics.json")}");
            if (json) io.Json(new { model = "gpt", train_loss = result.TrainLoss, val_loss = val, steps = n, wall_s = result.WallSeconds, parameters = model.ParameterCount() });
            return 0;
        });
        return cmd;
    }
}
