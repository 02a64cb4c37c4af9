namespace AttnCore.Optim;

/// <summary>
/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2 weight decay,
/// with PyTorch's update: d = g + wd·p; buf = μ·buf + (1-τ)·d (buf = d at the first step);
/// d = nesterov ? d + μ·buf : buf; p -= lr·d. Runs as one fused kernel per parameter.
/// </summary>
public sealed class Sgd : Optimizer
{
    /// <summary>SGD over one group of parameters.</summary>
    public Sgd(IEnumerable<Tensor> parameters, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : this([new ParamGroup(parameters)], learningRate, momentum, dampening, weightDecay, nesterov) { }

    /// <summary>SGD over parameter groups.</summary>
    public Sgd(IEnumerable<ParamGroup> groups, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : base(groups, learningRate, weightDecay)
    {
        if (momentum < 0) throw new ArgumentException($"Sgd: momentum must be non-negative, got {momentum}");
        if (nesterov && (momentum <= 0 || dampening != 0)) throw new ArgumentException("Sgd: Nesterov momentum requires a positive momentum and zero dampening");
        Momentum = momentum; Dampening = dampening; Nesterov = nesterov;
    }

    /// <summary>Momentum factor μ.</summary>
    public double Momentum { get; }
    /// <summary>Dampening τ.</summary>
    public double Dampening { get; }
    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; }

    /// <inheritdoc/>
    protected override int BuffersPerParameter => Momentum != 0 ? 1 : 0;

    /// <inheritdoc/>
    protected override void Update(ParamGroup group, Tensor p, Tensor grad)
    {
        var state = State(p);
        // The buffer starts as the gradient itself: "first step" is per parameter, the first time it has a grad.
        bool first = Momentum != 0 && !_started.Contains(p);
        if (first) _started.Add(p);
        p.SgdUpdate_(grad, Momentum != 0 ? state[0] : null, new SgdHyper(group.LearningRate, Momentum, Dampening, group.WeightDecay, Nesterov, first));
    }

    private readonly HashSet<Tensor> _started = new(ReferenceEqualityComparer.Instance);

    /// <inheritdoc/>
    protected override void WriteExtra(BinaryWriter w)
    {
        foreach (var g in ParamGroups) foreach (var p in g.Parameters) w.Write(_started.Contains(p));
    }

    /// <inheritdoc/>
    protected override void ReadExtra(BinaryReader r)
    {
        foreach (var g in ParamGroups) foreach (var p in g.Parameters) { if (r.ReadBoolean()) _started.Add(p); else _started.Remove(p); }
    }
}
