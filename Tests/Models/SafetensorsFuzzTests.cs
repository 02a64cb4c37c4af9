using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using AttnCore.Models.IO;
using NUnit.Framework;
using static AttnCore.Tests.Models.SafetensorsBytes;

namespace AttnCore.Tests.Models;

/// <summary>
/// Seeded mutations of valid safetensors files (byte flips, truncation, header-length changes, JSON edits of
/// offsets, shapes, dtypes and types, duplicated and deleted entries, trailing bytes). Every mutant either
/// loads, and then each tensor holds exactly the bytes its entry declares inside the data region (decoded
/// here independently) and the entries cover the data region, or raises <see cref="SafetensorsFormatException"/>
/// naming the file. Anything else fails the test with the seed, the iteration and the mutation.
/// </summary>
[TestFixture, Category("Models")]
public class SafetensorsFuzzTests
{
    private const int Seed = 20261202;
    private string _dir = "";
    private byte[][] _seeds = [];

    [OneTimeSetUp]
    public void MakeSeeds()
    {
        Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-stfuzz-" + Guid.NewGuid().ToString("N")));
        using var a = Tensor.FromArray(new[] { 1f, -2f, 3.5f, 0f, 5f, 6f }, [2, 3]);
        using var b = Tensor.FromArray(new long[] { 7, -8, 9, long.MaxValue });
        using var c = Tensor.Scalar(0.125, DType.Float64);
        using var e = Tensor.Zeros([0]);
        string saved = Path.Combine(_dir, "saved.safetensors");
        Safetensors.Save(saved, new Dictionary<string, Tensor> { ["blocks.0.w"] = a, ["ids"] = b, ["scale"] = c, ["none"] = e }, new Dictionary<string, string> { ["step"] = "3" });
        _seeds = [File.ReadAllBytes(saved), EveryDType()];
    }

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    [Test]
    public void Mutated_files_load_exactly_what_they_declare_or_raise_the_format_exception_naming_the_file() => Fuzz(Seed, 1500);

    [Test, Explicit("long fuzz run: ATTNCORE_FUZZ_SEED and ATTNCORE_FUZZ_ITERATIONS override the seed and the count")]
    public void Long_fuzz_run() =>
        Fuzz(int.TryParse(Environment.GetEnvironmentVariable("ATTNCORE_FUZZ_SEED"), out int s) ? s : Seed + 1,
             int.TryParse(Environment.GetEnvironmentVariable("ATTNCORE_FUZZ_ITERATIONS"), out int n) ? n : 200_000);

