using AttnCore.Models.Nn;

namespace AttnCore.Models.Reinforcement;

/// <summary>
/// A policy with a value head for a discrete action space, deciding from a window of the last
/// <see cref="Context"/> observations (1 for a policy that sees only the current one). Input: windows
/// [B, K, obs] right-aligned (the current observation last) and a padding mask [B, K] with 1 where a position
/// lies before the episode's start (null when nothing is hidden). Output: logits [B, A] and values [B].
/// </summary>
public abstract class ActorCritic : Module
{
    /// <summary>Floats per observation.</summary>
    public abstract int ObservationSize { get; }
    /// <summary>Number of actions.</summary>
    public abstract int ActionCount { get; }
    /// <summary>K: observations per decision.</summary>
    public abstract int Context { get; }
    /// <summary>"mlp" or "transformer" (the name in checkpoints and on the command line).</summary>
    public abstract string Kind { get; }
    /// <summary>The construction parameters, written into checkpoints so that <see cref="PolicyCheckpoint"/> can rebuild the policy.</summary>
    public abstract IReadOnlyDictionary<string, string> Describe();

    /// <summary>Logits [B, A] and values [B] for windows [B, K, obs].</summary>
    public abstract (Tensor Logits, Tensor Values) Forward(Tensor windows, Tensor? paddingMask);

    /// <summary>Checks a window batch against the policy's sizes.</summary>
    protected void CheckInput(Tensor windows, Tensor? paddingMask)
    {
        if (windows.Rank != 3 || windows.Size(1) != Context || windows.Size(2) != ObservationSize)
            throw new ArgumentException($"{GetType().Name}.Forward: windows must be [B, {Context}, {ObservationSize}], got {Shape.Format(windows.Shape)}");
        if (paddingMask is not null && (paddingMask.Rank != 2 || paddingMask.Size(0) != windows.Size(0) || paddingMask.Size(1) != Context))
            throw new ArgumentException($"{GetType().Name}.Forward: padding mask must be [{windows.Size(0)}, {Context}], got {Shape.Format(paddingMask.Shape)}");
    }
}

/// <summary>Linear → tanh → Linear → tanh → Linear, with child names 0, 2, 4 as CleanRL's nn.Sequential (the tanh modules hold no weights).</summary>
internal sealed class TanhMlp : Module
{
    private readonly Linear _l0, _l2, _l4;

    public TanhMlp(int input, int hidden, int output, double outputGain, Generator g, Device? device)
    {
        _l0 = Child("0", new Linear(input, hidden, true, g, device));
        _l2 = Child("2", new Linear(hidden, hidden, true, g, device));
        _l4 = Child("4", new Linear(hidden, output, true, g, device));
        OrthogonalInit.Apply(_l0, Math.Sqrt(2), g);
        OrthogonalInit.Apply(_l2, Math.Sqrt(2), g);
        OrthogonalInit.Apply(_l4, outputGain, g);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = new TensorScope();
        var h = _l0.Forward(x).Tanh();
        h = _l2.Forward(h).Tanh();
        return scope.Keep(_l4.Forward(h));
    }
}

/// <summary>
/// CleanRL ppo.py's agent: separate actor and critic networks on the current observation, each
/// obs → 64 → tanh → 64 → tanh → out, orthogonally initialised (gains √2, √2 and 0.01 for the actor's output,
/// 1 for the critic's), biases 0. Parameter names match CleanRL's state dict (actor.0.weight, critic.4.bias, ...).
/// </summary>
public sealed class MlpActorCritic : ActorCritic
{
    private readonly TanhMlp _actor, _critic;

    /// <summary>A policy for <paramref name="observationSize"/> inputs and <paramref name="actionCount"/> actions.</summary>
    public MlpActorCritic(int observationSize, int actionCount, Generator generator, int hidden = 64, Device? device = null)
    {
        if (observationSize <= 0 || actionCount <= 0 || hidden <= 0)
            throw new ArgumentException($"MlpActorCritic: observation size ({observationSize}), actions ({actionCount}) and hidden width ({hidden}) must be positive");
        (ObservationSize, ActionCount, Hidden) = (observationSize, actionCount, hidden);
        // CleanRL builds the critic first, then the actor: the same order draws the same initial weights from one stream.
        _critic = Child("critic", new TanhMlp(observationSize, hidden, 1, 1.0, generator, device));
        _actor = Child("actor", new TanhMlp(observationSize, hidden, actionCount, 0.01, generator, device));
    }

    /// <summary>Hidden width.</summary>
    public int Hidden { get; }
    /// <inheritdoc/>
    public override int ObservationSize { get; }
    /// <inheritdoc/>
    public override int ActionCount { get; }
    /// <inheritdoc/>
    public override int Context => 1;
    /// <inheritdoc/>
    public override string Kind => "mlp";

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>
    {
        ["observations"] = ObservationSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["actions"] = ActionCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["hidden"] = Hidden.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <inheritdoc/>
    public override (Tensor Logits, Tensor Values) Forward(Tensor windows, Tensor? paddingMask)
    {
        CheckInput(windows, paddingMask);
        using var scope = new TensorScope();
        var x = windows.Select(1, Context - 1);
        var logits = _actor.Forward(x);
        var v = _critic.Forward(x);
        return (scope.Keep(logits), scope.Keep(v.Reshape(v.Size(0))));
    }
}
