namespace AttnCore.Models.Reinforcement;

/// <summary>
/// CartPole-v1 exactly as Gymnasium's <c>classic_control/cartpole.py</c> (Barto, Sutton and Anderson 1983): a pole
/// hinged on a cart that action 1 pushes right and action 0 left with a force of 10 N. Constants: gravity 9.8,
/// cart mass 1.0, pole mass 0.1, half pole length 0.5, time step tau 0.02. One step, in float64 as Gymnasium:
/// <code>
/// temp     = (F + m_p·l·θ̇²·sin θ) / (m_c + m_p)
/// θ̈        = (g·sin θ − cos θ·temp) / (l·(4/3 − m_p·cos²θ / (m_c + m_p)))
/// ẍ        = temp − m_p·l·θ̈·cos θ / (m_c + m_p)
/// x += τ·ẋ;  ẋ += τ·ẍ;  θ += τ·θ̇;  θ̇ += τ·θ̈        (explicit Euler, positions first)
/// </code>
/// The episode terminates when |x| &gt; 2.4 or |θ| &gt; 12° (2π·12/360 rad) and is truncated after 500 steps
/// (Gymnasium's TimeLimit: both flags can be set on the 500th step); every step, the last included, earns +1.
/// Reset draws the four state variables uniformly in [-0.05, 0.05). The observation (x, ẋ, θ, θ̇) is the float64
/// state cast to float32. "Solved" means a mean return of at least 475 over 100 consecutive episodes.
/// </summary>
public class CartPole : IEnvironment
{
    /// <summary>Gravity (m/s²).</summary>
    public const double Gravity = 9.8;
    /// <summary>Cart mass (kg).</summary>
    public const double CartMass = 1.0;
    /// <summary>Pole mass (kg).</summary>
    public const double PoleMass = 0.1;
    /// <summary>Half the pole's length (m): Gymnasium's <c>length</c>.</summary>
    public const double HalfPoleLength = 0.5;
    /// <summary>Magnitude of the push (N).</summary>
    public const double ForceMagnitude = 10.0;
    /// <summary>Seconds per step.</summary>
    public const double Tau = 0.02;
    /// <summary>|x| beyond this terminates.</summary>
    public const double XThreshold = 2.4;
    /// <summary>|θ| beyond this (12 degrees) terminates.</summary>
    public const double ThetaThresholdRadians = 12 * 2 * Math.PI / 360;
    /// <summary>CartPole-v1's time limit.</summary>
    public const int DefaultMaxEpisodeSteps = 500;
    /// <summary>Mean return over 100 episodes that counts as solved.</summary>
    public const double SolvedMeanReturn = 475;

    private const double TotalMass = CartMass + PoleMass, PoleMassLength = PoleMass * HalfPoleLength;
    private readonly Generator _random = new(0);
    private readonly double[] _state = new double[4];
    private int _steps;
    private bool _started, _done;

    /// <summary>A cart-pole truncated after <paramref name="maxEpisodeSteps"/> steps.</summary>
    public CartPole(int maxEpisodeSteps = DefaultMaxEpisodeSteps)
    {
        if (maxEpisodeSteps <= 0) throw new ArgumentOutOfRangeException(nameof(maxEpisodeSteps), maxEpisodeSteps, "CartPole: the time limit must be positive");
        MaxEpisodeSteps = maxEpisodeSteps;
    }

    /// <inheritdoc/>
    public virtual string Name => "cartpole";

    /// <inheritdoc/>
    public virtual BoxSpace ObservationSpace { get; } = new(
        [(float)(-2 * XThreshold), -float.MaxValue, (float)(-2 * ThetaThresholdRadians), -float.MaxValue],
        [(float)(2 * XThreshold), float.MaxValue, (float)(2 * ThetaThresholdRadians), float.MaxValue]);

    /// <inheritdoc/>
    public DiscreteSpace ActionSpace { get; } = new(2);

    /// <inheritdoc/>
    public int MaxEpisodeSteps { get; }

