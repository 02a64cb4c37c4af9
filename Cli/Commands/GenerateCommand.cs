using System.CommandLine;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore generate</c>: sample text from a trained GPT checkpoint.</summary>
public static class GenerateCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var ckpt = PathRule.ExistingFile("--checkpoint", "gpt.safetensors written by 'attncore train gpt'");
        var prompt = new Option<string>("--prompt") { Description = "text to continue (default: a newline)", DefaultValueFactory = _ => "\n" };
        prompt.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is "") r.AddError("--prompt is empty: give at least one character to continue");
        });
        var tokens = NumericOption.Int("--tokens", "characters to generate", 500, 0, 10_000_000);
        var temperature = NumericOption.Number("--temperature", "sampling temperature (lower: more conservative)", 0.8, 0, minExclusive: true);
        var topK = NumericOption.OptionalInt("--top-k", "sample among the k most likely characters", 1);
        var cmd = common.AddTo(new Command("generate", "Sample text from a GPT checkpoint") { ckpt, prompt, tokens, temperature, topK });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            var (model, vocab) = GptCheckpoint.Load(p.GetValue(ckpt)!, device);
            using (model)
            {
                var index = vocab.Select((c, i) => (c, i)).ToDictionary(x => x.c, x => (long)x.i);
                string text = p.GetValue(prompt)!;
                var ids = text.Select(c => index.TryGetValue(c, out var i) ? i : throw new ArgumentException($"generate: the prompt character '{c}' is not in the model's vocabulary")).ToArray();
                int n = p.GetValue(tokens);
                double temp = p.GetValue(temperature);
                var sw = System.Diagnostics.Stopwatch.StartNew();
                var output = model.Generate(ids, n, temp, p.GetValue(topK), p.GetValue(common.Seed), device);
                string generated = new(output.Select(t => vocab[t]).ToArray());
                io.Out.WriteLine(text + generated);
                if (p.GetValue(common.Json)) io.Json(new { prompt = text, text = generated, tokens = n, wall_s = sw.Elapsed.TotalSeconds });
            }
            return 0;
        });
        return cmd;
    }
}
