using System.Buffers.Binary;
using System.IO.Compression;

namespace AttnCore.Models.Data.Vision;

/// <summary>
/// The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header, two zero bytes, a type byte
/// (0x08 = unsigned byte, the only type these sets use), the number of dimensions, each dimension as a
/// big-endian int32, then the values row-major. Images are 3-d [N, H, W] (magic 0x00000803), labels 1-d [N]
/// (magic 0x00000801). Files may be gzip-compressed (detected by the gzip magic, not the name). A short,
/// mis-typed or inconsistent file is an <see cref="InvalidDataException"/> naming the file.
/// </summary>
public static class Idx
{
    /// <summary>The class names of Fashion-MNIST, in label order.</summary>
    public static readonly IReadOnlyList<string> FashionMnistClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Reads an IDX array of unsigned bytes: its dimensions and values.</summary>
    public static (int[] Dims, byte[] Values) Read(string path)
    {
        byte[] bytes = ReadMaybeGzip(path);
        if (bytes.Length < 4) throw new InvalidDataException($"IDX '{path}': {bytes.Length} bytes, shorter than the 4-byte magic number");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new InvalidDataException($"IDX '{path}': not an IDX file (magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(bytes):X8} does not start with two zero bytes)");
        if (bytes[2] != 0x08)
            throw new InvalidDataException($"IDX '{path}': value type 0x{bytes[2]:X2} is not 0x08 (unsigned byte), the only type MNIST-format image and label files use");
        int rank = bytes[3];
        if (rank < 1) throw new InvalidDataException($"IDX '{path}': 0 dimensions");
        long header = 4 + 4L * rank;
        if (bytes.Length < header) throw new InvalidDataException($"IDX '{path}': truncated header ({bytes.Length} bytes, {rank} dimensions need {header})");
        var dims = new int[rank];
        long count = 1;
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dims[d] < 0) throw new InvalidDataException($"IDX '{path}': dimension {d} is {dims[d]}");
            count *= dims[d];
        }
        if (bytes.Length - header != count)
            throw new InvalidDataException($"IDX '{path}': the header says [{string.Join(",", dims)}] = {count} values but the file has {bytes.Length - header}"
                + (bytes.Length - header < count ? " (truncated)" : " (trailing bytes)"));
        return (dims, bytes.AsSpan((int)header).ToArray());
    }

    /// <summary>
    /// An image set from an IDX image file [N, H, W] and an IDX label file [N]; the counts must agree and every
    /// label must name one of <paramref name="classNames"/>.
    /// </summary>
    public static ImageSet Load(string imagesPath, string labelsPath, IReadOnlyList<string> classNames)
    {
        var (imageDims, pixels) = Read(imagesPath);
        if (imageDims.Length != 3) throw new InvalidDataException($"IDX '{imagesPath}': images must be 3-d [N, H, W], got [{string.Join(",", imageDims)}]");
        var (labelDims, labelBytes) = Read(labelsPath);
        if (labelDims.Length != 1) throw new InvalidDataException($"IDX '{labelsPath}': labels must be 1-d [N], got [{string.Join(",", labelDims)}]");
        if (labelDims[0] != imageDims[0])
            throw new InvalidDataException($"IDX: '{imagesPath}' has {imageDims[0]} images but '{labelsPath}' has {labelDims[0]} labels");
        var labels = new int[labelBytes.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = labelBytes[i];
            if (labels[i] >= classNames.Count)
                throw new InvalidDataException($"IDX '{labelsPath}': label {labels[i]} at index {i} is not one of the {classNames.Count} classes");
        }
        return new ImageSet(pixels, labels, 1, imageDims[1], imageDims[2], classNames, imagesPath);
    }

    /// <summary>True when <paramref name="folder"/> holds MNIST's four files (train-/t10k- images-idx3-ubyte and labels-idx1-ubyte, optionally .gz).</summary>
    public static bool IsIdxFolder(string folder) => Directory.Exists(folder) && Find(folder, "train-images-idx3-ubyte") is not null;

    /// <summary>
    /// The train and test sets of an MNIST-layout folder (Fashion-MNIST's is /usr/share/datasets/fashion-mnist).
    /// <paramref name="classNames"/> defaults to Fashion-MNIST's; a missing file is named in the error.
    /// </summary>
    public static (ImageSet Train, ImageSet Test) LoadFolder(string folder, IReadOnlyList<string>? classNames = null)
    {
        classNames ??= FashionMnistClasses;
        string Need(string stem) => Find(folder, stem)
            ?? throw new FileNotFoundException($"IDX folder '{folder}': no {stem} or {stem}.gz", Path.Combine(folder, stem));
        return (Load(Need("train-images-idx3-ubyte"), Need("train-labels-idx1-ubyte"), classNames),
                Load(Need("t10k-images-idx3-ubyte"), Need("t10k-labels-idx1-ubyte"), classNames));
    }

    private static string? Find(string folder, string stem) =>
        new[] { stem, stem + ".gz" }.Select(n => Path.Combine(folder, n)).FirstOrDefault(File.Exists);

    private static byte[] ReadMaybeGzip(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX: no file at '{path}'", path);
        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;
        try
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var all = new MemoryStream();
            gz.CopyTo(all);
            return all.ToArray();
        }
        catch (InvalidDataException e) { throw new InvalidDataException($"IDX '{path}': corrupt gzip data: {e.Message}", e); }
        catch (EndOfStreamException e) { throw new InvalidDataException($"IDX '{path}': truncated gzip data: {e.Message}", e); }
    }
}
