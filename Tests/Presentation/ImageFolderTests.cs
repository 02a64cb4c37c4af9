using System.Formats.Tar;
using System.IO.Compression;
using AttnCore.Presentation.Vision;
using AttnCore.Tests.Models.Vision;
using NUnit.Framework;
using SkiaSharp;

namespace AttnCore.Tests.Presentation;

/// <summary>
/// Image folders and archives decoded with SkiaSharp: PNG pixels come back exactly, JPEG within its loss, classes and
/// labels follow the folder names, and broken inputs (truncated or non-image files, empty class folders, mixed sizes)
/// fail naming the file. The last test reads the real CIFAR-10 JPEG archive when it is present.
/// </summary>
[TestFixture, Category("Models")]
public class ImageFolderTests
{
    string _dir = "";

    [SetUp]
    public void MakeFolder() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-image-folder-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, true);

    // A w x h RGB image whose pixel (x, y) is (17x + 3y + seed, 5x + 29y, 255 - 11x - seed) mod 256.
    static (byte R, byte G, byte B) Pixel(int x, int y, int seed) => ((byte)(17 * x + 3 * y + seed), (byte)(5 * x + 29 * y), (byte)(255 - 11 * x - seed));

    // A smooth image (no wrap-around edges), for JPEG, whose loss is large at sharp edges.
    static (byte R, byte G, byte B) Smooth(int x, int y, int seed) => ((byte)(6 * x + 3 * y + seed), (byte)(100 + 2 * y), (byte)(200 - 4 * x));

    static void WriteImage(string path, int w, int h, int seed, SKEncodedImageFormat format = SKEncodedImageFormat.Png)
    {
        using var bitmap = new SKBitmap(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var pixel = format == SKEncodedImageFormat.Jpeg ? Smooth : (Func<int, int, int, (byte, byte, byte)>)Pixel;
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) { var (r, g, b) = pixel(x, y, seed); bitmap.SetPixel(x, y, new SKColor(r, g, b)); }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var data = bitmap.Encode(format, 95);
        File.WriteAllBytes(path, data.ToArray());
    }

    [Test]
    public void A_png_folder_decodes_exactly_with_classes_from_the_sub_folders()
    {
        WriteImage(Path.Combine(_dir, "dog", "1.png"), 5, 4, 10);
        WriteImage(Path.Combine(_dir, "cat", "2.png"), 5, 4, 20);
        WriteImage(Path.Combine(_dir, "cat", "1.png"), 5, 4, 30);
        File.WriteAllText(Path.Combine(_dir, "cat", "notes.txt"), "not an image: skipped");
        var set = ImageFolder.Load(_dir);
        Assert.That(set.ClassNames, Is.EqualTo(new[] { "cat", "dog" }));
        Assert.That(set.Labels, Is.EqualTo(new[] { 0, 0, 1 }), "files in name order within sorted classes");
        Assert.That((set.Channels, set.Height, set.Width), Is.EqualTo((3, 4, 5)));
        int[] seeds = [30, 20, 10];
        for (int i = 0; i < 3; i++)
        {
            var image = set.Image(i);
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 5; x++)
                {
                    var (r, g, b) = Pixel(x, y, seeds[i]);
                    Assert.That(new[] { image[y * 5 + x], image[20 + y * 5 + x], image[40 + y * 5 + x] }, Is.EqualTo(new[] { r, g, b }), $"image {i} pixel ({x},{y})");
                }
        }
    }

    [Test]
    public void A_jpeg_decodes_within_its_loss_and_a_grey_png_to_one_channel()
    {
        WriteImage(Path.Combine(_dir, "a", "x.jpg"), 16, 16, 0, SKEncodedImageFormat.Jpeg);
        var jpeg = ImageFolder.Load(_dir);
        var image = jpeg.Image(0);
        double err = 0;
        for (int y = 0; y < 16; y++) for (int x = 0; x < 16; x++) err += Math.Abs(image[y * 16 + x] - Smooth(x, y, 0).R);
        Assert.That(err / 256, Is.LessThan(4), "mean absolute error of the red channel of a smooth image at quality 95");

        using var grey = new SKBitmap(3, 2, SKColorType.Gray8, SKAlphaType.Opaque);
        for (int i = 0; i < 6; i++) grey.SetPixel(i % 3, i / 3, new SKColor((byte)(40 * i), (byte)(40 * i), (byte)(40 * i)));
        using var png = grey.Encode(SKEncodedImageFormat.Png, 100);
        var (pixels, channels, h, w) = ImageFolder.DecodeOne(png.ToArray(), "grey.png", channels: null);
        Assert.That((channels, h, w), Is.EqualTo((1, 2, 3)));
        Assert.That(pixels, Is.EqualTo(new byte[] { 0, 40, 80, 120, 160, 200 }));
    }

    [Test]
    public void Broken_inputs_fail_naming_the_file_or_folder()
    {
        string cls = Path.Combine(_dir, "a");
        WriteImage(Path.Combine(cls, "0.png"), 32, 32, 1);
        WriteImage(Path.Combine(cls, "1.jpg"), 32, 32, 2, SKEncodedImageFormat.Jpeg);

        string truncated = Path.Combine(cls, "1.jpg");
        var bytes = File.ReadAllBytes(truncated);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length * 3 / 4)]); // the header intact, the scan cut
        Assert.That(() => ImageFolder.Load(_dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(truncated).And.Message.Contains("truncated"));

        File.WriteAllText(truncated, "this is not a jpeg");
        Assert.That(() => ImageFolder.Load(_dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(truncated).And.Message.Contains("not a PNG or JPEG"));

        WriteImage(truncated, 33, 32, 2, SKEncodedImageFormat.Jpeg);
        Assert.That(() => ImageFolder.Load(_dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(truncated).And.Message.Contains("33x32"));

        File.Delete(truncated);
        string empty = Path.Combine(_dir, "b");
        Directory.CreateDirectory(empty);
        Assert.That(() => ImageFolder.Load(_dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(empty).And.Message.Contains("no PNG or JPEG"));

        Assert.That(() => ImageFolder.LoadSplits(cls), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(cls).And.Message.Contains("train/ and test/"));
        string text = Path.Combine(_dir, "x.txt");
        File.WriteAllText(text, "x");
        Assert.That(() => ImageFolder.LoadSplits(text), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(text));
    }

    [Test]
    public void A_tar_gz_of_train_and_test_folders_reads_without_extracting_and_maps_test_classes_onto_train()
    {
        string root = Path.Combine(_dir, "data");
        WriteImage(Path.Combine(root, "train", "ship", "0.png"), 4, 4, 1);
        WriteImage(Path.Combine(root, "train", "car", "0.png"), 4, 4, 2);
        WriteImage(Path.Combine(root, "train", "car", "1.png"), 4, 4, 3);
        WriteImage(Path.Combine(root, "test", "ship", "0.png"), 4, 4, 4);
        string archive = Path.Combine(_dir, "data.tar.gz");
        using (var file = File.Create(archive))
        using (var gz = new GZipStream(file, CompressionLevel.Fastest))
            TarFile.CreateFromDirectory(root, gz, includeBaseDirectory: false);
        var (train, test) = ImageFolder.LoadSplits(archive);
        Assert.That(train.ClassNames, Is.EqualTo(new[] { "car", "ship" }));
        Assert.That(train.Labels, Is.EqualTo(new[] { 0, 0, 1 }));
        Assert.That(test.ClassNames, Is.EqualTo(new[] { "car", "ship" }));
        Assert.That(test.Labels, Is.EqualTo(new[] { 1 }), "the test split's only class is the train split's class 1");
        var folders = ImageFolder.LoadSplits(root);
        Assert.That(folders.Train.Pixels, Is.EqualTo(train.Pixels), "the folder and the archive decode alike");

        var raw = File.ReadAllBytes(archive);
        File.WriteAllBytes(archive, raw[..(raw.Length / 2)]);
        Assert.That(() => ImageFolder.LoadSplits(archive), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(archive));
    }

    [Test]
    public void The_cifar10_jpeg_archive_reads_as_50000_train_and_10000_test_images()
    {
        string path = VisionTestData.SharedData("cifar10-jpeg.tar.gz");
        if (!File.Exists(path)) Assert.Ignore($"CIFAR-10 JPEG archive not at {path}");
        var (train, test) = ImageFolder.LoadSplits(path);
        Assert.That((train.Count, test.Count), Is.EqualTo((50000, 10000)));
        Assert.That((train.Channels, train.Height, train.Width), Is.EqualTo((3, 32, 32)));
        Assert.That(train.ClassNames, Is.EqualTo(new[] { "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck" }));
        Assert.That(train.Labels.CountBy(l => l).Select(p => p.Value), Is.All.EqualTo(5000));
        var (mean, _) = train.ChannelStatistics();
        // CIFAR-10's published channel means (0.4914, 0.4822, 0.4465), a little off after JPEG at quality 75.
        Assert.That(mean, Is.EqualTo(new[] { 0.4914, 0.4822, 0.4465 }).Within(0.01));
    }
}
