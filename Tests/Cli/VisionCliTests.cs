using System.Text.Json;
using AttnCore.Models.Data.Vision;
using AttnCore.Tests.Models.Vision;
using NUnit.Framework;
using SkiaSharp;

namespace AttnCore.Tests.Cli;

/// <summary>
/// <c>train vision</c> on real Fashion-MNIST cut to a few hundred images (seconds), then <c>classify</c> with the model it
/// wrote: the --json contract, the files of the run, the epoch table agreeing with the reported accuracy, and errors.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class VisionCliTests
{
    string _dir = "";

    [SetUp]
    public void MakeFolder() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-vision-cli-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, true);

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static JsonElement LastJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;

    static void WriteGreyPng(string path, ReadOnlySpan<byte> pixels, int w, int h)
    {
        using var bitmap = new SKBitmap(w, h, SKColorType.Gray8, SKAlphaType.Opaque);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) { byte v = pixels[y * w + x]; bitmap.SetPixel(x, y, new SKColor(v, v, v)); }
        using var png = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, png.ToArray());
    }

    static void AssertPng(string path) =>
        Assert.That(File.ReadAllBytes(path).Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }), path);

    [Test]
    public void Train_vision_with_test_flip_reports_both_accuracies()
    {
        VisionTestData.RequireFashionMnist();
        string run = Path.Combine(_dir, "flip");
        var (code, stdout, stderr) = Run("train", "vision", "--data", VisionTestData.FashionMnist, "--model", "resnet20", "--epochs", "1",
            "--batch", "32", "--limit-train", "64", "--limit-test", "40", "--pictures", "0", "--test-flip", "--out", run, "--json", "--threads", "2");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("test_flip").GetBoolean(), Is.True);
        double flipped = j.GetProperty("test_accuracy").GetDouble(), unflipped = j.GetProperty("unflipped_test_accuracy").GetDouble();
        foreach (double a in new[] { flipped, unflipped }) Assert.That(a * 40, Is.EqualTo(Math.Round(a * 40)).Within(1e-9), "a count of the 40 test images");
        Assert.That(stdout, Does.Contain("test accuracy without the mirrored images " + unflipped.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)));
        using var epochs = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "epochs.json")));
        var row = epochs.RootElement.EnumerateArray().Single();
        Assert.That((row.GetProperty("TestAccuracy").GetDouble(), row.GetProperty("UnflippedTestAccuracy").GetDouble()), Is.EqualTo((flipped, unflipped)));

        // eval, on the 40 test images the run drew (same seed, same batch), gives the run's figures with and without the mirror.
        string model = Path.Combine(run, "vision.safetensors");
        string[] sameImages = ["--data", VisionTestData.FashionMnist, "--limit-test", "40", "--batch", "32", "--json"];
        (code, stdout, stderr) = Run(["eval", "--checkpoint", model, "--test-flip", .. sameImages]);
        Assert.That(code, Is.EqualTo(0), stderr);
        var e = LastJson(stdout);
        Assert.That((e.GetProperty("model").GetString(), e.GetProperty("images").GetInt32(), e.GetProperty("test_flip").GetBoolean()), Is.EqualTo(("resnet20", 40, true)));
        Assert.That((e.GetProperty("test_accuracy").GetDouble(), e.GetProperty("unflipped_test_accuracy").GetDouble()), Is.EqualTo((flipped, unflipped)));
        Assert.That(e.GetProperty("test_loss").GetDouble(), Is.EqualTo(row.GetProperty("TestLoss").GetDouble()).Within(1e-12));
        (code, stdout, stderr) = Run(["eval", "--checkpoint", model, .. sameImages]);
        Assert.That(code, Is.EqualTo(0), stderr);
        e = LastJson(stdout);
        Assert.That(e.GetProperty("test_accuracy").GetDouble(), Is.EqualTo(unflipped), "without --test-flip: the unmirrored accuracy");
        Assert.That(e.GetProperty("unflipped_test_accuracy").ValueKind, Is.EqualTo(JsonValueKind.Null));

        // A dataset of other classes names both lists.
        string other = Path.Combine(_dir, "other");
        foreach (var split in new[] { "train", "test" })
            foreach (var cls in new[] { "cat", "dog" })
            {
                Directory.CreateDirectory(Path.Combine(other, split, cls));
                WriteGreyPng(Path.Combine(other, split, cls, "0.png"), new byte[28 * 28], 28, 28);
            }
        (code, _, stderr) = Run("eval", "--checkpoint", model, "--data", other);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain(other).And.Contain("cat, dog").And.Contain("T-shirt/top"));
    }

    [Test]
    public void Train_vision_on_fashion_mnist_writes_its_run_and_classify_reads_the_model()
    {
        VisionTestData.RequireFashionMnist();
        string run = Path.Combine(_dir, "run");
        var (code, stdout, stderr) = Run("train", "vision", "--data", VisionTestData.FashionMnist, "--model", "resnet20-cbam", "--epochs", "2",
            "--batch", "32", "--limit-train", "64", "--limit-test", "40", "--pictures", "2", "--out", run, "--json", "--threads", "2");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("model").GetString(), Is.EqualTo("resnet20-cbam"));
        Assert.That(j.GetProperty("epochs").GetInt32(), Is.EqualTo(2));
        Assert.That(j.GetProperty("steps").GetInt32(), Is.EqualTo(4), "2 epochs of 64/32 steps");
        Assert.That(j.GetProperty("wall_s").GetDouble(), Is.GreaterThan(0));
        double accuracy = j.GetProperty("test_accuracy").GetDouble();
        Assert.That(accuracy * 40, Is.EqualTo(Math.Round(accuracy * 40)).Within(1e-9), "a count of the 40 test images");

        using (var epochs = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "epochs.json"))))
        {
            var rows = epochs.RootElement.EnumerateArray().ToArray();
            Assert.That(rows.Select(r => r.GetProperty("Epoch").GetInt32()), Is.EqualTo(new[] { 1, 2 }));
            Assert.That(rows[^1].GetProperty("TestAccuracy").GetDouble(), Is.EqualTo(accuracy));
            Assert.That(rows.Select(r => r.GetProperty("TrainLoss").GetDouble()), Is.All.GreaterThan(0).And.All.LessThan(10));
            Assert.That(rows.Select(r => r.TryGetProperty("UnflippedTestAccuracy", out _)), Is.All.False, "no flip evaluation, no unflipped accuracy");
        }
        Assert.That(j.GetProperty("test_flip").GetBoolean(), Is.False);
        foreach (var png in new[] { "loss.png", "curves.png", "confusion.png", "gradcam.png", "attention.png" }) AssertPng(Path.Combine(run, png));
        Assert.That(Directory.GetFiles(run, "*tmp*"), Is.Empty);

        // classify: the first two test images as PNG files, all ten classes.
        var (_, test) = Idx.Read(Path.Combine(VisionTestData.FashionMnist, "t10k-images-idx3-ubyte.gz"));
        string[] images = [Path.Combine(_dir, "a.png"), Path.Combine(_dir, "b.png")];
        for (int i = 0; i < 2; i++) WriteGreyPng(images[i], test.AsSpan(i * 784, 784), 28, 28);
        (code, stdout, stderr) = Run(["classify", "--checkpoint", Path.Combine(run, "vision.safetensors"), "--top", "10", "--json", .. images]);
        Assert.That(code, Is.EqualTo(0), stderr);
        var c = LastJson(stdout);
        Assert.That(c.GetProperty("model").GetString(), Is.EqualTo("resnet20-cbam"));
        var results = c.GetProperty("images").EnumerateArray().ToArray();
        Assert.That(results.Select(r => r.GetProperty("path").GetString()), Is.EqualTo(images));
        foreach (var r in results)
        {
            var top = r.GetProperty("top").EnumerateArray().ToArray();
            var p = top.Select(t => t.GetProperty("probability").GetDouble()).ToArray();
            Assert.That(p, Is.Ordered.Descending);
            Assert.That(p.Sum(), Is.EqualTo(1).Within(1e-4), "all ten classes: the softmax sums to 1");
            Assert.That(top.Select(t => t.GetProperty("class").GetString()), Is.EquivalentTo(Idx.FashionMnistClasses));
        }
        (code, stdout, _) = Run(["classify", "--checkpoint", Path.Combine(run, "vision.safetensors"), images[0]]);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stdout.Split(", "), Has.Length.EqualTo(5), "top 5 by default");

        // An image of the wrong size names itself and the size the model takes.
        string big = Path.Combine(_dir, "big.png");
        WriteGreyPng(big, new byte[30 * 30], 30, 30);
        (code, _, stderr) = Run("classify", "--checkpoint", Path.Combine(run, "vision.safetensors"), big);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain(big).And.Contain("30x30").And.Contain("28x28"));
    }

    // A tiny image folder: two classes told apart by brightness, 8x8 grey PNGs, train/ and test/.
    string WriteTinyFolder()
    {
        string root = Path.Combine(_dir, "tiny");
        var g = new Generator(3);
        foreach (var (split, count) in new[] { ("train", 12), ("test", 4) })
            foreach (var (cls, level) in new[] { ("dark", 40), ("light", 200) })
            {
                Directory.CreateDirectory(Path.Combine(root, split, cls));
                for (int i = 0; i < count; i++)
                    WriteGreyPng(Path.Combine(root, split, cls, $"{i}.png"), Enumerable.Range(0, 64).Select(_ => (byte)(level + g.NextInt64(-30, 30))).ToArray(), 8, 8);
            }
        return root;
    }

    [Test]
    public void A_resumed_run_continues_from_its_last_epoch_with_the_same_history()
    {
        string data = WriteTinyFolder(), run = Path.Combine(_dir, "run");
        string[] common = ["train", "vision", "--data", data, "--model", "resnet20", "--batch", "8", "--pictures", "0", "--crop-padding", "1", "--out", run, "--json", "--threads", "2"];
        var (code, stdout, stderr) = Run([.. common, "--epochs", "1"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).GetProperty("steps").GetInt32(), Is.EqualTo(3), "24 images in batches of 8");
        string first = File.ReadAllText(Path.Combine(run, "epochs.json"));
        (code, stdout, stderr) = Run([.. common, "--epochs", "2", "--resume"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(LastJson(stdout).GetProperty("epochs").GetInt32(), Is.EqualTo(2));
        using var epochs = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "epochs.json")));
        var rows = epochs.RootElement.EnumerateArray().ToArray();
        Assert.That(rows.Select(r => r.GetProperty("Epoch").GetInt32()), Is.EqualTo(new[] { 1, 2 }), "epoch 1 kept, only epoch 2 trained");
        using var firstDoc = JsonDocument.Parse(first);
        Assert.That(rows[0].GetRawText(), Is.EqualTo(firstDoc.RootElement[0].GetRawText()));
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        Assert.That(metrics.RootElement.EnumerateArray().Last().GetProperty("Step").GetInt32(), Is.EqualTo(6));
        Assert.That(Directory.GetFiles(run, "*tmp*"), Is.Empty);
    }

    [Test]
    public void Classify_and_train_vision_refuse_bad_input_with_one_line()
    {
        string text = Path.Combine(_dir, "x.txt");
        File.WriteAllText(text, "not a model");
        var (code, _, stderr) = Run("classify", "--checkpoint", text);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("at least one image"));
        (code, _, stderr) = Run("classify", "--checkpoint", text, Path.Combine(_dir, "missing.png"));
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("missing.png"));
        (code, _, stderr) = Run("train", "vision", "--data", _dir, "--out", Path.Combine(_dir, "run"));
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stderr, Does.Contain(_dir).And.Contain("train/ and test/"));
        (code, _, stderr) = Run("train", "vision", "--data", _dir, "--model", "resnet99");
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("resnet99"));
    }
}
