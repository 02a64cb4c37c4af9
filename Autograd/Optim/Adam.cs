namespace AttnCore.Optim;

/// <summary>
/// Adam (Kingma and Ba) with PyTorch's update and bias correction; weight decay is an L2 term added to
/// the gradient. <see cref="AdamW"/> decouples it instead. One fused kernel per parameter.
/// </summary>
public class Adam : Optimizer
{
    private readonly Dictionary<Tensor, long> _steps = new(ReferenceEqualityComparer.Instance);

    /// <summary>Adam over one group of parameters.</summary>
    public Adam(IEnumerable<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay) { }

    /// <summary>Adam over parameter groups.</summary>
    public Adam(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : base(groups, learningRate, weightDecay)
    {
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1) throw new ArgumentException($"{GetType().Name}: betas must be in [0, 1), got ({beta1}, {beta2})");
        if (eps < 0) throw new ArgumentException($"{GetType().Name}: eps must be non-negative, got {eps}");
        Beta1 = beta1; Beta2 = beta2; Eps = eps;
    }

    /// <summary>First-moment decay.</summary>
    public double Beta1 { get; }
    /// <summary>Second-moment decay.</summary>
    public double Beta2 { get; }
    /// <summary>Denominator epsilon.</summary>
    public double Eps { get; }
    /// <summary>True for AdamW's decoupled weight decay.</summary>
    protected virtual bool Decoupled => false;

    /// <inheritdoc/>
    protected override int BuffersPerParameter => 2;

    /// <inheritdoc/>
    protected override void Update(ParamGroup group, Tensor p, Tensor grad)
    {
        var s = State(p);
        // Like PyTorch, each parameter counts its own steps (a parameter without a gradient does not advance).
        long step = _steps.TryGetValue(p, out var k) ? k + 1 : 1;
        _steps[p] = step;
        p.AdamUpdate_(grad, s[0], s[1], new AdamHyper(group.LearningRate, Beta1, Beta2, Eps, group.WeightDecay, Decoupled, step));
    }

    /// <inheritdoc/>
    protected override void WriteExtra(BinaryWriter w)
    {
        foreach (var g in ParamGroups) foreach (var p in g.Parameters) w.Write(_steps.TryGetValue(p, out var k) ? k : 0L);
    }

    /// <inheritdoc/>
    protected override void ReadExtra(BinaryReader r)
    {
        foreach (var g in ParamGroups) foreach (var p in g.Parameters) { long k = r.ReadInt64(); if (k > 0) _steps[p] = k; else _steps.Remove(p); }
    }
}

/// <summary>AdamW (Loshchilov and Hutter): Adam with decoupled weight decay p ← p(1 − lr·wd), default wd 0.01 as in PyTorch.</summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW over one group of parameters.</summary>
    public AdamW(IEnumerable<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base(parameters, learningRate, beta1, beta2, eps, weightDecay) { }

    /// <summary>AdamW over parameter groups.</summary>
    public AdamW(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base(groups, learningRate, beta1, beta2, eps, weightDecay) { }

    /// <inheritdoc/>
    protected override bool Decoupled => true;
}
