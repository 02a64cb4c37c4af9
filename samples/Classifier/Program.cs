// A two-layer perceptron learns Fashion-MNIST (28x28 grayscale clothes, 10 classes), is saved to a safetensors
// file, loaded into a fresh model and checked to give the same test accuracy.
//   dotnet run -- [folder with the four IDX .gz files] [steps] [output .safetensors]
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using AttnCore;
using AttnCore.Models.IO;
using AttnCore.Models.Nn;
using AttnCore.Optim;

string folder = args.Length > 0 ? args[0] : "/usr/share/datasets/fashion-mnist";   // Debian: apt-get install dataset-fashion-mnist
int steps = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 600;
string saveTo = args.Length > 2 ? args[2] : "classifier.safetensors";
const int Pixels = Mlp.Pixels, Batch = 64;

var (trainImages, trainLabels) = (ReadIdx(folder, "train-images-idx3-ubyte.gz", 0x803), ReadIdx(folder, "train-labels-idx1-ubyte.gz", 0x801));
var (testImages, testLabels) = (ReadIdx(folder, "t10k-images-idx3-ubyte.gz", 0x803), ReadIdx(folder, "t10k-labels-idx1-ubyte.gz", 0x801));

using var model = new Mlp(new Generator(42));
using var optimizer = new AdamW(model.Parameters(), learningRate: 2e-3);
var random = new Random(7);
var x = new float[Batch * Pixels];
var y = new long[Batch];
for (int step = 1; step <= steps; step++)
{
    using var scope = new TensorScope();   // every tensor of this step is freed at the end of it
    for (int b = 0; b < Batch; b++)
    {
        int n = random.Next(trainLabels.Length);
        for (int p = 0; p < Pixels; p++) x[b * Pixels + p] = trainImages[n * Pixels + p] / 255f;
        y[b] = trainLabels[n];
    }
    var loss = model.Forward(Tensor.FromArray(x, [Batch, Pixels])).CrossEntropy(Tensor.FromArray(y, [Batch]));
    optimizer.ZeroGrad();
    loss.Backward();
    optimizer.Step();
    if (step % 200 == 0 || step == steps) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {step}: loss {loss.Item():F4}"));
}

double accuracy = Accuracy(model);
Safetensors.Save(saveTo, model);
using var reloaded = new Mlp(new Generator(0));
Safetensors.LoadInto(saveTo, reloaded);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy {accuracy:F4}, reloaded from {saveTo}: {Accuracy(reloaded):F4}"));

double Accuracy(Mlp net)
{
    using var noGrad = new NoGrad();
    int correct = 0;
    for (int start = 0; start < testLabels.Length; start += 1000)
    {
        using var scope = new TensorScope();
        int count = Math.Min(1000, testLabels.Length - start);
        var images = testImages.AsSpan(start * Pixels, count * Pixels).ToArray().Select(v => v / 255f).ToArray();
        long[] predicted = net.Forward(Tensor.FromArray(images, [count, Pixels])).ArgMax(-1).ToArray<long>();
        for (int i = 0; i < count; i++) if (predicted[i] == testLabels[start + i]) correct++;
    }
    return (double)correct / testLabels.Length;
}

// IDX: a big-endian int32 magic, one int32 per dimension, then the bytes.
static byte[] ReadIdx(string folder, string file, int magic)
{
    using var gz = new GZipStream(File.OpenRead(Path.Combine(folder, file)), CompressionMode.Decompress);
    using var all = new MemoryStream();
    gz.CopyTo(all);
    var bytes = all.GetBuffer().AsSpan(0, (int)all.Length);
    if (BinaryPrimitives.ReadInt32BigEndian(bytes) != magic) throw new InvalidDataException($"{file}: not an IDX file with magic 0x{magic:X}");
    int header = 4 + 4 * (magic & 0xFF);
    return bytes[header..].ToArray();
}

sealed class Mlp : Module<Tensor, Tensor>
{
    public const int Pixels = 28 * 28, Classes = 10;
    private readonly Linear _hidden, _output;

    public Mlp(Generator g)
    {
        _hidden = Child("hidden", new Linear(Pixels, 256, generator: g));
        _output = Child("output", new Linear(256, Classes, generator: g));
    }

    public override Tensor Forward(Tensor x)
    {
        using var h = _hidden.Forward(x);
        using var a = h.Relu();
        return _output.Forward(a);
    }
}
