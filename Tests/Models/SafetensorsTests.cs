using System.Buffers.Binary;
using System.Text;
using AttnCore.Models.IO;
using NUnit.Framework;
using static AttnCore.Tests.Models.SafetensorsBytes;

namespace AttnCore.Tests.Models;

/// <summary>
/// The safetensors reader against files built byte by byte from the format's description: every dtype it
/// reads (values derived by hand from the IEEE bit patterns), every rule of the format (each broken on
/// its own, with the message naming file, tensor and rule), 64-bit offsets on a sparse file.
/// </summary>
[TestFixture, Category("Models")]
public class SafetensorsTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-st-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private string Write(byte[] bytes, string name = "t.safetensors")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private SafetensorsFormatException Rejects(string json, byte[] data, string? tensor, string fragment)
    {
        string path = Write(Build(json, data));
        var ex = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(path), json)!;
        Assert.That(ex.FilePath, Is.EqualTo(path));
        Assert.That(ex.TensorName, Is.EqualTo(tensor), ex.Message);
        Assert.That(ex.Message, Does.Contain(path).And.Contain(fragment), json);
        if (tensor is not null) Assert.That(ex.Message, Does.Contain($"'{tensor}'"));
        return ex;
    }

    [Test]
    public void Every_readable_dtype_loads_converted_exactly_from_a_file_laid_out_as_pytorch_writes_it()
    {
        string path = Write(EveryDType());
        var (t, meta) = Safetensors.Load(path);
        try
        {
            Assert.That(meta, Is.EqualTo(new Dictionary<string, string> { ["format"] = "pt" }));
            Assert.That(t.Keys, Is.EquivalentTo(new[] { "f64", "i32", "odd", "empty", "bf16", "f16", "u8", "mask" }));
            Assert.That(t["f64"].DType, Is.EqualTo(DType.Float64));
            Assert.That(t["f64"].ToArray<double>(), Is.EqualTo(new[] { 1.5, -0.25 }));
            Assert.That(t["i32"].DType, Is.EqualTo(DType.Int64));
            Assert.That(t["i32"].Shape, Is.EqualTo(new[] { 2, 2 }));
            Assert.That(t["i32"].ToArray<long>(), Is.EqualTo(new long[] { int.MinValue, -1, 0, int.MaxValue }));
            Assert.That(t["odd"].ToArray<float>(), Is.EqualTo(new[] { 3.25f, -7f }), "a float32 tensor at an odd byte offset");
            Assert.That(t["empty"].Shape, Is.EqualTo(new[] { 0, 3 }));
            // bfloat16 = the upper 16 bits of a float32: 0x3F80 = 1, 0xC049 = -(1 + 73/128)·2, 0x7F80 = +inf,
            // 0x0001 = the smallest subnormal 2^-133, 0x7FC0 = NaN.
            var bf = t["bf16"].ToArray<float>();
            Assert.That(t["bf16"].DType, Is.EqualTo(DType.Float32));
            Assert.That(bf[..4], Is.EqualTo(new[] { 1f, -3.140625f, float.PositiveInfinity, (float)Math.Pow(2, -133) }));
            Assert.That(float.IsNaN(bf[4]), Is.True);
            // binary16: 0x3C00 = 1, 0xC000 = -2, 0x7BFF = 65504 (largest), 0x0001 = 2^-24 (smallest subnormal),
            // 0x8000 = -0, 0x7C00 / 0xFC00 = +-inf, 0x3555 = (1 + 341/1024)·2^-2.
            var h = t["f16"].ToArray<float>();
            Assert.That(h, Is.EqualTo(new[] { 1f, -2f, 65504f, (float)Math.Pow(2, -24), -0f, float.PositiveInfinity, float.NegativeInfinity, 0.333251953125f }));
            Assert.That(float.IsNegative(h[4]), Is.True, "-0 keeps its sign");
            Assert.That(t["u8"].ToArray<long>(), Is.EqualTo(new long[] { 0, 1, 200, 255 }));
            Assert.That(t["mask"].DType, Is.EqualTo(DType.Bool));
            Assert.That(t["mask"].ToArray<bool>(), Is.EqualTo(new[] { true, false, true }));
        }
        finally { foreach (var x in t.Values) x.Dispose(); }
    }

    [Test]
    public void A_bool_mask_saves_as_BOOL_one_byte_each_and_loads_back_as_bool()
    {
        using var mask = Tensor.FromArray(new[] { true, false, false, true, true, false }, [2, 3]);
        string path = Path.Combine(Path.GetTempPath(), $"attncore-bool-{Guid.NewGuid():N}.safetensors");
        try
        {
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["mask"] = mask });
            byte[] bytes = File.ReadAllBytes(path);
            long headerLength = BitConverter.ToInt64(bytes, 0);
            string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
            Assert.That(header, Does.Contain("\"dtype\":\"BOOL\"").And.Contain("\"data_offsets\":[0,6]"));
            Assert.That(bytes[(8 + (int)headerLength)..], Is.EqualTo(new byte[] { 1, 0, 0, 1, 1, 0 }));
            var (t, _) = Safetensors.Load(path);
            using var back = t["mask"];
            Assert.That(back.DType, Is.EqualTo(DType.Bool));
            Assert.That(back.Shape, Is.EqualTo(new[] { 2, 3 }));
            Assert.That(back.ToArray<bool>(), Is.EqualTo(mask.ToArray<bool>()));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Save_then_load_restores_float32_float64_int64_scalars_and_empty_tensors_bit_for_bit()
    {
        using var a = Tensor.FromArray(new[] { 1f, float.NaN, -0f, float.Epsilon, float.MaxValue, -3.5f }, [2, 3]);
        using var b = Tensor.FromArray(new[] { Math.PI, double.NegativeInfinity }, [2]);
        using var c = Tensor.FromArray(new[] { long.MinValue, 0, long.MaxValue }, [3, 1]);
        using var s = Tensor.Scalar(2.5);
        using var e = Tensor.Zeros([4, 0], DType.Int64);
        string path = Path.Combine(_dir, "sub", "rt.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b, ["c"] = c, ["s"] = s, ["e"] = e }, new Dictionary<string, string> { ["k"] = "v\u00e9\"" });
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Is.EqualTo(new[] { path }), "no temporary file is left");
        var (t, meta) = Safetensors.Load(path);
        try
        {
            Assert.That(meta["k"], Is.EqualTo("v\u00e9\""));
            Assert.That(t["a"].ToArray<float>().Select(BitConverter.SingleToInt32Bits), Is.EqualTo(a.ToArray<float>().Select(BitConverter.SingleToInt32Bits)));
            Assert.That(t["b"].ToArray<double>(), Is.EqualTo(b.ToArray<double>()));
            Assert.That(t["c"].ToArray<long>(), Is.EqualTo(c.ToArray<long>()));
            Assert.That(t["c"].Shape, Is.EqualTo(new[] { 3, 1 }));
            Assert.That(t["s"].Shape, Is.Empty);
            Assert.That(t["s"].Item(), Is.EqualTo(2.5));
            Assert.That(t["e"].Shape, Is.EqualTo(new[] { 4, 0 }));
            Assert.That(t["e"].DType, Is.EqualTo(DType.Int64));
        }
        finally { foreach (var x in t.Values) x.Dispose(); }
    }

    [Test]
    public void A_failed_save_leaves_the_previous_file_intact_and_no_temporary_behind()
    {
        string path = Path.Combine(_dir, "keep.safetensors");
        using var good = Tensor.FromArray(new[] { 1f, 2f });
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["w"] = good });
        var disposed = Tensor.FromArray(new[] { 3f });
        disposed.Dispose();
        // "a" is written first; the disposed "z" fails half-way through the data.
        Assert.Throws<ObjectDisposedException>(() => Safetensors.Save(path, new Dictionary<string, Tensor> { ["a"] = good, ["z"] = disposed }));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { path }), "the temporary was deleted");
        var (t, _) = Safetensors.Load(path);
        Assert.That(t.Keys, Is.EqualTo(new[] { "w" }));
        Assert.That(t["w"].ToArray<float>(), Is.EqualTo(new[] { 1f, 2f }));
        t["w"].Dispose();
        Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new Dictionary<string, Tensor> { ["__metadata__"] = good }));
    }

    [Test]
    public void Offsets_near_2_pow_63_are_rejected_instead_of_wrapping_into_the_header()
    {
        // The old reader added the data start to end = 2^63 - 4 (wrapping negative, so "inside the file") and
        // cast begin to int (-12), reading the tensor out of the header's own bytes.
        long end = long.MaxValue - 3, begin = end - 8;
        Rejects($"{{\"w\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{begin},{end}]}}}}", new byte[8], "w", "reach past the data region");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775808]}}", new byte[8], "w", "not an integer in [0, 2^63)");
    }

    [Test]
    public void A_shape_whose_element_count_overflows_is_rejected()
    {
        // 65536^4 = 2^64 wrapped to 0 elements in the old reader, which then matched the empty offsets [0, 0]
        // and made a tensor that claims 2^64 elements over no data.
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", [], "w", "more than 2^63 elements");
        Rejects("{\"w\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647],\"data_offsets\":[0,0]}}", [], "w", "more than 2^63 bytes");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[3,-1],\"data_offsets\":[0,0]}}", [], "w", "shape entry 1 is -1");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648],\"data_offsets\":[0,0]}}", [], "w", "shape entry 0 is 2147483648");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", [], "w", "shape entry 0 is 1.5");
    }

    [Test]
    public void The_data_region_must_be_covered_exactly_no_overlap_hole_trailing_bytes_or_duplicate()
    {
        const string a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
        Rejects($"{{{a},\"b\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}}}", new byte[8], "b", "overlap tensor 'a'");
        Rejects($"{{{a},\"b\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}}}", new byte[16], "b", "bytes [8, 12) before it belong to no tensor");
        Rejects($"{{{a}}}", new byte[9], null, "bytes [8, 9) at the end of the data region belong to no tensor");
        Rejects($"{{{a},{a}}}", new byte[8], "a", "appears twice");
        Rejects("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", new byte[8], "a", "appears twice");
        Rejects("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", new byte[8], "a", "hold 8 bytes, but shape [3] of F32 needs 12");
        Rejects("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", new byte[8], "a", "end before they begin");
    }

    [Test]
    public void Malformed_headers_raise_the_format_exception_naming_file_tensor_and_rule()
    {
        Rejects("[1,2]", [], null, "does not start with '{'");
        Rejects("{\"a\":", [], null, "not valid JSON");
        Rejects(" {}", [], null, "does not start with '{'");
        Rejects("{\"__metadata__\":{\"k\":1}}", [], null, "entry 'k' is a JSON Number, not a string");
        Rejects("{\"__metadata__\":[]}", [], null, "not an object of strings");
        Rejects("{\"__metadata__\":{},\"__metadata__\":{}}", [], null, "appears twice");
        Rejects("{\"w\":[]}", [], "w", "not an object with dtype, shape and data_offsets");
        Rejects("{\"w\":{\"shape\":[],\"data_offsets\":[0,0]}}", [], "w", "missing field dtype");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", new byte[4], "w", "missing field shape");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[]}}", [], "w", "missing field data_offsets");
        Rejects("{\"w\":{\"dtype\":32,\"shape\":[],\"data_offsets\":[0,4]}}", new byte[4], "w", "dtype is a JSON Number");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", new byte[8], "w", "shape is a JSON String");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0]}}", new byte[4], "w", "not an array [begin, end]");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,\"4\"]}}", new byte[4], "w", "data_offsets entry 1 is \"4\"");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":1}}", new byte[4], "w", "unknown field 'x'");
        Rejects("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", new byte[4], "w", "'dtype' appears twice");
        Rejects("{\"w\":{\"dtype\":\"Q4\",\"shape\":[],\"data_offsets\":[0,4]}}", new byte[4], "w", "unknown dtype 'Q4'");
        Rejects("{\"w\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}", new byte[4], "w", "dtype 'I16' is not one AttnCore reads");
        Rejects("{\"w\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", [1, 2], "w", "BOOL element 1 is the byte 2");
        Rejects("{\"\\ud800\":{}}", [], null, "not valid JSON");
        Rejects("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}", [], null, "not valid JSON");
        // Not UTF-8: a lone continuation byte inside a name.
        var bad = Build("{\"w?\":{}}", []);
        bad[8 + 3] = 0x80;
        var ex = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(Write(bad)))!;
        Assert.That(ex.Message, Does.Contain("not valid UTF-8"));
    }

    [Test]
    public void Header_lengths_are_checked_against_the_file_and_the_100_MB_limit()
    {
        string shortFile = Write([1, 2, 3]);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(shortFile))!.Message, Does.Contain("3 bytes, too short").And.Contain(shortFile));
        var longHeader = Build("{}", []);
        BinaryPrimitives.WriteUInt64LittleEndian(longHeader, 1000);
        string past = Write(longHeader);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(past))!.Message, Does.Contain("runs past the end of the file"));
        BinaryPrimitives.WriteUInt64LittleEndian(longHeader, ulong.MaxValue);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(Write(longHeader)))!.Message, Does.Contain("exceeds the format's limit"));
        // A 150 MB header inside a 150 MB (sparse) file: the old reader read it whole and parsed it.
        string big = Path.Combine(_dir, "big-header.safetensors");
        using (var fs = new FileStream(big, FileMode.Create))
        {
            fs.Write(BitConverter.GetBytes(150_000_000UL));
            fs.SetLength(8 + 150_000_000L);
        }
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(big))!.Message, Does.Contain("exceeds the format's limit of 100000000 bytes"));
        Assert.Throws<FileNotFoundException>(() => Safetensors.Load(Path.Combine(_dir, "missing.safetensors")));
    }

    // A sparse file (no disk blocks for the holes) with tensors past 2^31 and 2^32 bytes into the data region.
    private string SparseFile(string json, long dataBytes, long tailAt, byte[] tail)
    {
        string path = Path.Combine(_dir, "sparse.safetensors");
        var head = Build(json, [], padTo: 8);
        using var fs = new FileStream(path, FileMode.Create);
        fs.Write(head);
        fs.SetLength(head.Length + dataBytes);
        fs.Position = head.Length + tailAt;
        fs.Write(tail);
        return path;
    }

    [Test]
    public void Offsets_past_4_GB_are_read_with_64_bit_arithmetic_from_a_memory_map()
    {
        const long a = 2_000_000_000, b = 2_400_000_000, tailAt = a + b;   // "tail" starts past 2^32
        string json = $"{{\"a\":{{\"dtype\":\"U8\",\"shape\":[{a}],\"data_offsets\":[0,{a}]}}," +
                      $"\"b\":{{\"dtype\":\"F32\",\"shape\":[{b / 4}],\"data_offsets\":[{a},{tailAt}]}}," +
                      $"\"tail\":{{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[{tailAt},{tailAt + 16}]}}}}";
        string path = SparseFile(json, tailAt + 16, tailAt, Bytes(6.5, -1e300));
        using (var f = Safetensors.Open(path))
        {
            Assert.That(f.Entries.Select(e => (e.Name, e.Begin, e.End)), Is.EqualTo(new[] { ("a", 0L, a), ("b", a, tailAt), ("tail", tailAt, tailAt + 16) }));
            Assert.That(f.Entries[1].ElementCount, Is.EqualTo(b / 4));
            using var tail = f.Read("tail");
            Assert.That(tail.ToArray<double>(), Is.EqualTo(new[] { 6.5, -1e300 }));
            Assert.Throws<ArgumentException>(() => f.Read("nope"));
        }
        // The same file one byte short at the end, and with a hole past 2^32.
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(fs.Length - 1);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Open(path))!.Message, Does.Contain("'tail'").And.Contain($"reach past the data region, which holds {tailAt + 15} bytes"));
        string holed = SparseFile(json.Replace($"[{tailAt},{tailAt + 16}]", $"[{tailAt + 8},{tailAt + 24}]"), tailAt + 24, tailAt, []);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Open(holed))!.Message, Does.Contain($"bytes [{tailAt}, {tailAt + 8}) before it belong to no tensor"));
        // More elements than an engine tensor holds (Array.MaxLength), though the file has the bytes.
        long huge = 2_200_000_000;
        string tooMany = SparseFile($"{{\"u\":{{\"dtype\":\"U8\",\"shape\":[2,{huge / 2}],\"data_offsets\":[0,{huge}]}}}}", huge, 0, []);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => Safetensors.Open(tooMany))!.Message, Does.Contain("more than an AttnCore tensor holds"));
    }

    [Test, Explicit("loads 2.4 GB of tensors (needs ~5 GB of memory)")]
    public void A_checkpoint_over_2_GB_loads_whole()
    {
        const long n = 300_000_000, bytes = 4 * n;
        string json = $"{{\"a\":{{\"dtype\":\"F32\",\"shape\":[{n}],\"data_offsets\":[0,{bytes}]}},\"b\":{{\"dtype\":\"F32\",\"shape\":[{n}],\"data_offsets\":[{bytes},{2 * bytes}]}}}}";
        string path = SparseFile(json, 2 * bytes, 2 * bytes - 4, Bytes(42f));
        var (t, _) = Safetensors.Load(path);
        try
        {
            Assert.That(new FileInfo(path).Length, Is.GreaterThan(int.MaxValue));
            Assert.That(t["b"].Numel, Is.EqualTo(n));
            using var last = t["b"].Narrow(0, (int)n - 2, 2);
            Assert.That(last.ToArray<float>(), Is.EqualTo(new[] { 0f, 42f }));
        }
        finally { foreach (var x in t.Values) x.Dispose(); }
    }
}
