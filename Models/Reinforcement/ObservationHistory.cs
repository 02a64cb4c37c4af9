namespace AttnCore.Models.Reinforcement;

/// <summary>
/// The last K observations of each of N environments, for a policy that decides from its history. A window is
/// written oldest first and right-aligned: the current observation is at position K-1, and positions before the
/// episode's first step hold zeros and are flagged in the key-padding mask (1 = hidden), so attention never looks
/// across an episode boundary. Ring buffers: pushing an observation copies it once and allocates nothing.
/// </summary>
public sealed class ObservationHistory
{
    private readonly float[] _ring;     // [N, K, obs]
    private readonly int[] _length;     // observations of the current episode seen, capped at K
    private readonly int[] _head;       // ring slot of the newest observation

    /// <summary>Histories of <paramref name="context"/> observations of size <paramref name="observationSize"/> for <paramref name="envs"/> environments.</summary>
    public ObservationHistory(int envs, int context, int observationSize)
    {
        if (envs <= 0 || context <= 0 || observationSize <= 0)
            throw new ArgumentException($"ObservationHistory: environments ({envs}), context ({context}) and observation size ({observationSize}) must be positive");
        (Envs, Context, ObservationSize) = (envs, context, observationSize);
        _ring = new float[envs * context * observationSize];
        _length = new int[envs];
        _head = new int[envs];
    }

    /// <summary>Number of environments.</summary>
    public int Envs { get; }
    /// <summary>K, the window length.</summary>
    public int Context { get; }
    /// <summary>Floats per observation.</summary>
    public int ObservationSize { get; }

    /// <summary>Forgets environment <paramref name="env"/>'s history and records the first observation of its new episode.</summary>
    public void StartEpisode(int env, ReadOnlySpan<float> observation)
    {
        _length[env] = 0;
        Push(env, observation);
    }

    /// <summary>Appends an observation of environment <paramref name="env"/>'s current episode.</summary>
    public void Push(int env, ReadOnlySpan<float> observation)
    {
        if (observation.Length != ObservationSize) throw new ArgumentException($"ObservationHistory.Push: observation has {observation.Length} floats, expected {ObservationSize}");
        int head = (_head[env] + 1) % Context;
        observation.CopyTo(_ring.AsSpan((env * Context + head) * ObservationSize, ObservationSize));
        _head[env] = head;
        _length[env] = Math.Min(_length[env] + 1, Context);
    }

    /// <summary>Observations of the current episode held for <paramref name="env"/> (at most K).</summary>
    public int Length(int env) => _length[env];

    /// <summary>Writes environment <paramref name="env"/>'s window [K, obs] and its padding mask [K] (1 where hidden).</summary>
    public void CopyWindow(int env, Span<float> window, Span<float> paddingMask)
    {
        if (window.Length != Context * ObservationSize || paddingMask.Length != Context)
            throw new ArgumentException($"ObservationHistory.CopyWindow: window has {window.Length} floats and mask {paddingMask.Length}, expected {Context * ObservationSize} and {Context}");
        int len = _length[env], pad = Context - len;
        window[..(pad * ObservationSize)].Clear();
        paddingMask[..pad].Fill(1f);
        paddingMask[pad..].Clear();
        for (int j = 0; j < len; j++)
        {
            // position pad + j holds the observation j steps after the oldest kept one
            int slot = ((_head[env] - (len - 1 - j)) % Context + Context) % Context;
            _ring.AsSpan((env * Context + slot) * ObservationSize, ObservationSize).CopyTo(window.Slice((pad + j) * ObservationSize, ObservationSize));
        }
    }
}
