using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace AttnCore.Models.IO;

/// <summary>
/// An open safetensors file: memory-mapped (nothing is read whole, so files past 2 GB open like small
/// ones), its header validated in full by <see cref="SafetensorsHeader.Parse"/> before the constructor
/// returns. <see cref="Read"/> copies one tensor out of the mapping onto a device, converting F16/BF16 to
/// Float32, I32/U8 to Int64 and BOOL to <see cref="Safetensors.BoolLoadsAs"/>. Offsets stay 64-bit from
/// the header to the pointer; only a tensor's element count is an int, and the header check bounds it.
/// The file must not be truncated in place while it is open (a mapping cannot survive that); AttnCore's
/// writers replace files by renaming, which leaves an open mapping on the old contents.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly Dictionary<string, SafetensorsEntry> _byName;
    private byte* _data;
    private bool _pointerHeld;

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="SafetensorsFormatException"/> when it breaks the format.</summary>
    public SafetensorsFile(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Safetensors: big-endian hosts are not supported");
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"Safetensors: no file at '{path}'", path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length;
        try
        {
            length = fs.Length;
            if (length < 8) throw new SafetensorsFormatException(path, null, $"the file is {length} bytes, too short for the 8-byte header length");
            _map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
        try
        {
            _view = _map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* start = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            _pointerHeld = true;
            start += _view.PointerOffset;
            ulong headerBytes = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(start, 8));
            if (headerBytes > SafetensorsHeader.MaxHeaderBytes)
                throw new SafetensorsFormatException(path, null, $"the header length {headerBytes} exceeds the format's limit of {SafetensorsHeader.MaxHeaderBytes} bytes");
            if ((long)headerBytes > length - 8)
                throw new SafetensorsFormatException(path, null, $"the header length {headerBytes} runs past the end of the file ({length - 8} bytes follow the length)");
            _data = start + 8 + (long)headerBytes;
            long dataBytes = length - 8 - (long)headerBytes;
            (Entries, Metadata) = SafetensorsHeader.Parse(path, new ReadOnlySpan<byte>(start + 8, (int)headerBytes), dataBytes);
            _byName = Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The file's path as given.</summary>
    public string Path { get; }

    /// <summary>Every tensor in the file, in data order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The "__metadata__" strings (empty when the file has none).</summary>
    public Dictionary<string, string> Metadata { get; }

    /// <summary>
    /// Copies tensor <paramref name="name"/> onto <paramref name="device"/> (default: the default device). A dtype
    /// the device does not hold (float64 on ILGPU devices) raises <see cref="NotSupportedException"/> naming file and tensor.
    /// </summary>
    public Tensor Read(string name, Device? device = null)
    {
        if (_data is null) throw new ObjectDisposedException(nameof(SafetensorsFile), $"Safetensors: '{Path}' was closed");
        if (!_byName.TryGetValue(name, out var e))
            throw new ArgumentException($"Safetensors.Read: '{Path}' has no tensor '{name}' (it has {Entries.Count}: {string.Join(", ", Entries.Take(8).Select(x => x.Name))}{(Entries.Count > 8 ? ", ..." : "")})", nameof(name));
        try { return Copy(e, device); }
        catch (NotSupportedException x)
        {
            throw new NotSupportedException($"Safetensors.Read: '{Path}': tensor '{name}' ({e.DTypeCode} as {e.LoadsAs}) cannot be placed on {device ?? Device.Default}: {x.Message}", x);
        }
    }

    private Tensor Copy(SafetensorsEntry e, Device? device)
    {
        byte* p = _data + e.Begin;
        int n = (int)e.ElementCount;   // the header check bounded it by Array.MaxLength
        // The format does not align tensors; x64 and Arm64 load unaligned elements, so typed spans over the mapping are fine.
        return e.DTypeCode switch
        {
            "F32" => Tensor.FromSpan(new ReadOnlySpan<float>(p, n), e.Shape, device),
            "F64" => Tensor.FromSpan(new ReadOnlySpan<double>(p, n), e.Shape, device),
            "I64" => Tensor.FromSpan(new ReadOnlySpan<long>(p, n), e.Shape, device),
            "F16" => Tensor.FromSpan<float>(SafetensorsConvert.HalfToSingle(new ReadOnlySpan<Half>(p, n)), e.Shape, device),
            "BF16" => Tensor.FromSpan<float>(SafetensorsConvert.BFloat16ToSingle(new ReadOnlySpan<ushort>(p, n)), e.Shape, device),
            "I32" => Tensor.FromSpan<long>(SafetensorsConvert.Widen(new ReadOnlySpan<int>(p, n)), e.Shape, device),
            "U8" => Tensor.FromSpan<long>(SafetensorsConvert.Widen(new ReadOnlySpan<byte>(p, n)), e.Shape, device),
            "BOOL" => Safetensors.FromBoolBytes(CheckBool(e, new ReadOnlySpan<byte>(p, n)), e.Shape, device),
            _ => throw new InvalidOperationException($"Safetensors.Read: dtype '{e.DTypeCode}' passed the header check without a reader"),
        };
    }

    private ReadOnlySpan<byte> CheckBool(SafetensorsEntry e, ReadOnlySpan<byte> raw)
    {
        int bad = raw.IndexOfAnyExcept((byte)0, (byte)1);
        if (bad >= 0) throw new SafetensorsFormatException(Path, e.Name, $"BOOL element {bad} is the byte {raw[bad]}, not 0 or 1");
        return raw;
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        _data = null;
        if (_pointerHeld) _view!.SafeMemoryMappedViewHandle.ReleasePointer();
        _pointerHeld = false;
        _view?.Dispose();
        _map.Dispose();
    }
}
