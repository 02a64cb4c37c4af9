using System.Text.Json;
using System.Text.Unicode;

namespace AttnCore.Models.IO;

/// <summary>One tensor a safetensors header declares, after the whole header was validated.</summary>
/// <param name="Name">The tensor's name (a state-dict key such as <c>blocks.0.attn.qkv.weight</c>).</param>
/// <param name="DTypeCode">The safetensors dtype code as stored: F32, F64, F16, BF16, I64, I32, U8 or BOOL.</param>
/// <param name="Shape">The dimensions.</param>
/// <param name="Begin">First byte of the data, counted from the start of the data region (after the header).</param>
/// <param name="End">One past the last byte, counted the same way.</param>
/// <param name="LoadsAs">The engine dtype the tensor becomes when read.</param>
public sealed record SafetensorsEntry(string Name, string DTypeCode, int[] Shape, long Begin, long End, DType LoadsAs)
{
    /// <summary>Number of elements (the product of <see cref="Shape"/>).</summary>
    public long ElementCount => AttnCore.Shape.Numel(Shape);
}

/// <summary>
/// Validation of a safetensors header, all of it before any tensor is read. The layout: 8 bytes of
/// little-endian u64 header length N (at most 100 MB, as the format caps it), N bytes of UTF-8 JSON
/// starting with '{' (an object: "__metadata__" maps strings to strings, every other key names a tensor
/// {"dtype", "shape", "data_offsets"}), then the data region. The rules (Hugging Face's safetensors
/// validate()): every dimension is a non-negative integer, element count x dtype size (computed with
/// overflow checks) equals end - begin of the tensor's offsets, offsets lie inside the data region, and
/// the tensors, sorted by offset, cover the data region exactly: no overlap, no hole, no trailing bytes.
/// Offsets are checked against the data region's length and never added to anything first, so a value
/// near 2^63 cannot wrap around into the header.
/// </summary>
public static class SafetensorsHeader
{
    /// <summary>The largest header the format allows (and this reader parses), in bytes.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The key of the optional string-to-string metadata map.</summary>
    public const string MetadataKey = "__metadata__";

    // Every dtype code the format defines, with its element size; the ones AttnCore reads and what they become.
    private static readonly Dictionary<string, (int Size, DType? LoadsAs)> Codes = new(StringComparer.Ordinal)
    {
        ["F64"] = (8, DType.Float64), ["F32"] = (4, DType.Float32), ["F16"] = (2, DType.Float32), ["BF16"] = (2, DType.Float32),
        ["I64"] = (8, DType.Int64), ["I32"] = (4, DType.Int64), ["U8"] = (1, DType.Int64), ["BOOL"] = (1, Safetensors.BoolLoadsAs),
        ["I16"] = (2, null), ["I8"] = (1, null), ["U16"] = (2, null), ["U32"] = (4, null), ["U64"] = (8, null),
        ["F8_E4M3"] = (1, null), ["F8_E5M2"] = (1, null),
    };

    private const string Readable = "F32, F64, F16, BF16, I64, I32, U8, BOOL";

