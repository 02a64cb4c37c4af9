using System.CommandLine;
using System.Globalization;
using AttnCore.Models.Data;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore eval</c>: validation loss of a GPT checkpoint on a text file's last 10%.</summary>
public static class EvalCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var ckpt = PathRule.ExistingFile("--checkpoint", "gpt.safetensors written by 'attncore train gpt'");
        var data = PathRule.ExistingFile("--data", "the text file the model was trained on (its last 10% is the validation split)");
        var batches = NumericOption.Int("--batches", "fixed validation batches", 200, 1, 1_000_000);
        var batch = NumericOption.Int("--batch", "sequences per batch", 12, 1, NumericOption.MaxSize);
        var cmd = common.AddTo(new Command("eval", "Validation loss of a GPT checkpoint on --data (its last 10%, fixed batches)") { ckpt, data, batches, batch });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            var (model, vocab) = GptCheckpoint.Load(p.GetValue(ckpt)!, device);
            using (model)
            {
                var ds = CharDataset.FromFile(p.GetValue(data)!);
                if (!ds.Vocabulary.SequenceEqual(vocab)) throw new ArgumentException("eval: the text's characters differ from the checkpoint's vocabulary");
                var g = new Generator(777);
                int nb = p.GetValue(batches), b = p.GetValue(batch);
                double sum = 0;
                using (new InferenceMode())
                    for (int i = 0; i < nb; i++)
                    {
                        using var scope = new TensorScope();
                        var (x, y) = ds.Batch(ds.Validation, b, model.Config.BlockSize, g, device);
                        sum += model.Loss(x, y).Item();
                    }
                double val = sum / nb;
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"val loss {val:F4} over {nb} batches of {b}x{model.Config.BlockSize}"));
                if (p.GetValue(common.Json)) io.Json(new { model = "gpt", val_loss = val, batches = nb });
            }
            return 0;
        });
        return cmd;
    }
}
