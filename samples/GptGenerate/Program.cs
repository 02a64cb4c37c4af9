// Loads a GPT checkpoint written by `attncore train gpt` and continues a prompt.
//   dotnet run -- <gpt.safetensors> [prompt] [tokens] [seed]
// The file holds the weights plus two metadata entries: the model's config (JSON) and its vocabulary
// (the characters, in token order).
using System.Globalization;
using System.Text.Json;
using AttnCore;
using AttnCore.Models.IO;
using AttnCore.Models.Transformers;

if (args.Length == 0)
{
    Console.Error.WriteLine("usage: GptGenerate <gpt.safetensors> [prompt] [tokens] [seed]");
    return 2;
}
string path = args[0];
string prompt = args.Length > 1 ? args[1] : "\n";
int tokens = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 200;
ulong seed = args.Length > 3 ? ulong.Parse(args[3], CultureInfo.InvariantCulture) : 0;

var (weights, metadata) = Safetensors.Load(path);
var config = JsonSerializer.Deserialize<GptConfig>(metadata["attncore.config"])
    ?? throw new InvalidDataException($"{path}: the config metadata is empty");
string vocabulary = metadata["attncore.vocab"];
using var model = new Gpt(config);
model.LoadStateDict(weights);
foreach (var w in weights.Values) w.Dispose();
model.Eval();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"GPT: {config.Layers} layers, {config.Heads} heads, width {config.Dim}, context {config.BlockSize}, {vocabulary.Length} characters, {model.ParameterCount()} parameters"));

var ids = prompt.Select(c => vocabulary.IndexOf(c) is int i and >= 0 ? (long)i
    : throw new ArgumentException($"the prompt character '{c}' is not in the model's vocabulary")).ToArray();
long[] generated = model.Generate(ids, tokens, temperature: 0.8, topK: null, seed: seed);
Console.WriteLine("---");
Console.WriteLine(prompt + new string(generated.Select(t => vocabulary[(int)t]).ToArray()));
return 0;
