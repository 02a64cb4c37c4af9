using System.Formats.Tar;
using System.IO.Compression;
using System.Runtime.InteropServices;
using AttnCore.Models.Data.Vision;
using SkiaSharp;

namespace AttnCore.Presentation.Vision;

/// <summary>
/// Image-classification data on disk, decoded into an <see cref="ImageSet"/> (bytes in memory): an image folder
/// (one sub-folder per class, named for the class, holding PNG or JPEG files), a folder with train/ and test/ image
/// folders, the same layout inside a .tar or .tar.gz (read entry by entry, nothing extracted: CIFAR-10's JPEG copy), or
/// an MNIST-layout IDX folder. Decoding uses SkiaSharp, which is why this lives here and not in the compute libraries.
/// Every image of a set must have the size of the first; a file that does not decode completely, a class folder without
/// images or a split without classes is an <see cref="InvalidDataException"/> naming the file or folder.
/// </summary>
public static class ImageFolder
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>
    /// The train and test sets at <paramref name="path"/>: an IDX folder (Fashion-MNIST), a folder with train/ and test/
    /// image folders, or a .tar/.tar.gz/.tgz archive of such a folder.
    /// </summary>
    public static (ImageSet Train, ImageSet Test) LoadSplits(string path)
    {
        if (File.Exists(path))
        {
            string lower = path.ToLowerInvariant();
            if (lower.EndsWith(".tar.gz", StringComparison.Ordinal) || lower.EndsWith(".tgz", StringComparison.Ordinal) || lower.EndsWith(".tar", StringComparison.Ordinal))
                return LoadTar(path);
            throw new InvalidDataException($"image data '{path}': a file must be a .tar, .tar.gz or .tgz archive with train/ and test/ class folders");
        }
        if (!Directory.Exists(path)) throw new FileNotFoundException($"image data: no file or folder at '{path}'", path);
        if (Idx.IsIdxFolder(path)) return Idx.LoadFolder(path);
        string train = Path.Combine(path, "train"), test = Path.Combine(path, "test");
        if (!Directory.Exists(train) || !Directory.Exists(test))
            throw new InvalidDataException($"image data '{path}': expected MNIST IDX files (train-images-idx3-ubyte[.gz] ...) or train/ and test/ folders with one sub-folder per class");
        var trainSet = Load(train);
        return (trainSet, Load(test, trainSet.ClassNames));
    }

    /// <summary>
    /// One image folder: the sorted sub-folder names are the classes (or <paramref name="classNames"/>, which the
    /// sub-folders must match: a test split uses the train split's).
    /// </summary>
    public static ImageSet Load(string folder, IReadOnlyList<string>? classNames = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"image folder: no folder at '{folder}'");
        var classes = Directory.GetDirectories(folder).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        var files = new List<(string Name, int Label, Func<byte[]> Read)>();
        foreach (var cls in classes)
        {
            string dir = Path.Combine(folder, cls);
            var images = Directory.GetFiles(dir).Where(IsImage).Order(StringComparer.Ordinal).ToArray();
            if (images.Length == 0) throw new InvalidDataException($"image folder '{folder}': class folder '{dir}' has no PNG or JPEG images");
            int label = classes.IndexOf(cls);
            files.AddRange(images.Select(f => (f, label, (Func<byte[]>)(() => File.ReadAllBytes(f)))));
        }
        return Decode(folder, classes, classNames, files);
    }

    /// <summary>The train and test splits of a .tar or .tar.gz holding [prefix/]train/&lt;class&gt;/file and [prefix/]test/&lt;class&gt;/file.</summary>
    public static (ImageSet Train, ImageSet Test) LoadTar(string path)
    {
        var entries = new Dictionary<string, List<(string Class, string Name, byte[] Bytes)>> { ["train"] = [], ["test"] = [] };
        try
        {
            using var file = File.OpenRead(path);
            using Stream stream = path.EndsWith(".tar", StringComparison.OrdinalIgnoreCase) ? file : new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(stream);
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || !IsImage(entry.Name)) continue;
                var parts = entry.Name.Split('/', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length < 3 || !entries.TryGetValue(parts[^3], out var split)) continue;
                var bytes = new byte[entry.Length];
                entry.DataStream?.ReadExactly(bytes);
                split.Add((parts[^2], entry.Name, bytes));
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new InvalidDataException($"image archive '{path}': corrupt or truncated: {e.Message}", e);
        }
        ImageSet Split(string name, IReadOnlyList<string>? classNames)
        {
            var list = entries[name];
            if (list.Count == 0) throw new InvalidDataException($"image archive '{path}': no images under {name}/<class>/");
            var classes = list.Select(e => e.Class).Distinct().Order(StringComparer.Ordinal).ToList();
            var files = list.OrderBy(e => e.Name, StringComparer.Ordinal)
                .Select(e => ($"{path}:{e.Name}", classes.IndexOf(e.Class), (Func<byte[]>)(() => e.Bytes))).ToList();
            return Decode($"{path}:{name}/", classes, classNames, files);
        }
        var train = Split("train", null);
        return (train, Split("test", train.ClassNames));
    }

    private static bool IsImage(string name) => Extensions.Contains(Path.GetExtension(name).ToLowerInvariant());

    // Decodes every file in parallel into one byte array; labels are remapped onto classNames when given.
    private static ImageSet Decode(string source, List<string> classes, IReadOnlyList<string>? classNames, List<(string Name, int Label, Func<byte[]> Read)> files)
    {
        if (classes.Count == 0) throw new InvalidDataException($"image folder '{source}': no class sub-folders");
        int[] remap = classes.Select((c, i) => i).ToArray();
        if (classNames is not null)
        {
            for (int i = 0; i < classes.Count; i++)
            {
                remap[i] = classNames.ToList().IndexOf(classes[i]);
                if (remap[i] < 0) throw new InvalidDataException($"image folder '{source}': class '{classes[i]}' is not one of the training classes ({string.Join(", ", classNames)})");
            }
        }
        var first = DecodeOne(files[0].Read(), files[0].Name, channels: null);
        int c = first.Channels, h = first.Height, w = first.Width, size = c * h * w;
        var pixels = new byte[(long)files.Count * size];
        var labels = new int[files.Count];
        try
        {
            Parallel.For(0, files.Count, i =>
            {
                var (name, label, read) = files[i];
                var image = DecodeOne(read(), name, c);
                if (image.Height != h || image.Width != w)
                    throw new InvalidDataException($"image folder '{source}': '{name}' is {image.Width}x{image.Height}, but the set's first image '{files[0].Name}' is {w}x{h}; every image must have one size");
                image.Pixels.CopyTo(pixels.AsSpan(i * size, size));
                labels[i] = remap[label];
            });
        }
        // The first failing file is the error to report, not the parallel loop's wrapper of it.
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is InvalidDataException) is { } failure)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
        return new ImageSet(pixels, labels, c, h, w, classNames ?? classes, source);
    }

    /// <summary>
    /// Decodes one PNG or JPEG to [C, H, W] bytes: grey (C = 1) when <paramref name="channels"/> is 1, or when it is null and
    /// the file is greyscale; RGB (C = 3) otherwise. A file that is not a complete image throws, naming <paramref name="name"/>.
    /// </summary>
    public static (byte[] Pixels, int Channels, int Height, int Width) DecodeOne(byte[] encoded, string name, int? channels)
    {
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data)
            ?? throw new InvalidDataException($"image '{name}': not a PNG or JPEG image that can be decoded ({encoded.Length} bytes)");
        int c = channels ?? (codec.Info.ColorType == SKColorType.Gray8 ? 1 : 3);
        int w = codec.Info.Width, h = codec.Info.Height;
        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[w * h * 4];
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        SKCodecResult result;
        try { result = codec.GetPixels(info, handle.AddrOfPinnedObject()); }
        finally { handle.Free(); }
        if (result != SKCodecResult.Success)
            throw new InvalidDataException($"image '{name}': decoding failed ({result}){(result == SKCodecResult.IncompleteInput ? ": the file is truncated" : "")}");
        var pixels = new byte[c * h * w];
        int plane = h * w;
        for (int p = 0; p < plane; p++)
        {
            if (c == 1) pixels[p] = (byte)((rgba[4 * p] * 299 + rgba[4 * p + 1] * 587 + rgba[4 * p + 2] * 114 + 500) / 1000);
            else for (int ch = 0; ch < 3; ch++) pixels[ch * plane + p] = rgba[4 * p + ch];
        }
        return (pixels, c, h, w);
    }
}
