using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using AttnCore.Models.Nn;

namespace AttnCore.Models.IO;

/// <summary>
/// The safetensors format (Hugging Face): 8-byte little-endian header length N, N bytes of JSON
/// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
/// then the raw little-endian tensor bytes. Files are written to a temporary name and renamed, so a crash
/// never leaves a half-written checkpoint; the reader bounds-checks every offset.
/// </summary>
public static class Safetensors
{
    /// <summary>Writes <paramref name="tensors"/> (and optional string metadata) to <paramref name="path"/> atomically.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
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
        string tmp = full + $".tmp-{Environment.ProcessId}";
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

    /// <summary>Reads every tensor of a safetensors file onto <paramref name="device"/>, with the metadata.</summary>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Load(string path, Device? device = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Safetensors.Load: no file at '{path}'", path);
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8) throw new InvalidDataException($"Safetensors.Load: '{path}' is {bytes.Length} bytes, too short for a header");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > (ulong)(bytes.Length - 8)) throw new InvalidDataException($"Safetensors.Load: '{path}' declares a {n}-byte header but has {bytes.Length - 8} bytes after the length");
        int dataStart = 8 + (int)n;
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var tensors = new Dictionary<string, Tensor>();
        var metadata = new Dictionary<string, string>();
        try
        {
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    foreach (var m in prop.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString() ?? "";
                    continue;
                }
                var dtype = FromCode(prop.Value.GetProperty("dtype").GetString(), path, prop.Name);
                var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var off = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                long need = Shape.Numel(shape) * dtype.SizeOf();
                if (shape.Any(d => d < 0) || off.Length != 2 || off[0] < 0 || off[1] < off[0] || off[1] - off[0] != need || dataStart + off[1] > bytes.Length)
                    throw new InvalidDataException($"Safetensors.Load: '{path}': tensor '{prop.Name}' with shape {Shape.Format(shape)} has data offsets [{string.Join(",", off)}] that do not fit the file ({bytes.Length - dataStart} data bytes)");
                var span = bytes.AsSpan(dataStart + (int)off[0], (int)need);
                tensors[prop.Name] = dtype switch
                {
                    DType.Float32 => Tensor.FromSpan<float>(ReadLE<float>(span), shape, device),
                    DType.Float64 => Tensor.FromSpan<double>(ReadLE<double>(span), shape, device),
                    _ => Tensor.FromSpan<long>(ReadLE<long>(span), shape, device),
                };
            }
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return (tensors, metadata);
    }

    /// <summary>Loads a file into a module's parameters and buffers (strict: names and shapes must match).</summary>
    public static Dictionary<string, string> LoadInto(string path, Module module)
    {
        var (tensors, meta) = Load(path);
        try { module.LoadStateDict(tensors); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        return meta;
    }

    private static string Code(DType d) => d switch { DType.Float32 => "F32", DType.Float64 => "F64", DType.Int64 => "I64", _ => throw new NotSupportedException($"Safetensors: no code for {d}") };

    private static DType FromCode(string? code, string path, string name) => code switch
    {
        "F32" => DType.Float32, "F64" => DType.Float64, "I64" => DType.Int64,
        _ => throw new InvalidDataException($"Safetensors.Load: '{path}': tensor '{name}' has dtype '{code}', which AttnCore does not read (F32, F64, I64)"),
    };

    private static void WriteData(Stream s, Tensor t)
    {
        byte[] raw = t.DType switch
        {
            DType.Float32 => ToBytes(t.ToArray<float>()),
            DType.Float64 => ToBytes(t.ToArray<double>()),
            _ => ToBytes(t.ToArray<long>()),
        };
        s.Write(raw);
    }

    private static byte[] ToBytes<T>(T[] values) where T : unmanaged
    {
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Safetensors: big-endian hosts are not supported");
        return bytes;
    }

    private static T[] ReadLE<T>(ReadOnlySpan<byte> bytes) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Safetensors: big-endian hosts are not supported");
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }
}