    private void Fuzz(int seed, int iterations)
    {
        TestContext.Out.WriteLine($"seed {seed}, {iterations} mutants");
        var rng = new Random(seed);
        string path = Path.Combine(_dir, "mutant.safetensors");
        int loaded = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++)
        {
            var (bytes, what) = Mutate(rng, _seeds[rng.Next(_seeds.Length)]);
            if (rng.Next(4) == 0) { var (more, also) = Mutate(rng, bytes); (bytes, what) = (more, what + " then " + also); }
            File.WriteAllBytes(path, bytes);
            string context = $"seed {seed}, mutant {i}: {what}";
            try
            {
                var (tensors, _) = Safetensors.Load(path);
                try { CheckAccepted(bytes, tensors, context); }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
                loaded++;
            }
            catch (SafetensorsFormatException e)
            {
                if (e.FilePath != path || !e.Message.Contains(path)) Assert.Fail($"{context}: the message does not name the file: {e.Message}");
            }
            catch (Exception e) when (e is not AssertionException)
            {
                Assert.Fail($"{context}: {e.GetType().Name}: {e.Message}");
            }
        }
        TestContext.Out.WriteLine($"{loaded} of {iterations} mutants were valid files and loaded ({clock.Elapsed.TotalSeconds:F1} s)");
    }

    // An accepted file is one the format allows: re-derive every tensor from the bytes at its declared offsets.
    private static void CheckAccepted(byte[] file, Dictionary<string, Tensor> tensors, string context)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        using var doc = JsonDocument.Parse(file.AsMemory(8, (int)n));
        var entries = doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__").ToArray();
        Assert.That(tensors.Keys, Is.EquivalentTo(entries.Select(p => p.Name)), context);
        Assert.That(entries.Sum(p => p.Value.GetProperty("data_offsets")[1].GetInt64() - p.Value.GetProperty("data_offsets")[0].GetInt64()),
            Is.EqualTo(file.Length - 8 - n), $"{context}: the entries cover the data region");
        foreach (var p in entries)
        {
            var (floats, ints, inside) = Expected(file, p.Value);
            Assert.That(inside, Is.True, $"{context}: '{p.Name}' lies inside the data region");
            var t = tensors[p.Name];
            Assert.That(t.Shape, Is.EqualTo(p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray()), context);
            if (floats is not null)
            {
                var actual = t.DType == DType.Float64 ? t.ToArray<double>() : t.ToArray<float>().Select(v => (double)v).ToArray();
                Assert.That(actual.Select(Bits), Is.EqualTo(floats.Select(Bits)), $"{context}: '{p.Name}'");
            }
            else Assert.That(t.ToArray<long>(), Is.EqualTo(ints), $"{context}: '{p.Name}'");
        }
    }

    // Exact bits (so -0 and 0 differ), every NaN alike: a NaN payload may change on its way through float.
    private static long Bits(double v) => double.IsNaN(v) ? -1 : BitConverter.DoubleToInt64Bits(v);

    private static readonly string[] Numbers = ["0", "1", "-1", "2", "3", "7", "8", "16", "65", "73", "2147483647", "2147483648", "4294967296", "-0",
        "9223372036854775807", "9223372036854775808", "18446744073709551615", "1e400", "0.5", "1e3", "65536"];
    private static readonly string[] DTypes = ["F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL", "I16", "U64", "F8_E4M3", "f32", "", "F32 "];
    private static readonly string[] Values = ["null", "\"x\"", "[]", "{}", "true", "[[1]]", "1", "[0,0]", "[-1]", "{\"dtype\":\"F32\"}"];
    private static readonly Regex Number = new(@"-?\d+(\.\d+)?([eE][+-]?\d+)?");
    private static readonly Regex Entry = new("\"[^\"]*\":\\{\"dtype\"[^}]*\\}");
    private static readonly Regex Field = new("\"(dtype|shape|data_offsets|format|step|__metadata__)\":(\"[^\"]*\"|\\[[^\\]]*\\]|\\{[^}]*\\})");

    private static (byte[] Bytes, string What) Mutate(Random rng, byte[] file)
    {
        var bytes = (byte[])file.Clone();
        switch (rng.Next(10))
        {
            case 0:
            {
                int flips = rng.Next(1, 5), at = 0;
                for (int k = 0; k < flips; k++) { at = rng.Next(bytes.Length); bytes[at] ^= (byte)(1 << rng.Next(8)); }
                return (bytes, $"{flips} bit flips (last at byte {at})");
            }
            case 1:
            {
                int keep = rng.Next(bytes.Length);
                return (bytes[..keep], $"truncated to {keep} bytes");
            }
            case 2:
            {
                ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
                ulong[] choices = [n + 1, n - 1, n + 8, n - 8, (ulong)rng.Next(bytes.Length + 16), ulong.MaxValue, 1UL << 63, 100_000_001, 0];
                ulong pick = choices[rng.Next(choices.Length)];
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, pick);
                return (bytes, $"header length {n} -> {pick}");
            }
            case 3:
                return (bytes.Concat(Enumerable.Range(0, rng.Next(1, 17)).Select(_ => (byte)rng.Next(256))).ToArray(), "trailing bytes");
        }
        if (!TrySplit(bytes, out var json, out var data)) return (bytes, "unchanged (header not text)");
        string edited, what;
        switch (rng.Next(6))
        {
            case 0:
            {
                var m = Pick(rng, Number.Matches(json));
                string v = rng.Next(3) == 0 && long.TryParse(m?.Value, out long old) ? (old + rng.Next(-9, 10)).ToString() : Numbers[rng.Next(Numbers.Length)];
                (edited, what) = m is null ? (json, "no number") : (Replace(json, m, v), $"number '{m.Value}' at {m.Index} -> {v}");
                break;
            }
            case 1:
            {
                var m = Pick(rng, new Regex("\"dtype\":\"[^\"]*\"").Matches(json));
                string v = $"\"dtype\":\"{DTypes[rng.Next(DTypes.Length)]}\"";
                (edited, what) = m is null ? (json, "no dtype") : (Replace(json, m, v), $"{m.Value} -> {v}");
                break;
            }
            case 2:
            {
                var m = Pick(rng, Entry.Matches(json));
                string copy = m is null ? "" : rng.Next(2) == 0 ? m.Value : "\"other\"" + m.Value[m.Value.IndexOf(':')..];
                (edited, what) = m is null ? (json, "no entry") : (json.Insert(m.Index, copy + ","), $"entry copied: {copy}");
                break;
            }
            case 3:
            {
                var m = Pick(rng, Field.Matches(json));
                string v = Values[rng.Next(Values.Length)];
                (edited, what) = m is null ? (json, "no field") : (Replace(json, m, m.Value[..(m.Value.IndexOf(':') + 1)] + v), $"{m.Value} -> {v}");
                break;
            }
            case 4:
            {
                var m = Pick(rng, Field.Matches(json));
                if (m is null) { (edited, what) = (json, "no field"); break; }
                bool comma = m.Index + m.Length < json.Length && json[m.Index + m.Length] == ',';
                (edited, what) = rng.Next(2) == 0
                    ? (json.Remove(m.Index, m.Length + (comma ? 1 : 0)), $"field deleted: {m.Value}")
                    : (json.Insert(m.Index, "\"extra\":1,"), $"unknown field before {m.Value}");
                break;
            }
            default:
            {
                var offsets = new Regex("\"data_offsets\":\\[[^\\]]*\\]").Matches(json);
                if (offsets.Count < 2) { (edited, what) = (json, "fewer than two entries"); break; }
                int x = rng.Next(offsets.Count), y = (x + 1 + rng.Next(offsets.Count - 1)) % offsets.Count;
                var (first, second) = offsets[x].Index < offsets[y].Index ? (offsets[x], offsets[y]) : (offsets[y], offsets[x]);
                edited = json[..first.Index] + second.Value + json[(first.Index + first.Length)..second.Index] + first.Value + json[(second.Index + second.Length)..];
                what = $"offsets swapped: {first.Value} <-> {second.Value}";
                break;
            }
        }
        return (Build(edited, data, padTo: rng.Next(2) == 0 ? 1 : 8), "JSON " + what);
    }

    private static bool TrySplit(byte[] file, out string json, out byte[] data)
    {
        (json, data) = ("", []);
        if (file.Length < 8) return false;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n > (ulong)(file.Length - 8)) return false;
        try { json = new UTF8Encoding(false, true).GetString(file, 8, (int)n); }
        catch (DecoderFallbackException) { return false; }
        data = file[(8 + (int)n)..];
        return true;
    }

    private static Match? Pick(Random rng, MatchCollection matches) => matches.Count == 0 ? null : matches[rng.Next(matches.Count)];

    private static string Replace(string s, Match m, string with) => s[..m.Index] + with + s[(m.Index + m.Length)..];
}
