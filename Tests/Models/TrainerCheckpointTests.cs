using System.Buffers.Binary;
using AttnCore.Models.IO;
using AttnCore.Models.Nn;
using AttnCore.Models.Training;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// The trainer's checkpoint.bin reader: a real checkpoint restores exactly; each kind of corruption raises
/// <see cref="CheckpointFormatException"/> naming the file and the problem; seeded mutations never raise
/// anything else.
/// </summary>
[TestFixture, Category("Models")]
public class TrainerCheckpointTests
{
    private string _dir = "";
    private byte[] _checkpoint = [];
    private float[] _weight = [];
    private (ulong, ulong, ulong, ulong, double) _generatorState;

    // A two-step run of a 3 -> 2 linear model with AdamW and a step schedule writes the checkpoint all tests read.
    [OneTimeSetUp]
    public void Train()
    {
        Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-ckpt-" + Guid.NewGuid().ToString("N")));
        var (model, opt, schedule, data) = Parts();
        using (model)
        using (opt)
        {
            using var x = Tensor.FromArray(new[] { 1f, -2f, 0.5f, 3f, 0f, -1f }, [2, 3]);
            new Trainer(model, opt, schedule, data, new TrainerOptions { Steps = 2, EvalEvery = 1, RunDirectory = Path.Combine(_dir, "run") })
                .Run(() => { data.NextUInt64(); return model.Forward(x).Square().Mean(); }, () => 0.5);
            _checkpoint = File.ReadAllBytes(Path.Combine(_dir, "run", "checkpoint.bin"));
            _weight = model.Weight.ToArray<float>();
            _generatorState = data.State;
        }
    }

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private static (Linear Model, AdamW Optimizer, StepDecay Schedule, Generator Data) Parts(int outFeatures = 2)
    {
        var model = new Linear(3, outFeatures, generator: new Generator(1));
        var opt = new AdamW(model.Parameters(), 0.1);
        return (model, opt, new StepDecay(opt, 1, 0.5), new Generator(2));
    }

    private string Write(byte[] bytes)
    {
        string path = Path.Combine(_dir, $"mutant-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static (int Step, double Elapsed, List<TrainerMetric> History) Load(string path, int outFeatures = 2)
    {
        var (model, opt, schedule, data) = Parts(outFeatures);
        using (model) using (opt) return TrainerCheckpoint.Load(path, model, opt, schedule, data);
    }

    private CheckpointFormatException Rejects(byte[] bytes, string fragment, int outFeatures = 2)
    {
        string path = Write(bytes);
        var ex = Assert.Throws<CheckpointFormatException>(() => Load(path, outFeatures))!;
        Assert.That(ex.FilePath, Is.EqualTo(path));
        Assert.That(ex.Message, Does.StartWith($"Trainer checkpoint: '{path}': ").And.Contain(fragment));
        return ex;
    }

    // Field positions: the magic (1 length byte + 21), step, elapsed, count, then the first state entry,
    // "bias" (1 + 4 bytes), whose dtype, rank and dims follow.
    private const int StepAt = 22, CountAt = 34, DTypeAt = 43, RankAt = 47, DimsAt = 51;

    private byte[] With(int at, int value)
    {
        var bytes = (byte[])_checkpoint.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), value);
        return bytes;
    }

    [Test]
    public void A_checkpoint_restores_step_weights_history_and_generator_exactly()
    {
        var (model, opt, schedule, data) = Parts();
        using (model)
        using (opt)
        {
            var (step, elapsed, history) = TrainerCheckpoint.Load(Write(_checkpoint), model, opt, schedule, data);
            Assert.That(step, Is.EqualTo(2));
            Assert.That(elapsed, Is.GreaterThan(0));
            Assert.That(history.Select(h => h.Step), Is.EqualTo(new[] { 1, 2 }));
            Assert.That(model.Weight.ToArray<float>(), Is.EqualTo(_weight));
            Assert.That(data.State, Is.EqualTo(_generatorState));
            Assert.That(opt.StepCount, Is.EqualTo(2));
        }
    }

