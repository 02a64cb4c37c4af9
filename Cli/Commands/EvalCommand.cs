using System.CommandLine;
using System.Globalization;
using AttnCore.Models.Data;
using AttnCore.Models.IO;
using AttnCore.Models.Vision;
using AttnCore.Presentation.Vision;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore eval</c>: validation loss of a GPT checkpoint on a text file's last 10%, or the test loss and accuracy
/// of a vision checkpoint (<c>train vision</c>'s vision.safetensors) on its dataset's test split, optionally with flip
/// test-time augmentation. The checkpoint's <c>attncore.model</c> metadata picks which.
/// </summary>
public static class EvalCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var ckpt = PathRule.ExistingFile("--checkpoint", "gpt.safetensors written by 'attncore train gpt', or vision.safetensors written by 'attncore train vision'");
        var data = PathRule.ExistingPath("--data", "GPT: the text file the model was trained on (its last 10% is the validation split); vision: the dataset it was trained on (IDX folder, image folder or .tar/.tar.gz), whose test split is scored");
        var batches = NumericOption.Int("--batches", "GPT: fixed validation batches", 200, 1, 1_000_000);
        var batch = NumericOption.OptionalInt("--batch", "sequences per batch (GPT, default 12) or images per batch (vision, default 128)", 1, NumericOption.MaxSize);
        var limitTest = NumericOption.OptionalInt("--limit-test", "vision: score N test images drawn at random (seeded by --seed, as 'train vision --limit-test' draws them)", 1);
        var testFlip = new Option<bool>("--test-flip") { Description = "vision: flip test-time augmentation (the mean softmax of each test image and its mirror; the unmirrored accuracy is printed too)" };
        var cmd = common.AddTo(new Command("eval", "Validation loss of a GPT checkpoint on --data (its last 10%, fixed batches), or test loss and accuracy of a vision checkpoint on --data's test split")
            { ckpt, data, batches, batch, limitTest, testFlip });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            string path = p.GetValue(ckpt)!;
            string? kind;
            using (var file = new SafetensorsFile(path)) kind = file.Metadata.GetValueOrDefault("attncore.model");
            if (kind == "vision")
                return EvaluateVision(io, path, p.GetValue(data)!, p.GetValue(batch) ?? 128, p.GetValue(limitTest), p.GetValue(common.Seed), p.GetValue(testFlip), p.GetValue(common.Json), device);
            if (p.GetValue(testFlip)) throw new ArgumentException($"eval: --test-flip applies to vision checkpoints; '{path}' is a {kind ?? "GPT"} checkpoint");
            string text = p.GetValue(data)!;
            if (Directory.Exists(text)) throw new ArgumentException($"eval: --data '{text}' is a folder; a GPT checkpoint is evaluated on the text file it was trained on");
            var (model, vocab) = GptCheckpoint.Load(path, device);
            using (model)
            {
                var ds = CharDataset.FromFile(text);
                if (!ds.Vocabulary.SequenceEqual(vocab)) throw new ArgumentException("eval: the text's characters differ from the checkpoint's vocabulary");
                var g = new Generator(777);
                int nb = p.GetValue(batches), b = p.GetValue(batch) ?? 12;
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

    // The test split of dataPath scored by the vision checkpoint at path (VisionEvaluation).
    private static int EvaluateVision(CliIO io, string path, string dataPath, int batch, int? limit, ulong seed, bool mirror, bool json, Device device)
    {
        var loaded = VisionCheckpoint.Load(path, device);
        using var model = loaded.Model;
        var (_, test) = ImageFolder.LoadSplits(dataPath);
        if (limit is int n) test = test.Sample(n, seed + 4);   // train vision's draw for the same seed
        if (test.Channels != loaded.Channels || test.Height != loaded.Height || test.Width != loaded.Width)
            throw new ArgumentException($"eval: '{dataPath}' has test images of [{test.Channels},{test.Height},{test.Width}], the checkpoint '{path}' takes [{loaded.Channels},{loaded.Height},{loaded.Width}]");
        if (!test.ClassNames.SequenceEqual(loaded.Classes))
            throw new ArgumentException($"eval: '{dataPath}' has classes [{string.Join(", ", test.ClassNames)}], the checkpoint '{path}' was trained on [{string.Join(", ", loaded.Classes)}]");
        var result = VisionEvaluation.Evaluate(model, test, batch, loaded.Normalization, device, mirror);
        double accuracy = result.Confusion.Accuracy, unflipped = result.PlainConfusion.Accuracy;
        io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{loaded.ModelName}: test loss {result.Loss:F4}  test accuracy {accuracy:F4} over {test.Count} images{(mirror ? $" with flip test-time augmentation ({unflipped:F4} without)" : "")}"));
        if (json) io.Json(new { model = loaded.ModelName, test_loss = result.Loss, test_accuracy = accuracy, test_flip = mirror, unflipped_test_accuracy = mirror ? unflipped : (double?)null, images = test.Count });
        return 0;
    }
}
