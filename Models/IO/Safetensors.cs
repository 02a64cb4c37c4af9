using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using AttnCore.Models.Nn;

namespace AttnCore.Models.IO;

/// <summary>
/// The safetensors format (Hugging Face): 8-byte little-endian header length N, N bytes of JSON
/// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
/// then the raw little-endian tensor bytes. Files are written to a temporary name and renamed, so a crash
/// never leaves a half-written checkpoint (the temporary is deleted when writing fails). Reading memory-maps
/// the file (<see cref="SafetensorsFile"/>) and validates the whole header first (<see cref="SafetensorsHeader"/>):
/// anything that breaks the format raises <see cref="SafetensorsFormatException"/>.
/// </summary>
public static class Safetensors
{
    /// <summary>Writes <paramref name="tensors"/> (and optional string metadata) to <paramref name="path"/> atomically.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
        if (tensors.ContainsKey(SafetensorsHeader.MetadataKey))
            throw new ArgumentException($"Safetensors.Save: '{path}': a tensor cannot be named \"{SafetensorsHeader.MetadataKey}\" (the format reserves it for metadata)", nameof(tensors));
        if (metadata?.FirstOrDefault(m => m.Value is null) is { Key: { } nullKey })
            throw new ArgumentException($"Safetensors.Save: '{path}': metadata '{nullKey}' is null (the format stores strings)", nameof(metadata));
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var n in names)
        {
            var t = tensors[n];
            long bytes = t.Numel * t.DType.SizeOf();
            header[n] = new Dictionary<string, object> { ["dtype"] = Code(t.DType), ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8;   // keep the data 8-byte aligned, padding with spaces as the spec allows
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = full + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                fs.Write(len);
                fs.Write(json);
                for (int i = json.Length; i < padded; i++) fs.WriteByte((byte)' ');
                foreach (var n in names) WriteData(fs, tensors[n]);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Saves a module's state dict (parameter names like blocks.0.attn.qkv.weight).</summary>
    public static void Save(string path, Module module, IReadOnlyDictionary<string, string>? metadata = null) => Save(path, module.StateDict(), metadata);

    /// <summary>
    /// Reads every tensor of a safetensors file onto <paramref name="device"/>, with the metadata. The whole
    /// header is validated first (<see cref="SafetensorsHeader"/>): a file that breaks the format raises
    /// <see cref="SafetensorsFormatException"/> naming the file, the tensor and the rule, before any tensor exists.
    /// F32/F64/I64 load as they are; F16 and BF16 as Float32, I32 and U8 as Int64, BOOL as <see cref="BoolLoadsAs"/>.
    /// </summary>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Load(string path, Device? device = null)
    {
        using var file = new SafetensorsFile(path);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in file.Entries) tensors[e.Name] = file.Read(e.Name, device);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return (tensors, file.Metadata);
    }

    /// <summary>Opens <paramref name="path"/> (memory-mapped, header validated) to list its tensors or read some of them.</summary>
    public static SafetensorsFile Open(string path) => new(path);

    /// <summary>
    /// The dtype a BOOL tensor loads as: <see cref="DType.Bool"/>, byte for byte (the reader checks each byte is 0 or 1
    /// first, so every loaded bool is a valid .NET bool).
    /// </summary>
    public const DType BoolLoadsAs = DType.Bool;

    internal static Tensor FromBoolBytes(ReadOnlySpan<byte> raw, int[] shape, Device? device) => Tensor.FromSpan(MemoryMarshal.Cast<byte, bool>(raw), shape, device);

    /// <summary>Loads a file into a module's parameters and buffers (strict: names and shapes must match).</summary>
    public static Dictionary<string, string> LoadInto(string path, Module module)
    {
        var (tensors, meta) = Load(path);
        try { module.LoadStateDict(tensors); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        return meta;
    }

    private static string Code(DType d) => d switch { DType.Float32 => "F32", DType.Float64 => "F64", DType.Int64 => "I64", DType.Bool => "BOOL", _ => throw new NotSupportedException($"Safetensors: no code for {d}") };

    private static void WriteData(Stream s, Tensor t)
    {
        switch (t.DType)
        {
            case DType.Float32: WriteLittleEndian(s, t.ToArray<float>()); break;
            case DType.Float64: WriteLittleEndian(s, t.ToArray<double>()); break;
            case DType.Int64: WriteLittleEndian(s, t.ToArray<long>()); break;
            case DType.Bool: WriteLittleEndian(s, t.ToArray<bool>()); break;   // one byte each, 0 or 1, as the format's BOOL
            default: throw new NotSupportedException($"Safetensors.Save: no safetensors code for {t.DType.Name()} tensor of shape {AttnCore.Shape.Format(t.Shape)}");
        }
    }

    // In slices: a tensor's bytes can pass 2 GB, more than one byte span addresses.
    private static void WriteLittleEndian<T>(Stream s, T[] values) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Safetensors: big-endian hosts are not supported");
        const int slice = 1 << 20;
        for (int i = 0; i < values.Length; i += slice)
            s.Write(MemoryMarshal.AsBytes(values.AsSpan(i, Math.Min(slice, values.Length - i))));
    }
}