    [Test]
    public void Each_corruption_raises_the_checkpoint_exception_naming_file_and_problem()
    {
        Rejects(_checkpoint[..(_checkpoint.Length / 2)], "the file ends early (truncated)");
        Rejects([.. _checkpoint, 0], "1 bytes follow the end of the checkpoint");
        Rejects(With(1, 0x41414141), "not an AttnCore trainer checkpoint");
        Rejects(With(StepAt, -5), "the step is -5");
        Rejects(With(CountAt, int.MaxValue), $"the state dict count {int.MaxValue} is impossible");
        // The old reader: ArgumentOutOfRangeException from DType.SizeOf, not naming the file.
        Rejects(With(DTypeAt, 99), "unknown dtype code 99");
        // Four dims of 65536 (= 2^64 elements) wrapped to 0 elements in the old reader.
        var overflow = With(RankAt, 4);
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteInt32LittleEndian(overflow.AsSpan(DimsAt + 4 * i), 65536);
        Rejects(overflow, "shape [65536,65536,65536,65536] needs more than the");
        Rejects(_checkpoint, "LoadStateDict", outFeatures: 4);
    }

    [Test]
    public void Resuming_from_a_corrupted_checkpoint_stops_the_trainer_with_the_checkpoint_exception()
    {
        string run = Path.Combine(_dir, "resume");
        Directory.CreateDirectory(run);
        File.WriteAllBytes(Path.Combine(run, "checkpoint.bin"), _checkpoint[..100]);
        var (model, opt, schedule, data) = Parts();
        using (model)
        using (opt)
        {
            var trainer = new Trainer(model, opt, schedule, data, new TrainerOptions { Steps = 3, RunDirectory = run, Resume = true });
            var ex = Assert.Throws<CheckpointFormatException>(() => trainer.Run(() => throw new InvalidOperationException("no step may run"), () => 0))!;
            Assert.That(ex.Message, Does.Contain(Path.Combine(run, "checkpoint.bin")));
        }
    }

    [Test]
    public void Mutated_checkpoints_load_or_raise_the_checkpoint_exception_and_nothing_else()
    {
        const int seed = 1202, iterations = 400;
        var rng = new Random(seed);
        int loaded = 0;
        for (int i = 0; i < iterations; i++)
        {
            var bytes = (byte[])_checkpoint.Clone();
            string what;
            switch (rng.Next(4))
            {
                case 0:
                    int flips = rng.Next(1, 4);
                    for (int k = 0; k < flips; k++) bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));
                    what = $"{flips} bit flips";
                    break;
                case 1:
                    bytes = bytes[..rng.Next(bytes.Length)];
                    what = $"truncated to {bytes.Length}";
                    break;
                case 2:
                    int at = rng.Next(bytes.Length - 4), value = new[] { -1, 0, int.MaxValue, int.MinValue, 65536, 17, rng.Next() }[rng.Next(7)];
                    BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), value);
                    what = $"int {value} at {at}";
                    break;
                default:
                    int pos = rng.Next(bytes.Length - 8);
                    BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(pos), new[] { double.NaN, double.PositiveInfinity, -1, 1e300 }[rng.Next(4)]);
                    what = $"double at {pos}";
                    break;
            }
            string path = Write(bytes);
            try { Load(path); loaded++; }
            catch (CheckpointFormatException e) { Assert.That(e.Message, Does.Contain(path), $"seed {seed}, mutant {i}: {what}"); }
            catch (Exception e) when (e is not AssertionException) { Assert.Fail($"seed {seed}, mutant {i}: {what}: {e.GetType().Name}: {e.Message}"); }
            finally { File.Delete(path); }
        }
        TestContext.Out.WriteLine($"seed {seed}: {loaded} of {iterations} mutants loaded (flips in weights, moments, times)");
    }
}
