using System.CommandLine;
using AttnCore.Cli.Commands;
using AttnCore.Models.Recommendation;
using AttnCore.Optim;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench sasrec-step</c>: one Adam step (lr 1e-3, beta2 0.98) of SASRec at the paper's Games settings
/// (23,715 items, batch 128, n 50, d 50, 2 blocks, 1 head, dropout 0.5) on one fixed batch; with --vs torch the
/// authors' PyTorch model (Cli/Bench/torch_sasrec.py) steps on the same ids in the same run. The batch mimics the
/// data: each row holds a seeded random number of items (2..n), left-padded, with next items and negatives.
/// Reports sequences per second as well as the step time.
/// </summary>
public static class SasRecStepBench
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var items = NumericOption.Int("--items", "item count (the Games data: 23715)", 23_715, 2, 10_000_000);
        var batch = NumericOption.Int("--batch", "sequences per step", 128, 1, 65_536);
        var maxLen = NumericOption.Int("--max-len", "positions per sequence", 50, 2, 4096);
        var dim = NumericOption.Int("--dim", "embedding width", 50, 1, 4096);
        var blocks = NumericOption.Int("--blocks", "self-attention blocks", 2, 1, 64);
        var heads = NumericOption.Int("--heads", "attention heads, a divisor of --dim", 1, 1, 64);
        var vs = BenchCommand.VsOption(); var secs = BenchCommand.SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command("sasrec-step", "One Adam training step of SASRec (Games settings; reports sequences/s)") { items, batch, maxLen, dim, blocks, heads, vs, secs }));
        cmd.AddRule(r =>
        {
            if (r.GetValue(dim) % r.GetValue(heads) != 0) return $"--dim {r.GetValue(dim)} must be a multiple of --heads {r.GetValue(heads)}";
            if ((long)r.GetValue(batch) * r.GetValue(maxLen) * r.GetValue(dim) > Array.MaxLength) return $"--batch, --max-len and --dim make an activation of more than {Array.MaxLength:N0} elements";
            return null;
        });
        cmd.SetAction(p => BenchCommand.Execute(io, p, common, vs, secs, torch, device =>
        {
            int b = p.GetValue(batch), t = p.GetValue(maxLen), n = p.GetValue(items);
            var config = new SasRecConfig(n, t, p.GetValue(dim), p.GetValue(blocks), p.GetValue(heads), Dropout: 0.5);
            var model = new SasRec(config, new Generator(p.GetValue(common.Seed)), device);
            var adam = new Adam(model.Parameters(), 1e-3, 0.9, 0.98);
            var (history, positives, negatives) = Batch(b, t, n, new Random(unchecked((int)p.GetValue(common.Seed))));
            var h = Tensor.FromArray(history, [b, t], device);
            var pos = Tensor.FromArray(positives, [b, t], device);
            var neg = Tensor.FromArray(negatives, [b, t], device);
            Action run = () =>
            {
                using var scope = new TensorScope();
                adam.ZeroGrad();
                var loss = model.Loss(h, pos, neg);
                loss.Backward();
                adam.Step();
            };
            return new BenchCommand.Work("sasrec-step", new() { ["items"] = n, ["batch"] = b, ["max_len"] = t, ["dim"] = config.Dim, ["blocks"] = config.Blocks, ["heads"] = config.Heads, ["sequences"] = b },
                6.0 * (model.ParameterCount() - (long)(n + 1) * config.Dim) * b * t, 0,
                run, () => { adam.Dispose(); model.Dispose(); h.Dispose(); pos.Dispose(); neg.Dispose(); },
                new()
                {
                    ["op"] = "sasrec-step", ["items"] = n, ["batch"] = b, ["max_len"] = t, ["dim"] = config.Dim, ["blocks"] = config.Blocks, ["heads"] = config.Heads,
                    ["dropout"] = config.Dropout, ["history"] = history, ["positives"] = positives, ["negatives"] = negatives,
                });
        }));
        return cmd;
    }

    // Rows of 2..t items (left-padded), each position's next item and a negative that is not the row's next item.
    private static (long[] History, long[] Positives, long[] Negatives) Batch(int b, int t, int items, Random random)
    {
        long[] history = new long[b * t], positives = new long[b * t], negatives = new long[b * t];
        for (int r = 0; r < b; r++)
        {
            int length = random.Next(2, t + 1);
            for (int i = t - length; i < t; i++)
            {
                history[r * t + i] = random.Next(1, items + 1);
                positives[r * t + i] = random.Next(1, items + 1);
                long negative;
                do negative = random.Next(1, items + 1); while (negative == positives[r * t + i]);
                negatives[r * t + i] = negative;
            }
        }
        return (history, positives, negatives);
    }
}
