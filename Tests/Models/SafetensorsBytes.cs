using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace AttnCore.Tests.Models;

/// <summary>
/// Safetensors files built byte by byte from the format's description (8-byte little-endian header length,
/// JSON header, data), independently of the reader under test, and a reference decoder of tensor bytes.
/// </summary>
internal static class SafetensorsBytes
{
    /// <summary>The file for <paramref name="json"/> and <paramref name="data"/>, the header padded with spaces to <paramref name="padTo"/>.</summary>
    public static byte[] Build(string json, byte[] data, int padTo = 1)
    {
        var header = Encoding.UTF8.GetBytes(json);
        int padded = (header.Length + padTo - 1) / padTo * padTo;
        var file = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)padded);
        header.CopyTo(file, 8);
        file.AsSpan(8 + header.Length, padded - header.Length).Fill((byte)' ');
        data.CopyTo(file, 8 + padded);
        return file;
    }

    /// <summary>The header text and the data bytes of a well-formed file.</summary>
    public static (string Json, byte[] Data) Split(byte[] file)
    {
        int n = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(file));
        return (Encoding.UTF8.GetString(file, 8, n), file[(8 + n)..]);
    }

    /// <summary>Little-endian bytes of values.</summary>
    public static byte[] Bytes<T>(params T[] values) where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    /// <summary>
    /// What a tensor entry of an accepted file must hold, decoded here from the file's own bytes at the
    /// declared offsets: as double for float dtypes, as long for integer ones. The offsets must lie inside
    /// the data region (asserted by the caller through the returned flag).
    /// </summary>
    public static (double[]? Floats, long[]? Ints, bool InsideData) Expected(byte[] file, JsonElement entry)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var off = entry.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        long start = 8 + n + off[0], end = 8 + n + off[1];
        bool inside = off[0] >= 0 && off[1] >= off[0] && end <= file.Length;
        if (!inside) return (null, null, false);
        var raw = file[(int)start..(int)end];
        switch (entry.GetProperty("dtype").GetString())
        {
            case "F32": return (Enumerable.Range(0, raw.Length / 4).Select(i => (double)BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan(4 * i))).ToArray(), null, true);
            case "F64": return (Enumerable.Range(0, raw.Length / 8).Select(i => BinaryPrimitives.ReadDoubleLittleEndian(raw.AsSpan(8 * i))).ToArray(), null, true);
            case "F16": return (Enumerable.Range(0, raw.Length / 2).Select(i => (double)BinaryPrimitives.ReadHalfLittleEndian(raw.AsSpan(2 * i))).ToArray(), null, true);
            case "BF16":
                return (Enumerable.Range(0, raw.Length / 2).Select(i => (double)BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i)) << 16)).ToArray(), null, true);
            case "I64": return (null, Enumerable.Range(0, raw.Length / 8).Select(i => BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(8 * i))).ToArray(), true);
            case "I32": return (null, Enumerable.Range(0, raw.Length / 4).Select(i => (long)BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(4 * i))).ToArray(), true);
            default: return (null, raw.Select(b => (long)b).ToArray(), true);   // U8, BOOL
        }
    }

    /// <summary>
    /// A file with every dtype AttnCore reads, laid out as Hugging Face's safetensors library writes one:
    /// "__metadata__" {"format": "pt"} first, data in order of dtype size, header padded with spaces to
    /// 8 bytes; the header's keys are not in data order, and "odd" starts unaligned at data byte 65
    /// (the format does not require alignment).
    /// </summary>
    public static byte[] EveryDType()
    {
        var data = new List<byte>();
        data.AddRange(Bytes(1.5, -0.25));                                                  // f64   [0, 16)
        data.AddRange(Bytes(int.MinValue, -1, 0, int.MaxValue));                           // i32   [16, 32)
        data.AddRange(Bytes<ushort>(0x3F80, 0xC049, 0x7F80, 0x0001, 0x7FC0));              // bf16  [32, 42)
        data.AddRange(Bytes<ushort>(0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0xFC00, 0x3555));   // f16 [42, 58)
        data.AddRange(new byte[] { 0, 1, 200, 255 });                                      // u8    [58, 62)
        data.AddRange(new byte[] { 1, 0, 1 });                                             // mask  [62, 65)
        data.AddRange(Bytes(3.25f, -7f));                                                  // odd   [65, 73)
        const string json = "{\"__metadata__\":{\"format\":\"pt\"}," +
            "\"f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}," +
            "\"i32\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[16,32]}," +
            "\"odd\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[65,73]}," +
            "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[65,65]}," +
            "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[32,42]}," +
            "\"f16\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[42,58]}," +
            "\"u8\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[58,62]}," +
            "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[62,65]}}";
        return Build(json, data.ToArray(), padTo: 8);
    }
}
