using System.CommandLine;
using AttnCore.Cli.Commands;
using AttnCore.Models.Vision;
using AttnCore.Optim;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench resnet-step --config resnet20|resnet50|tiny [--vs torch]</c>: the median time of one SGD
/// training step (forward, cross-entropy, backward, SGD with Nesterov momentum 0.9 and weight decay 5e-4) of
/// ResNet-20 with SE on 32x32 images at batch 128 (10 classes), or ResNet-50 at 224x224, batch 8 (1000 classes);
/// tiny is ResNet-20-SE on 8x8 at batch 2 (dry runs and tests). With --vs torch, PyTorch trains the same
/// architecture (Cli/Bench/torch_resnet.py) in the same run, through <see cref="TorchBridge"/>.
/// </summary>
public static class ResNetStepBench
{
    /// <summary>The model, image side, batch and classes of each --config.</summary>
    public static (string Model, int Side, int Batch, int Classes) Config(string name) => name switch
    {
        "resnet50" => ("resnet50", 224, 8, 1000),
        "tiny" => ("resnet20-se", 8, 2, 10),
        _ => ("resnet20-se", 32, 128, 10),
    };

    /// <summary>Builds <c>bench resnet-step</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var config = new Option<string>("--config")
        {
            Description = "resnet20 (ResNet-20-SE, 32x32, batch 128), resnet50 (ResNet-50, 224x224, batch 8) or tiny (ResNet-20-SE, 8x8, batch 2: dry runs)",
            DefaultValueFactory = _ => "resnet20",
        }.AcceptOnlyFromAmong("resnet20", "resnet50", "tiny");
        var vs = BenchCommand.VsOption(); var secs = BenchCommand.SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command("resnet-step", "One SGD training step of a ResNet on random images (reports images/s)") { config, vs, secs }));
        cmd.SetAction(p => BenchCommand.Execute(io, p, common, vs, secs, torch, device =>
        {
            string name = p.GetValue(config) ?? "resnet20";
            var (model, side, batch, classes) = Config(name);
            var generator = new Generator(p.GetValue(common.Seed));
            var net = VisionModels.Create(model, 3, classes, generator, device);
            net.Train();
            var opt = new Sgd(net.Parameters(), 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true);
            var x = Tensor.Randn([batch, 3, side, side], generator, DType.Float32, device);
            var y = Tensor.RandInt(0, classes, [batch], generator, device);
            Action run = () =>
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                var loss = net.Forward(x).CrossEntropy(y);
                loss.Backward();
                opt.Step();
            };
            return new BenchCommand.Work("resnet-step", new() { ["config"] = name, ["model"] = model, ["side"] = side, ["images"] = batch }, 0, 0,
                run, () => { opt.Dispose(); net.Dispose(); x.Dispose(); y.Dispose(); },
                new() { ["op"] = "resnet-step", ["model"] = model, ["side"] = side, ["batch"] = batch, ["classes"] = classes });
        }));
        return cmd;
    }
}