    /// <summary>The float64 state (x, ẋ, θ, θ̇); settable so that a test can start from a chosen state.</summary>
    public ReadOnlySpan<double> State => _state;

    /// <summary>Sets the state (and restarts the step count), as assigning Gymnasium's <c>env.state</c> after a reset.</summary>
    public void SetState(double x, double xDot, double theta, double thetaDot)
    {
        (_state[0], _state[1], _state[2], _state[3]) = (x, xDot, theta, thetaDot);
        _steps = 0; _started = true; _done = false;
    }

    /// <inheritdoc/>
    public void Reset(ulong? seed, Span<float> observation)
    {
        EnvironmentChecks.Observation(this, "Reset", observation);
        if (seed is ulong s) _random.Reseed(s);
        for (int i = 0; i < 4; i++) _state[i] = -0.05 + 0.1 * _random.NextDouble();
        _steps = 0; _started = true; _done = false;
        Observe(observation);
    }

    /// <inheritdoc/>
    public StepResult Step(int action, Span<float> observation)
    {
        EnvironmentChecks.Observation(this, "Step", observation);
        EnvironmentChecks.Action(this, action);
        EnvironmentChecks.Running(this, _started, _done);
        double x = _state[0], xDot = _state[1], theta = _state[2], thetaDot = _state[3];
        double force = action == 1 ? ForceMagnitude : -ForceMagnitude;
        double cos = Math.Cos(theta), sin = Math.Sin(theta);
        // Grouped as Gymnasium's Python (m_p·l·θ̇² is (m_p·l)·(θ̇²)), so that every float64 rounding is the same.
        double temp = (force + PoleMassLength * (thetaDot * thetaDot) * sin) / TotalMass;
        double thetaAcc = (Gravity * sin - cos * temp) / (HalfPoleLength * (4.0 / 3.0 - PoleMass * (cos * cos) / TotalMass));
        double xAcc = temp - PoleMassLength * thetaAcc * cos / TotalMass;
        x += Tau * xDot;
        xDot += Tau * xAcc;
        theta += Tau * thetaDot;
        thetaDot += Tau * thetaAcc;
        (_state[0], _state[1], _state[2], _state[3]) = (x, xDot, theta, thetaDot);
        _steps++;
        bool terminated = x < -XThreshold || x > XThreshold || theta < -ThetaThresholdRadians || theta > ThetaThresholdRadians;
        bool truncated = _steps >= MaxEpisodeSteps;
        _done = terminated || truncated;
        Observe(observation);
        return new StepResult(1.0, terminated, truncated);
    }

    /// <summary>Writes the observation of the current state.</summary>
    protected virtual void Observe(Span<float> observation)
    {
        for (int i = 0; i < 4; i++) observation[i] = (float)_state[i];
    }
}

/// <summary>
/// CartPole-v1 observed through (x, θ) only, as RLlib's StatelessCartPole: the velocities must be inferred from
/// the history, so a policy that sees only the current observation cannot balance the pole for long. Dynamics,
/// termination, truncation and reward are <see cref="CartPole"/>'s.
/// </summary>
public sealed class StatelessCartPole : CartPole
{
    /// <summary>A stateless cart-pole truncated after <paramref name="maxEpisodeSteps"/> steps.</summary>
    public StatelessCartPole(int maxEpisodeSteps = DefaultMaxEpisodeSteps) : base(maxEpisodeSteps) { }

    /// <inheritdoc/>
    public override string Name => "stateless-cartpole";

    /// <inheritdoc/>
    public override BoxSpace ObservationSpace { get; } = new([(float)(-2 * XThreshold), (float)(-2 * ThetaThresholdRadians)], [(float)(2 * XThreshold), (float)(2 * ThetaThresholdRadians)]);

    /// <inheritdoc/>
    protected override void Observe(Span<float> observation)
    {
        observation[0] = (float)State[0];
        observation[1] = (float)State[2];
    }
}
