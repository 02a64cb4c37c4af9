using System.IO.Compression;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Vision;

/// <summary>Where the vision tests find real data, and small IDX files they write themselves.</summary>
static class VisionTestData
{
    /// <summary>Fashion-MNIST as Debian's dataset-fashion-mnist installs it.</summary>
    public const string FashionMnist = "/usr/share/datasets/fashion-mnist";

    /// <summary>A file under ../shared/data next to the repository root.</summary>
    public static string SharedData(string name)
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "AttnCore.sln"))) dir = dir.Parent;
        string root = dir?.FullName ?? throw new InvalidOperationException("AttnCore.sln not found above the test directory");
        return Path.GetFullPath(Path.Combine(root, "..", "shared", "data", name));
    }

    /// <summary>Skips the test, naming the path, when Fashion-MNIST is not installed.</summary>
    public static void RequireFashionMnist()
    {
        if (!File.Exists(Path.Combine(FashionMnist, "train-images-idx3-ubyte.gz")))
            Assert.Ignore($"Fashion-MNIST is not at {FashionMnist} (apt-get install -y dataset-fashion-mnist)");
    }

    /// <summary>An IDX file of unsigned bytes with dimensions <paramref name="dims"/>, gzip-compressed when asked.</summary>
    public static void WriteIdx(string path, int[] dims, byte[] values, bool gzip)
    {
        using var ms = new MemoryStream();
        ms.Write([0, 0, 0x08, (byte)dims.Length]);
        foreach (int d in dims) ms.Write([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        ms.Write(values);
        byte[] raw = ms.ToArray();
        if (!gzip) { File.WriteAllBytes(path, raw); return; }
        using var file = File.Create(path);
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        gz.Write(raw);
    }
}
