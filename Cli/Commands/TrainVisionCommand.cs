using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Models.Data.Vision;
using AttnCore.Models.Training;
using AttnCore.Models.Vision;
using AttnCore.Optim;
using AttnCore.Presentation.Vision;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore train vision</c>: a ResNet (plain, SE, CBAM or MHSA) on an image-classification set, with the CIFAR
/// recipe: SGD with Nesterov momentum, weight decay on the weight matrices and kernels, a one-cycle or cosine schedule,
/// label smoothing, random crop with padding and horizontal flip; the test set evaluated after every epoch (optionally
/// with flip test-time augmentation, <see cref="VisionEvaluation"/>). The run folder
/// gets checkpoints (atomic, resumable), metrics.json and epochs.json, loss.png and curves.png, the model with its
/// classes and normalisation (vision.safetensors, what <c>classify</c> reads), confusion.png, gradcam.png and, for CBAM and
/// MHSA models, attention.png.
/// </summary>
public static class TrainVisionCommand
{
    /// <summary>Builds <c>train vision</c>.</summary>
    public static Command Create(CliIO commandIO)
    {
        var common = new CommonOptions();
        var distributed = new DistributedOptions();
        var data = PathRule.ExistingPath("--data", "an MNIST-layout IDX folder (Fashion-MNIST: /usr/share/datasets/fashion-mnist), a folder with train/ and test/ class folders of PNG/JPEG images, or a .tar/.tar.gz of one (../shared/data/cifar10-jpeg.tar.gz)");
        var model = new Option<string>("--model") { Description = "the network: " + string.Join(" | ", VisionModels.Names), DefaultValueFactory = _ => "resnet20" }
            .AcceptOnlyFromAmong([.. VisionModels.Names]);
        var epochs = NumericOption.Int("--epochs", "passes over the training set", 30, 1, 100_000);
        var batch = NumericOption.Int("--batch", "images per step", 128, 1, 65536);
        var lr = NumericOption.Number("--lr", "peak learning rate (SGD)", 0.1, 0, 100, minExclusive: true);
        var momentum = NumericOption.Number("--momentum", "SGD momentum (Nesterov)", 0.9, 0, 1, minExclusive: true, maxExclusive: true);
        var wd = NumericOption.Number("--weight-decay", "L2 weight decay on convolution kernels and linear weights (not on BatchNorm or biases)", 5e-4, 0, 1);
        var schedule = new Option<string>("--schedule") { Description = "learning-rate schedule over the whole run: onecycle (PyTorch's OneCycleLR, 30% warm-up) or cosine (no warm-up)", DefaultValueFactory = _ => "onecycle" }
            .AcceptOnlyFromAmong("onecycle", "cosine");
        var smoothing = NumericOption.Number("--label-smoothing", "label smoothing of the training loss", 0.1, 0, 1, maxExclusive: true);
        var padding = NumericOption.Int("--crop-padding", "zero pixels on each side before the random crop (0 = no crop)", 4, 0, 64);
        var noFlip = new Option<bool>("--no-flip") { Description = "no random horizontal flip" };
        var erasing = NumericOption.Number("--random-erasing", "probability of Random Erasing (torchvision's RandomErasing: a random rectangle of 2-33% of the image set to the mean pixel; 0 = off)", 0, 0, 1);
        var limitTrain = NumericOption.OptionalInt("--limit-train", "use N training images drawn at random (seeded by --seed; the set's class balance roughly kept) for short runs and tests", 1);
        var limitTest = NumericOption.OptionalInt("--limit-test", "use N test images drawn at random (seeded by --seed)", 1);
        var testFlip = new Option<bool>("--test-flip") { Description = "flip test-time augmentation: each test image's prediction is the mean of the softmax for the image and for its left-right mirror (epochs.json also keeps the unmirrored accuracy)" };
        var pictures = NumericOption.Int("--pictures", "test images shown in gradcam.png and attention.png (0 = none)", 8, 0, 64);
        var output = PathRule.OutputFolder("--out", "run folder: checkpoint.bin, vision.safetensors, metrics.json, epochs.json, loss.png, curves.png, confusion.png, gradcam.png, attention.png", Path.Combine("runs", "vision"));
        var resume = new Option<bool>("--resume") { Description = "continue from the checkpoint in --out" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar" };
        var cmd = distributed.AddTo(common.AddTo(new Command("vision", "ResNet with optional SE/CBAM/MHSA attention on Fashion-MNIST, CIFAR-10 or an image folder")
            { data, model, epochs, batch, lr, momentum, wd, schedule, smoothing, padding, noFlip, erasing, limitTrain, limitTest, testFlip, pictures, output, resume, quiet }));
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var run = distributed.Begin(p, commandIO, "train vision");
            var io = run.IO;
            bool json = p.GetValue(common.Json);
            string dataPath = p.GetValue(data)!, modelName = p.GetValue(model)!.ToLowerInvariant(), outDir = p.GetValue(output)!;
            int b = p.GetValue(batch), nEpochs = p.GetValue(epochs);
            ulong seed = p.GetValue(common.Seed);
            var (train, test) = ImageFolder.LoadSplits(dataPath);
            if (p.GetValue(limitTrain) is int lt) train = train.Sample(lt, seed + 3);
            if (p.GetValue(limitTest) is int le) test = test.Sample(le, seed + 4);
            if (train.Count < b)
                throw new ArgumentException($"train vision: --batch {b} is more than the {train.Count} training images of '{dataPath}'");
            if (test.Channels != train.Channels || test.Height != train.Height || test.Width != train.Width)
                throw new InvalidDataException($"train vision: '{dataPath}': test images are [{test.Channels},{test.Height},{test.Width}], training images [{train.Channels},{train.Height},{train.Width}]");
            PathRule.PrepareOutputFolder("train vision", "--out", outDir);

            var norm = Normalization.Of(train);
            var augmentation = new Augmentation(p.GetValue(padding), !p.GetValue(noFlip), p.GetValue(erasing));
            using var trainLoader = new VisionLoader(train, b, augmentation, norm, shuffle: true, dropLast: true, seed: seed + 1);
            using var net = VisionModels.Create(modelName, train.Channels, train.ClassNames.Count, new Generator(seed), device);
            run.Attach(net, b);
            int perEpoch = trainLoader.BatchesPerEpoch, steps = checked(nEpochs * perEpoch);
            var decay = net.Parameters().Where(t => t.Rank >= 2);
            var noDecay = net.Parameters().Where(t => t.Rank < 2);
            using var opt = new Sgd([new ParamGroup(decay), new ParamGroup(noDecay, weightDecay: 0)], p.GetValue(lr), p.GetValue(momentum), 0, p.GetValue(wd), nesterov: true);
            if (steps < 2 && p.GetValue(schedule) == "onecycle")
                throw new ArgumentException($"train vision: --schedule onecycle needs at least 2 steps, and --epochs {nEpochs} of {perEpoch} batches of {b} make {steps}; use more --epochs or a smaller --batch");
            LRScheduler sched = p.GetValue(schedule) == "cosine" ? new WarmupCosine(opt, 0, steps) : new OneCycle(opt, steps);
            double ls = p.GetValue(smoothing);
            if (!json)
                io.Out.WriteLine($"{modelName}: {net.ParameterCount():N0} parameters; {train.Count:N0} train / {test.Count:N0} test images of [{train.Channels},{train.Height},{train.Width}], {train.ClassNames.Count} classes; {nEpochs} epochs of {perEpoch} steps");

            var epochLog = new EpochLog(outDir, perEpoch, p.GetValue(resume));
            bool mirror = p.GetValue(testFlip);
            ConfusionMatrix? lastConfusion = null;
            double Evaluate()
            {
                var scored = VisionEvaluation.Evaluate(net, test, b, norm, device, mirror);
                lastConfusion = scored.Confusion;
                epochLog.Evaluated(scored.Loss, scored.Confusion.Accuracy, mirror ? scored.PlainConfusion.Accuracy : null);
                return scored.Loss;
            }
            var trainer = new Trainer(net, opt, sched, new Generator(seed + 2), new TrainerOptions
            {
                Steps = steps, EvalEvery = perEpoch, CheckpointEvery = perEpoch, RunDirectory = outDir, Resume = p.GetValue(resume),
                Callbacks = [.. run.CallbacksFor([.. TrainingCallbacks.For(io, showProgress: !json && !p.GetValue(quiet)), epochLog]), new LoaderPosition(trainLoader)],
                TokensPerStep = b, DataParallel = run.DataParallel,
            });
            var result = trainer.Run(() =>
            {
                // Every rank loads and augments the same global batch (one loader seed) and trains on its rows.
                var (x, y) = trainLoader.Next(device);
                return net.Forward(run.ShardOf(x)).CrossEntropy(run.ShardOf(y), labelSmoothing: ls);
            }, Evaluate);
            if (!run.IsPrimary)
            {
                run.Complete();
                return 0;
            }

            string modelFile = Path.Combine(outDir, "vision.safetensors");
            VisionCheckpoint.Save(modelFile, net, modelName, train, norm, nEpochs);
            var last = epochLog.Epochs[^1];
            var written = new List<string> { modelFile, Path.Combine(outDir, "metrics.json"), Path.Combine(outDir, "epochs.json"), Path.Combine(outDir, "loss.png") };
            string curves = Path.Combine(outDir, "curves.png"), confusionPng = Path.Combine(outDir, "confusion.png");
            VisionPictures.EpochCurves(epochLog.Epochs.Select(e => (e.Epoch, e.TrainLoss, e.TestLoss, e.TestAccuracy)).ToList(), $"{modelName} on {Path.GetFileName(Path.TrimEndingDirectorySeparator(dataPath))}", curves);
            written.Add(curves);
            if (lastConfusion is not null)
            {
                VisionPictures.ConfusionMatrix(lastConfusion, train.ClassNames, $"{modelName}: test accuracy {lastConfusion.Accuracy:F4}", confusionPng);
                written.Add(confusionPng);
            }
            int shown = Math.Min(p.GetValue(pictures), test.Count);
            if (shown > 0) written.AddRange(VisionExplain.Draw(net, modelName, test, norm, shown, outDir, device));

            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"epochs {nEpochs}  train loss {result.TrainLoss:F4}  test loss {last.TestLoss:F4}  test accuracy {last.TestAccuracy:F4}  {result.WallSeconds:F1} s"));
            io.Out.WriteLine($"wrote {string.Join(", ", written)}");
            if (mirror) io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy without the mirrored images {last.UnflippedTestAccuracy:F4}"));
            if (json) io.Json(new { model = modelName, test_accuracy = last.TestAccuracy, test_flip = mirror, unflipped_test_accuracy = last.UnflippedTestAccuracy, epochs = nEpochs, wall_s = result.WallSeconds, test_loss = last.TestLoss, train_loss = result.TrainLoss, steps, parameters = net.ParameterCount(), ranks = run.Size });
            run.Complete();
            return 0;
        });
        return cmd;
    }

    // A resumed run's loader continues at the step the checkpoint reached (the trainer restores everything else).
    private sealed class LoaderPosition(VisionLoader loader) : ITrainerCallback
    {
        public void OnRunStart(TrainerRunStart run) => loader.Position = run.StartStep;
    }

    /// <summary>One line of epochs.json (UnflippedTestAccuracy: with --test-flip, the accuracy on the original test images alone; null, and not written, otherwise).</summary>
    internal sealed record EpochRecord(int Epoch, double TrainLoss, double TestLoss, double TestAccuracy, double ElapsedSeconds, double? UnflippedTestAccuracy = null);

    // The per-epoch record (mean train loss over the epoch's steps, test loss and accuracy), kept in epochs.json
    // (atomically, every epoch, so that a resumed run continues its table).
    private sealed class EpochLog(string folder, int perEpoch, bool resume) : ITrainerCallback
    {
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        private double _lossSum, _testLoss = double.NaN, _testAccuracy = double.NaN, _elapsedBefore;
        private double? _unflippedAccuracy;
        private int _lossCount;
        public List<EpochRecord> Epochs { get; } = [];
        private string Path => System.IO.Path.Combine(folder, "epochs.json");
        // A diverged epoch's NaN stays readable (JSON has no NaN of its own).
        private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
            DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

        public void OnRunStart(TrainerRunStart run)
        {
            if (!resume || run.StartStep == 0 || !File.Exists(Path)) return;
            var saved = JsonSerializer.Deserialize<List<EpochRecord>>(File.ReadAllText(Path), Json) ?? [];
            Epochs.AddRange(saved.Where(e => e.Epoch <= run.StartStep / perEpoch));
            _elapsedBefore = Epochs.Count > 0 ? Epochs[^1].ElapsedSeconds : 0;
        }

        public void Evaluated(double loss, double accuracy, double? unflippedAccuracy) { _testLoss = loss; _testAccuracy = accuracy; _unflippedAccuracy = unflippedAccuracy; }

        public void OnStepEnd(TrainerStepReport step)
        {
            if (double.IsFinite(step.TrainLoss)) { _lossSum += step.TrainLoss; _lossCount++; }
            if (step.Step % perEpoch != 0) return;
            Epochs.Add(new EpochRecord(step.Step / perEpoch, _lossCount > 0 ? _lossSum / _lossCount : double.NaN, _testLoss, _testAccuracy, _elapsedBefore + _clock.Elapsed.TotalSeconds, _unflippedAccuracy));
            _lossSum = 0; _lossCount = 0;
            AtomicFile.Write(Path, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(Epochs, Json)));
        }
    }
}
