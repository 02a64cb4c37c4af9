using System.Text.Json;
using System.Text.Json.Serialization;

namespace AttnCore.Models.IO;

/// <summary>
/// Reads a model's config stored as JSON in a checkpoint's metadata, strictly: an unknown member or a missing
/// required one is an error, so a config written by another version or edited by hand is refused, not half-read.
/// </summary>
public static class CheckpointConfig
{
    private static readonly JsonSerializerOptions Strict = new()
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>
    /// The config in <paramref name="json"/>, or a <see cref="CheckpointFormatException"/> from <paramref name="reader"/>
    /// naming <paramref name="path"/> when it is null or not valid.
    /// </summary>
    public static T Read<T>(string json, string reader, string path) where T : class
    {
        try { return JsonSerializer.Deserialize<T>(json, Strict) ?? throw new CheckpointFormatException(reader, path, "the config is null"); }
        catch (JsonException e) { throw new CheckpointFormatException(reader, path, $"the config is not valid ({e.Message})", e); }
    }
}
