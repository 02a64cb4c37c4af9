namespace AttnCore.Optim;

/// <summary>
/// A learning-rate schedule: a pure function of the step number times each group's initial rate,
/// so restoring the step restores the schedule exactly. Call <see cref="Step"/> once per optimizer step.
/// </summary>
public abstract class LRScheduler
{
    /// <summary>Attaches to <paramref name="optimizer"/> and sets the rate for step 0.</summary>
    protected LRScheduler(Optimizer optimizer)
    {
        Optimizer = optimizer;
        Apply();
    }

    /// <summary>The optimizer whose groups this schedule drives.</summary>
    public Optimizer Optimizer { get; }
    /// <summary>Steps taken so far.</summary>
    public long StepCount { get; private set; }

    /// <summary>The multiplier of the initial rate at <paramref name="step"/>.</summary>
    public abstract double Factor(long step);

    /// <summary>Advances one step and writes the new rate into every group.</summary>
    public void Step() { StepCount++; Apply(); }

    /// <summary>The rate of the first group now.</summary>
    public double LastLearningRate => Optimizer.ParamGroups[0].LearningRate;

    private void Apply()
    {
        double f = Factor(StepCount);
        foreach (var g in Optimizer.ParamGroups) g.LearningRate = g.InitialLearningRate * f;
    }

    /// <summary>Writes the step count.</summary>
    public void SaveState(BinaryWriter w) { w.Write("AttnCore.LRScheduler/1"); w.Write(GetType().Name); w.Write(StepCount); }

    /// <summary>Restores the step count and re-applies the rate.</summary>
    public void LoadState(BinaryReader r)
    {
        string magic = r.ReadString(), kind = r.ReadString();
        if (magic != "AttnCore.LRScheduler/1" || kind != GetType().Name)
            throw new InvalidDataException($"{GetType().Name}.LoadState: the state was written by '{kind}' ({magic})");
        StepCount = r.ReadInt64();
        Apply();
    }
}

/// <summary>
/// Linear warmup from 0 to the base rate over <c>warmupSteps</c> (rate·step/warmup), then cosine decay to
/// <c>minFactor</c>·base at <c>totalSteps</c>: nanoGPT's get_lr, step for step.
/// </summary>
public sealed class WarmupCosine(Optimizer optimizer, long warmupSteps, long totalSteps, double minFactor = 0) : LRScheduler(Check(optimizer, warmupSteps, totalSteps))
{
    private static Optimizer Check(Optimizer o, long warmup, long total) =>
        warmup < 0 || total <= 0 || warmup > total ? throw new ArgumentException($"WarmupCosine: need 0 <= warmupSteps <= totalSteps and totalSteps > 0, got {warmup} and {total}") : o;

    /// <inheritdoc/>
    public override double Factor(long step)
    {
        if (step < warmupSteps) return (double)step / warmupSteps;
        if (step >= totalSteps) return minFactor;
        double progress = (double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps);
        return minFactor + 0.5 * (1 - minFactor) * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>Multiplies the rate by <c>gamma</c> every <c>stepSize</c> steps (torch.optim.lr_scheduler.StepLR).</summary>
public sealed class StepDecay(Optimizer optimizer, long stepSize, double gamma = 0.1) : LRScheduler(stepSize > 0 ? optimizer : throw new ArgumentException($"StepDecay: stepSize must be positive, got {stepSize}"))
{
    /// <inheritdoc/>
    public override double Factor(long step) => Math.Pow(gamma, step / stepSize);
}

/// <summary>
/// The Transformer paper's schedule: lr = d_model^-0.5 · min(s^-0.5, s · warmup^-1.5) with s = step + 1,
/// as a multiplier of the group's initial rate (set the optimizer's rate to 1 for the paper's exact values).
/// </summary>
public sealed class InverseSqrtWarmup(Optimizer optimizer, int modelDim, long warmupSteps = 4000) : LRScheduler(modelDim > 0 && warmupSteps > 0 ? optimizer : throw new ArgumentException($"InverseSqrtWarmup: modelDim and warmupSteps must be positive, got {modelDim} and {warmupSteps}"))
{
    /// <inheritdoc/>
    public override double Factor(long step)
    {
        double s = step + 1;
        return Math.Pow(modelDim, -0.5) * Math.Min(Math.Pow(s, -0.5), s * Math.Pow(warmupSteps, -1.5));
    }
}

/// <summary>
/// The one-cycle policy (Smith and Topin 2019) as torch.optim.lr_scheduler.OneCycleLR with its defaults
/// (anneal_strategy "cos", three_phase false): the rate rises from max/<c>divFactor</c> to max over the first
/// <c>pctStart</c>·total − 1 steps, then falls to max/(divFactor·finalDivFactor) at step total − 1, each phase a cosine
/// from start to end: end + (start − end)/2·(1 + cos(π·t)) with t the fraction of the phase done. Set the optimizer's
/// rate to the maximum; the factor is relative to it. The momentum is not cycled (PyTorch's cycle_momentum=False).
/// </summary>
public sealed class OneCycle(Optimizer optimizer, long totalSteps, double pctStart = 0.3, double divFactor = 25, double finalDivFactor = 1e4)
    : LRScheduler(Check(optimizer, totalSteps, pctStart, divFactor, finalDivFactor))
{
    private static Optimizer Check(Optimizer o, long total, double pct, double div, double finalDiv)
    {
        if (total < 2) throw new ArgumentException($"OneCycle: totalSteps must be at least 2, got {total}");
        if (!(pct > 0 && pct < 1)) throw new ArgumentException($"OneCycle: pctStart must be in (0, 1), got {pct}");
        if (!(div > 0) || !double.IsFinite(div) || !(finalDiv > 0) || !double.IsFinite(finalDiv))
            throw new ArgumentException($"OneCycle: divFactor and finalDivFactor must be positive and finite, got {div} and {finalDiv}");
        return o;
    }

    /// <inheritdoc/>
    public override double Factor(long step)
    {
        double initial = 1 / divFactor, min = initial / finalDivFactor;
        double peakStep = pctStart * totalSteps - 1, lastStep = totalSteps - 1;
        double s = Math.Min(step, lastStep);
        static double Cos(double start, double end, double t) => end + (start - end) / 2 * (1 + Math.Cos(Math.PI * t));
        // pctStart·total = 1 puts the peak at step 0, where PyTorch divides 0 by 0; the warm-up has ended there, so the
        // rate is the peak. (A peak before step 0 needs nothing special: the decay phase covers step 0, as in PyTorch.)
        if (peakStep == 0 && s == 0) return 1;
        return s <= peakStep ? Cos(initial, 1, s / peakStep) : Cos(1, min, (s - peakStep) / (lastStep - peakStep));
    }
}
