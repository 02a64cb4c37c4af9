using System.Globalization;
using AttnCore.Models.IO;

namespace AttnCore.Models.Reinforcement;

/// <summary>
/// A policy saved as safetensors (written through a temporary name and a rename, as every AttnCore file), with the
/// environment it was trained on and the policy's construction parameters in the metadata
/// (attncore.model = "ppo-policy", attncore.env, attncore.policy, attncore.policy.&lt;name&gt;), so that
/// <see cref="Load"/> rebuilds the same network without being told its sizes.
/// </summary>
public static class PolicyCheckpoint
{
    private const string Model = "ppo-policy";

    /// <summary>Writes <paramref name="policy"/> trained on <paramref name="environment"/> to <paramref name="path"/>, with extra metadata.</summary>
    public static void Save(string path, ActorCritic policy, string environment, IReadOnlyDictionary<string, string>? extra = null)
    {
        var meta = new Dictionary<string, string> { ["attncore.model"] = Model, ["attncore.env"] = environment, ["attncore.policy"] = policy.Kind };
        foreach (var (k, v) in policy.Describe()) meta["attncore.policy." + k] = v;
        if (extra is not null) foreach (var (k, v) in extra) meta[k] = v;
        Safetensors.Save(path, policy, meta);
    }

    /// <summary>Rebuilds the policy stored at <paramref name="path"/> and names its environment.</summary>
    public static (ActorCritic Policy, string Environment) Load(string path, Device? device = null)
    {
        Dictionary<string, string> meta;
        using (var file = Safetensors.Open(path)) meta = new Dictionary<string, string>(file.Metadata);
        if (!meta.TryGetValue("attncore.model", out var model) || model != Model)
            throw new InvalidDataException($"PolicyCheckpoint.Load: '{path}' is not a PPO policy (attncore.model is '{model ?? "missing"}', expected '{Model}')");
        string env = Get(meta, path, "attncore.env");
        int Int(string name)
        {
            string s = Get(meta, path, "attncore.policy." + name);
            if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v <= 0 || v > 1 << 20)
                throw new InvalidDataException($"PolicyCheckpoint.Load: '{path}' has attncore.policy.{name} = '{s}', expected a positive integer");
            return v;
        }
        var g = new Generator(0);
        ActorCritic policy = Get(meta, path, "attncore.policy") switch
        {
            "mlp" => new MlpActorCritic(Int("observations"), Int("actions"), g, Int("hidden"), device),
            "transformer" => new TransformerActorCritic(Int("observations"), Int("actions"), Int("context"), g, Int("dim"), Int("heads"), Int("layers"), device),
            var other => throw new InvalidDataException($"PolicyCheckpoint.Load: '{path}' has policy kind '{other}', expected mlp or transformer"),
        };
        try { Safetensors.LoadInto(path, policy); }
        catch (ArgumentException e) { policy.Dispose(); throw new InvalidDataException($"PolicyCheckpoint.Load: '{path}': {e.Message}", e); }
        catch { policy.Dispose(); throw; }
        return (policy, env);
    }

    private static string Get(Dictionary<string, string> meta, string path, string key) =>
        meta.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"PolicyCheckpoint.Load: '{path}' has no '{key}' in its metadata");
}
