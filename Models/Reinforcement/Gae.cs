namespace AttnCore.Models.Reinforcement;

/// <summary>
/// Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
/// Advantage Estimation") over a rollout of T steps of N environments, arrays indexed [t·N + i]. Backwards in time:
/// <code>
/// next_t  = 0                     if step t terminated the episode
///         = V(final observation)  if step t truncated it (time limit: the state still has a value)
///         = V(s_{t+1})            otherwise (values[t+1], or nextValues after the last step)
/// δ_t     = r_t + γ·next_t − V(s_t)
/// A_t     = δ_t + γλ·A_{t+1}      with A_{t+1} taken as 0 when step t ended the episode
/// R_t     = A_t + V(s_t)          (the value target)
/// </code>
/// CleanRL's ppo.py treats truncation as termination; bootstrapping it from the final observation, as above, is
/// the correction the time-limit literature (Pardo et al. 2018) and Stable-Baselines3 apply.
/// </summary>
public static class Gae
{
    /// <summary>Fills <paramref name="advantages"/> and <paramref name="returns"/> ([T·N]) from the rollout.</summary>
    public static void Compute(int steps, int envs, ReadOnlySpan<double> rewards, ReadOnlySpan<double> values, ReadOnlySpan<bool> terminated, ReadOnlySpan<bool> truncated,
        ReadOnlySpan<double> finalValues, ReadOnlySpan<double> nextValues, double gamma, double lambda, Span<double> advantages, Span<double> returns)
    {
        int n = steps * envs;
        if (steps <= 0 || envs <= 0) throw new ArgumentException($"Gae.Compute: steps ({steps}) and envs ({envs}) must be positive");
        if (rewards.Length != n || values.Length != n || terminated.Length != n || truncated.Length != n || finalValues.Length != n || advantages.Length != n || returns.Length != n || nextValues.Length != envs)
            throw new ArgumentException($"Gae.Compute: every per-step array must hold steps × envs = {steps} × {envs} = {n} entries and nextValues {envs}; got rewards {rewards.Length}, values {values.Length}, " +
                $"terminated {terminated.Length}, truncated {truncated.Length}, finalValues {finalValues.Length}, nextValues {nextValues.Length}, advantages {advantages.Length}, returns {returns.Length}");
        if (gamma is < 0 or > 1 || lambda is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(gamma), $"Gae.Compute: gamma ({gamma}) and lambda ({lambda}) must lie in [0, 1]");
        for (int i = 0; i < envs; i++)
        {
            double carry = 0;
            for (int t = steps - 1; t >= 0; t--)
            {
                int k = t * envs + i;
                bool ended = terminated[k] || truncated[k];
                double next = terminated[k] ? 0 : truncated[k] ? finalValues[k] : t == steps - 1 ? nextValues[i] : values[k + envs];
                double delta = rewards[k] + gamma * next - values[k];
                carry = delta + (ended ? 0 : gamma * lambda * carry);
                advantages[k] = carry;
                returns[k] = carry + values[k];
            }
        }
    }
}
