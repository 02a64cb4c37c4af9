using System.Diagnostics;
using AttnCore.Distributed;
using AttnCore.Optim;

namespace AttnCore.Models.Recommendation;

/// <summary>How <see cref="RecommenderTraining.Run"/> trains (the SASRec paper's Games settings as defaults).</summary>
public sealed record RecommenderTrainingOptions
{
    /// <summary>Epochs at most (one epoch = <see cref="StepsPerEpoch"/> batches); the authors' code runs 201.</summary>
    public int Epochs { get; init; } = 201;
    /// <summary>Sequences per batch.</summary>
    public int BatchSize { get; init; } = 128;
    /// <summary>Adam's learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Adam's beta2 (the paper: 0.98).</summary>
    public double Beta2 { get; init; } = 0.98;
    /// <summary>Batches per epoch; null: users / batch size (at least 1), as the authors' code.</summary>
    public int? StepsPerEpoch { get; init; }
    /// <summary>Epochs between validation evaluations (the last epoch is always evaluated).</summary>
    public int EvalEvery { get; init; } = 20;
    /// <summary>Evaluations without a better validation NDCG@10 before training stops.</summary>
    public int Patience { get; init; } = 3;
    /// <summary>Users sampled for evaluation at most (the protocol's 10,000).</summary>
    public int EvalUsers { get; init; } = 10_000;
    /// <summary>Seed of the sampler and the evaluation draws.</summary>
    public int Seed { get; init; }
    /// <summary>Where the best model is saved (safetensors), or null.</summary>
    public string? CheckpointPath { get; init; }
    /// <summary>
    /// Wall-clock budget of the training in minutes, or null for none: when it runs out (checked before every step,
    /// after the epoch's first), training stops, the model as it stands is evaluated on validation like any
    /// evaluated epoch, and the best model is tested. The final evaluations come on top of the budget.
    /// </summary>
    public double? MaxMinutes { get; init; }
    /// <summary>Called after every epoch.</summary>
    public Action<RecommenderEpoch>? OnEpoch { get; init; }
    /// <summary>
    /// Data-parallel training (null: this process alone): every rank draws the same global batch of <see cref="BatchSize"/>
    /// sequences and trains on its contiguous rows, weighted by its share of the batch's non-padded positions (the loss is a
    /// mean over them), so the synchronised gradient is the whole batch's. Evaluation runs on every rank alike.
    /// </summary>
    public DataParallel? DataParallel { get; init; }
}

/// <summary>One epoch of a run: its mean training loss and, when evaluated, the validation ranking.</summary>
/// <param name="Epoch">1-based.</param>
/// <param name="Steps">Optimizer steps so far.</param>
/// <param name="TrainLoss">Mean loss of the epoch's batches.</param>
/// <param name="Validation">The validation report, or null when not evaluated.</param>
/// <param name="WallSeconds">Seconds since the run started.</param>
public sealed record RecommenderEpoch(int Epoch, long Steps, double TrainLoss, RankingReport? Validation, double WallSeconds);

/// <summary>What a run did: its epochs, the best validation epoch and the test ranking of the model from that epoch.</summary>
/// <param name="History">Every epoch.</param>
/// <param name="BestEpoch">The epoch with the best validation NDCG@10.</param>
/// <param name="BestValidation">Its validation report.</param>
/// <param name="Test">The test report (sampled and full ranking) of the best model.</param>
/// <param name="WallSeconds">Training and evaluation time.</param>
/// <param name="StopReason">Why training ended: "epochs" (all run), "patience" (early stopping) or "budget" (<see cref="RecommenderTrainingOptions.MaxMinutes"/>).</param>
public sealed record RecommenderTrainingResult(IReadOnlyList<RecommenderEpoch> History, int BestEpoch, RankingReport BestValidation, RankingReport Test, double WallSeconds,
    string StopReason = "epochs");