    /// <summary>
    /// Validates the header bytes (the N bytes after the length) of the file at <paramref name="path"/>,
    /// whose data region holds <paramref name="dataBytes"/> bytes. Returns the tensors sorted by offset, and
    /// the metadata. Throws <see cref="SafetensorsFormatException"/> for anything that breaks the format.
    /// </summary>
    public static (SafetensorsEntry[] Entries, Dictionary<string, string> Metadata) Parse(string path, ReadOnlySpan<byte> header, long dataBytes)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new SafetensorsFormatException(path, null, "the header does not start with '{' (it must be a JSON object)");
        if (!Utf8.IsValid(header)) throw new SafetensorsFormatException(path, null, "the header is not valid UTF-8");
        try
        {
            using var doc = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(path, null, $"the header is a JSON {root.ValueKind}, not an object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<SafetensorsEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool hasMetadata = false;
            foreach (var prop in root.EnumerateObject())
            {
                if (prop.Name == MetadataKey)
                {
                    if (hasMetadata) throw new SafetensorsFormatException(path, null, $"\"{MetadataKey}\" appears twice");
                    hasMetadata = true;
                    ReadMetadata(path, prop.Value, metadata);
                    continue;
                }
                if (!seen.Add(prop.Name)) throw new SafetensorsFormatException(path, prop.Name, "the name appears twice in the header");
                entries.Add(ReadEntry(path, prop.Name, prop.Value, dataBytes));
            }
            var sorted = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ThenBy(e => e.Name, StringComparer.Ordinal).ToArray();
            CheckCoverage(path, sorted, dataBytes);
            return (sorted, metadata);
        }
        // JsonDocument reports malformed JSON as JsonException, and escapes that decode to invalid UTF-16
        // (a lone surrogate in a name or string) only when the string is read, as InvalidOperationException.
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new SafetensorsFormatException(path, null, $"the header is not valid JSON ({e.Message})", e);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, null, $"\"{MetadataKey}\" is a JSON {value.ValueKind}, not an object of strings");
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(path, null, $"\"{MetadataKey}\" entry '{m.Name}' is a JSON {m.Value.ValueKind}, not a string");
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                throw new SafetensorsFormatException(path, null, $"\"{MetadataKey}\" entry '{m.Name}' appears twice");
        }
    }

    private static SafetensorsEntry ReadEntry(string path, string name, JsonElement value, long dataBytes)
    {
        SafetensorsFormatException Bad(string problem) => new(path, name, problem);
        if (value.ValueKind != JsonValueKind.Object) throw Bad($"the entry is a JSON {value.ValueKind}, not an object with dtype, shape and data_offsets");
        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        foreach (var field in value.EnumerateObject())
        {
            ref JsonElement? slot = ref dtypeEl;
            if (field.Name == "dtype") slot = ref dtypeEl;
            else if (field.Name == "shape") slot = ref shapeEl;
            else if (field.Name == "data_offsets") slot = ref offsetsEl;
            else throw Bad($"unknown field '{field.Name}' (an entry has dtype, shape and data_offsets)");
            if (slot is not null) throw Bad($"the field '{field.Name}' appears twice");
            slot = field.Value;
        }
        if (dtypeEl is not { } dt || shapeEl is not { } sh || offsetsEl is not { } of)
            throw Bad($"missing field {(dtypeEl is null ? "dtype" : shapeEl is null ? "shape" : "data_offsets")} (an entry has dtype, shape and data_offsets)");

        if (dt.ValueKind != JsonValueKind.String) throw Bad($"dtype is a JSON {dt.ValueKind}, not a string");
        string code = dt.GetString()!;
        if (!Codes.TryGetValue(code, out var format)) throw Bad($"unknown dtype '{code}'");
        if (format.LoadsAs is not { } loadsAs) throw Bad($"dtype '{code}' is not one AttnCore reads ({Readable})");

        if (sh.ValueKind != JsonValueKind.Array) throw Bad($"shape is a JSON {sh.ValueKind}, not an array of integers");
        var shape = new int[sh.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0 || dim > int.MaxValue)
                throw Bad($"shape entry {i} is {Clip(d.GetRawText())}, not an integer in [0, {int.MaxValue}]");
            shape[i++] = (int)dim;
            if (count != 0 && dim != 0 && count > long.MaxValue / dim)
                throw Bad($"shape {Shape.Format(shape.AsSpan(0, i))}... has more than 2^63 elements");
            count *= dim;
        }
        if (count > 0 && count > long.MaxValue / format.Size)
            throw Bad($"shape {Shape.Format(shape)} x {format.Size}-byte {code} is more than 2^63 bytes");
        long bytes = count * format.Size;

        if (of.ValueKind != JsonValueKind.Array || of.GetArrayLength() != 2)
            throw Bad($"data_offsets is {Clip(of.GetRawText())}, not an array [begin, end]");
        var offsets = new long[2];
        i = 0;
        foreach (var o in of.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out long v) || v < 0)
                throw Bad($"data_offsets entry {i} is {Clip(o.GetRawText())}, not an integer in [0, 2^63)");
            offsets[i++] = v;
        }
        long begin = offsets[0], end = offsets[1];
        if (end < begin) throw Bad($"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataBytes) throw Bad($"data_offsets [{begin}, {end}] reach past the data region, which holds {dataBytes} bytes");
        if (end - begin != bytes)
            throw Bad($"data_offsets [{begin}, {end}] hold {end - begin} bytes, but shape {Shape.Format(shape)} of {code} needs {bytes}");
        if (count > Array.MaxLength)
            throw Bad($"shape {Shape.Format(shape)} has {count} elements, more than an AttnCore tensor holds ({Array.MaxLength})");
        return new SafetensorsEntry(name, code, shape, begin, end, loadsAs);
    }

    private static void CheckCoverage(string path, SafetensorsEntry[] sorted, long dataBytes)
    {
        long covered = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in sorted)
        {
            if (e.Begin < covered)
                throw new SafetensorsFormatException(path, e.Name, $"bytes [{e.Begin}, {e.End}) overlap tensor '{previous!.Name}' at [{previous.Begin}, {previous.End})");
            if (e.Begin > covered)
                throw new SafetensorsFormatException(path, e.Name, $"bytes [{covered}, {e.Begin}) before it belong to no tensor (the format allows no holes)");
            covered = e.End;
            previous = e;
        }
        if (covered != dataBytes)
            throw new SafetensorsFormatException(path, null, $"bytes [{covered}, {dataBytes}) at the end of the data region belong to no tensor (the format allows no trailing bytes)");
    }

    private static string Clip(string raw) => raw.Length <= 60 ? raw : raw[..57] + "...";
}
