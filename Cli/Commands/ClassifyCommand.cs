using System.CommandLine;
using System.Globalization;
using AttnCore.Models.Data.Vision;
using AttnCore.Presentation.Vision;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore classify --checkpoint vision.safetensors image.png ...</c>: the top classes of each image with their
/// probabilities, from a model written by <c>train vision</c> (its metadata holds the model, input shape, classes and
/// normalisation). An image must have the model's input size; grey images feed a 1-channel model, colour a 3-channel one.
/// </summary>
public static class ClassifyCommand
{
    /// <summary>Builds <c>classify</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var checkpoint = PathRule.ExistingFile("--checkpoint", "a vision.safetensors written by 'attncore train vision'");
        var top = NumericOption.Int("--top", "classes to print per image", 5, 1, 1000);
        var images = new Argument<string[]>("images") { Description = "PNG or JPEG files", Arity = ArgumentArity.ZeroOrMore };
        images.Validators.Add(r =>
        {
            foreach (var path in r.GetValueOrDefault<string[]>() ?? [])
                if (!File.Exists(path)) { r.AddError($"images: no file at '{path}'"); return; }
        });
        var cmd = common.AddTo(new Command("classify", "Top classes of images with a model from 'train vision'") { checkpoint, top, images });
        cmd.AddRule(r => (r.GetValue(images) ?? []).Length == 0 ? "classify needs at least one image file after the options" : null);
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            bool json = p.GetValue(common.Json);
            var files = p.GetValue(images)!;
            var ck = VisionCheckpoint.Load(p.GetValue(checkpoint)!, device);
            using var model = ck.Model;
            int k = Math.Min(p.GetValue(top), ck.Classes.Length), size = ck.Channels * ck.Height * ck.Width;
            var input = new float[files.Length * size];
            for (int i = 0; i < files.Length; i++)
            {
                var (pixels, _, h, w) = ImageFolder.DecodeOne(File.ReadAllBytes(files[i]), files[i], ck.Channels);
                if (h != ck.Height || w != ck.Width)
                    throw new InvalidDataException($"classify: '{files[i]}' is {w}x{h}; the model ({ck.ModelName}) takes {ck.Width}x{ck.Height} images");
                ImageTransform.Apply(pixels, ck.Channels, h, w, 0, 0, 0, false, ck.Normalization, input.AsSpan(i * size, size));
            }
            float[] probs;
            using (new NoGrad())
            using (var scope = new TensorScope())
                probs = model.Forward(Tensor.FromArray(input, [files.Length, ck.Channels, ck.Height, ck.Width], device)).Softmax(-1).ToArray<float>();
            var results = new List<object>();
            for (int i = 0; i < files.Length; i++)
            {
                var best = Enumerable.Range(0, ck.Classes.Length).OrderByDescending(c => probs[i * ck.Classes.Length + c]).Take(k)
                    .Select(c => (Class: ck.Classes[c], Probability: (double)probs[i * ck.Classes.Length + c])).ToArray();
                if (!json)
                    io.Out.WriteLine($"{files[i]}: " + string.Join(", ", best.Select(b => string.Create(CultureInfo.InvariantCulture, $"{b.Class} {b.Probability:F4}"))));
                results.Add(new { path = files[i], top = best.Select(b => new { @class = b.Class, probability = b.Probability }).ToArray() });
            }
            if (json) io.Json(new { model = ck.ModelName, images = results });
            return 0;
        });
        return cmd;
    }
}