/// <summary>
/// The SASRec training procedure: Adam, batches from <see cref="SequenceSampler"/>, validation every K epochs with
/// early stopping on NDCG@10, an optional wall-clock budget, the best model kept (in memory, and saved when a path is
/// given), and the test metrics of that best model at the end.
/// </summary>
public static class RecommenderTraining
{
    /// <summary>Trains <paramref name="model"/> on <paramref name="split"/>, its tensors on <paramref name="device"/>.</summary>
    public static RecommenderTrainingResult Run(SequentialRecommender model, LeaveOneOutSplit split, RecommenderTrainingOptions options, Device? device = null)
    {
        if (options.Epochs < 1 || options.BatchSize < 1 || options.EvalEvery < 1 || options.Patience < 1 || options.StepsPerEpoch is < 1)
            throw new ArgumentException($"RecommenderTraining: epochs, batch size, eval interval, patience and steps per epoch must be at least 1, got {options}");
        if (options.DataParallel is { Communicator.Size: var ranks } && options.BatchSize < ranks)
            throw new ArgumentException($"RecommenderTraining: batch size {options.BatchSize} is smaller than the {ranks} ranks; each rank needs at least one sequence of every batch");
        if (options.MaxMinutes is double minutes && !(minutes > 0 && double.IsFinite(minutes)))
            throw new ArgumentOutOfRangeException(nameof(options), minutes, $"RecommenderTraining: MaxMinutes must be a positive number of minutes, got {minutes}");
        var clock = Stopwatch.StartNew();
        var budget = options.MaxMinutes is double m ? TimeSpan.FromMinutes(m) : TimeSpan.MaxValue;
        var sampler = new SequenceSampler(split, model.MaxLength, options.Seed);
        var evaluator = new RankingEvaluator(split, model.MaxLength, options.Seed + 1, maxUsers: options.EvalUsers);
        using var adam = new Adam(model.Parameters(), options.LearningRate, 0.9, options.Beta2);
        int steps = options.StepsPerEpoch ?? Math.Max(1, split.UserCount / options.BatchSize);
        var history = new List<RecommenderEpoch>();
        Dictionary<string, Tensor>? best = null;
        RankingReport? bestReport = null;
        int bestEpoch = 0, sinceBest = 0;
        long step = 0;
        string stopReason = "epochs";
        model.Train();
        try
        {
            for (int epoch = 1; epoch <= options.Epochs; epoch++)
            {
                double sum = 0;
                int done = 0;
                bool outOfTime = false;
                for (; done < steps; done++, step++)
                {
                    // every epoch trains at least one step, so the model a budget stops on differs from the last evaluated one
                    if (done > 0 && options.MaxMinutes is not null && (options.DataParallel?.AnyRank(clock.Elapsed >= budget) ?? clock.Elapsed >= budget)) { outOfTime = true; break; }
                    using var scope = new TensorScope();
                    var batch = sampler.Next(options.BatchSize);
                    var (h, pos, neg) = batch.ToTensors(device);
                    long positionsHere = 0, positions = 0;
                    if (options.DataParallel is { } share) (h, pos, neg) = ShardOf(batch, h, pos, neg, share, out positionsHere, out positions);
                    adam.ZeroGrad();
                    var loss = model.Loss(h, pos, neg);
                    loss.Backward();
                    options.DataParallel?.SynchronizeGradients();
                    adam.Step();
                    sum += options.DataParallel?.BatchMean(loss.Item(), positionsHere, positions) ?? loss.Item();
                }
                double trainLoss = sum / done;
                if (!double.IsFinite(trainLoss))
                    throw new InvalidOperationException($"RecommenderTraining: the training loss of epoch {epoch} is {trainLoss} (diverged); lower the learning rate");
                RankingReport? validation = null;
                if (epoch % options.EvalEvery == 0 || epoch == options.Epochs || outOfTime)
                {
                    validation = evaluator.Evaluate(model, test: false, device: device);
                    if (bestReport is null || validation.Ndcg > bestReport.Ndcg)
                    {
                        (bestReport, bestEpoch, sinceBest) = (validation, epoch, 0);
                        Keep(ref best, model);
                        if (options.CheckpointPath is not null) RecommenderCheckpoint.Save(options.CheckpointPath, model, epoch);
                    }
                    else sinceBest++;
                }
                var record = new RecommenderEpoch(epoch, step, trainLoss, validation, clock.Elapsed.TotalSeconds);
                history.Add(record);
                options.OnEpoch?.Invoke(record);
                if (outOfTime) { stopReason = "budget"; break; }
                if (sinceBest >= options.Patience) { stopReason = "patience"; break; }
            }
            // the last epoch is always evaluated and every stop follows an evaluation, so a best model exists
            model.LoadStateDict(best!);
            var test = evaluator.Evaluate(model, test: true, fullRanking: true, device: device);
            return new RecommenderTrainingResult(history, bestEpoch, bestReport!, test, clock.Elapsed.TotalSeconds, stopReason);
        }
        finally
        {
            if (best is not null) foreach (var t in best.Values) t.Dispose();
        }
    }

    // This rank's rows of the global batch, weighted by its share of the non-padded positions the loss averages over.
    private static (Tensor History, Tensor Positives, Tensor Negatives) ShardOf(SequenceBatch batch, Tensor h, Tensor pos, Tensor neg, DataParallel dp,
        out long positionsHere, out long positions)
    {
        var (start, count) = DistributedSampler.Shard(batch.Batch, dp.Communicator.Rank, dp.Communicator.Size);
        var all = batch.Positives.AsSpan();
        positions = all.Length - all.Count(0L);
        var here = all.Slice(start * batch.MaxLength, count * batch.MaxLength);
        positionsHere = here.Length - here.Count(0L);
        dp.SetBatchShare(positionsHere, positions);
        return (h.Narrow(0, start, count), pos.Narrow(0, start, count), neg.Narrow(0, start, count));
    }

    // A copy of every weight (on the model's device), replacing the previous copy.
    private static void Keep(ref Dictionary<string, Tensor>? best, SequentialRecommender model)
    {
        if (best is not null) foreach (var t in best.Values) t.Dispose();
        var scope = TensorScope.Suspend();
        try
        {
            using var ng = new NoGrad();
            best = model.StateDict().ToDictionary(p => p.Key, p => p.Value.Detach().Clone());
        }
        finally { TensorScope.Resume(scope); }
    }
}
