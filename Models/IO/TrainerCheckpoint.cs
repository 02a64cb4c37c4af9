using System.Text.Json;
using System.Text.Json.Serialization;
using AttnCore.Models.Nn;
using AttnCore.Models.Training;
using AttnCore.Optim;

namespace AttnCore.Models.IO;

/// <summary>
/// Reads the <c>checkpoint.bin</c> that <see cref="Trainer"/> writes (BinaryWriter, little-endian): the magic
/// "AttnCore.Checkpoint/1", step (int32), elapsed seconds (double), the state dict (count, then name and
/// <see cref="TensorIO"/> tensor per entry), the optimizer state, a schedule flag and state, the data
/// generator's xoshiro state, and the metric history as JSON. Every field is checked as it is read (a
/// negative step or count, a duplicate name, a shape that needs more bytes than the file holds, an
/// all-zero or infinite generator state, a truncated file, bytes after the end) and any failure, including a state
/// that does not fit the model, optimizer or schedule, raises <see cref="CheckpointFormatException"/>
/// naming the file and the problem. The model, optimizer and schedule are restored as the reader goes,
/// so after a failure they may hold part of the checkpoint: the run must not go on from them.
/// </summary>
public static class TrainerCheckpoint
{
    /// <summary>The first field of every checkpoint.</summary>
    public const string Magic = "AttnCore.Checkpoint/1";

    private const string Reader = "Trainer checkpoint";

    // Non-finite losses may be stored as "NaN"/"Infinity" strings; plain numbers read as before.
    private static readonly JsonSerializerOptions HistoryJson = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>
    /// Restores <paramref name="model"/>, <paramref name="optimizer"/>, <paramref name="scheduler"/> and
    /// <paramref name="dataGenerator"/> from <paramref name="path"/>; returns the step, the seconds trained
    /// so far and the metric history.
    /// </summary>
    public static (int Step, double Elapsed, List<TrainerMetric> History) Load(string path, Module model, Optimizer optimizer, LRScheduler? scheduler, Generator dataGenerator)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Reader}: no file at '{path}'", path);
        CheckpointFormatException Bad(string problem, Exception? inner = null) => new(Reader, path, problem, inner);
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            using var r = new BinaryReader(fs);
            if (r.ReadString() != Magic) throw Bad($"not an AttnCore trainer checkpoint (it does not start with \"{Magic}\")");
            int step = r.ReadInt32();
            if (step < 0) throw Bad($"the step is {step}, negative");
            double elapsed = r.ReadDouble();
            if (!double.IsFinite(elapsed) || elapsed < 0) throw Bad($"the elapsed time is {elapsed} s, not a finite non-negative number");
            int count = r.ReadInt32();
            if (count < 0 || count > fs.Length - fs.Position) throw Bad($"the state dict count {count} is impossible for a file of {fs.Length} bytes");
            var loaded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                for (int i = 0; i < count; i++)
                {
                    string name = r.ReadString();
                    if (loaded.ContainsKey(name)) throw Bad($"the state dict holds '{name}' twice");
                    loaded[name] = TensorIO.Read(r, Device.Cpu);
                }
                model.LoadStateDict(loaded);
            }
            finally { foreach (var t in loaded.Values) t.Dispose(); }
            optimizer.LoadState(r);
            bool hasSchedule = r.ReadBoolean();
            if (hasSchedule != scheduler is not null)
                throw Bad(hasSchedule ? "it has a schedule state but the run has no schedule" : "it has no schedule state but the run has a schedule");
            scheduler?.LoadState(r);
            var generator = (r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), Spare: r.ReadDouble());
            if (double.IsInfinity(generator.Spare)) throw Bad($"the data generator's cached normal sample is {generator.Spare}");
            dataGenerator.State = generator;
            var history = JsonSerializer.Deserialize<List<TrainerMetric?>>(r.ReadString(), HistoryJson)
                ?? throw Bad("the metric history is null");
            if (history.IndexOf(null) is >= 0 and var at) throw Bad($"the metric history has null at entry {at}");
            if (fs.Position != fs.Length) throw Bad($"{fs.Length - fs.Position} bytes follow the end of the checkpoint");
            return (step, elapsed, history.Select(h => h!).ToList());
        }
        catch (EndOfStreamException e) { throw Bad("the file ends early (truncated)", e); }
        catch (Exception e) when (e is not CheckpointFormatException && e is IOException or InvalidDataException or ArgumentException or JsonException or FormatException or OverflowException)
        {
            // BinaryReader (a negative or over-long 7-bit string length), TensorIO and the optimizer/schedule (InvalidDataException),
            // LoadStateDict and the generator (ArgumentException: names, shapes, a zero state), the history JSON.
            throw Bad(e.Message, e);
        }
    }
}
