using System.CommandLine;
using AttnCore.Cli.Bench;
using AttnCore.Models.TimeSeries;
using AttnCore.Optim;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore bench forecast-step</c>: one Adam training step of PatchTST or iTransformer on ETTh1-shaped windows
/// (batch 128, 7 channels; PatchTST L 336 with its ETTh1 sizes, iTransformer L 96), with --vs torch the same model in
/// PyTorch (Cli/Bench/torch_forecast.py) through <see cref="TorchBridge"/>, timed as the other bench commands.
/// </summary>
public static class BenchForecastCommand
{
    /// <summary>Builds <c>bench forecast-step</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var model = new Option<string>("--model") { Description = "patchtst (L 336, d_model 16, 4 heads, 3 layers, d_ff 128) or itransformer (L 96, d_model 256, 8 heads, 2 layers, d_ff 256)", DefaultValueFactory = _ => "patchtst" }
            .AcceptOnlyFromAmong("patchtst", "itransformer");
        var batch = NumericOption.Int("--batch", "windows per step", 128, 1, 65536);
        var predLen = NumericOption.Int("--pred-len", "horizon H", 96, 1, 100_000);
        var vs = BenchCommand.VsOption(); var secs = BenchCommand.SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command("forecast-step", "One Adam training step of a forecaster on ETTh1-shaped windows (random values)") { model, batch, predLen, vs, secs }));
        cmd.SetAction(p => BenchCommand.Execute(io, p, common, vs, secs, torch, device =>
        {
            string name = p.GetValue(model)!;
            int b = p.GetValue(batch), h = p.GetValue(predLen);
            var config = name == "patchtst"
                ? new ForecasterConfig("patchtst", 336, h, 7)
                : new ForecasterConfig("itransformer", 96, h, 7, DModel: 256, Heads: 8, Layers: 2, DFf: 256, Dropout: 0.1);
            var net = Forecaster.Create(config, new Generator(p.GetValue(common.Seed)), device);
            var opt = new Adam(net.Parameters(), 1e-4);
            var x = Tensor.Randn([b, config.SeqLen, 7], 5, DType.Float32, device);
            var y = Tensor.Randn([b, h, 7], 6, DType.Float32, device);
            Action run = () =>
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                var loss = (net.Forward(x) - y).Square().Mean();
                loss.Backward();
                opt.Step();
            };
            return new BenchCommand.Work("forecast-step", new() { ["model"] = name, ["batch"] = b, ["seq_len"] = config.SeqLen, ["pred_len"] = h, ["windows"] = b },
                0, 0, run, () => { opt.Dispose(); net.Dispose(); x.Dispose(); y.Dispose(); },
                new()
                {
                    ["op"] = "forecast-step", ["model"] = name, ["batch"] = b, ["seq_len"] = config.SeqLen, ["pred_len"] = h, ["channels"] = 7,
                    ["d_model"] = config.DModel, ["heads"] = config.Heads, ["layers"] = config.Layers, ["d_ff"] = config.DFf, ["dropout"] = config.Dropout,
                    ["patch_len"] = config.PatchLen, ["stride"] = config.Stride,
                });
        }));
        return cmd;
    }
}
