namespace AttnCore.Models.IO;

/// <summary>
/// The one exception AttnCore raises when a checkpoint file cannot be used: a safetensors file, a
/// trainer <c>checkpoint.bin</c> or a GPT checkpoint's config that is truncated, corrupted, malformed
/// or does not fit the model it is loaded into. The message names the reader, the file and what is
/// wrong. It derives from <see cref="IOException"/> (.NET's <see cref="InvalidDataException"/> is sealed):
/// code that handles a file it cannot read (a missing file, no permission) handles this too, and the CLI
/// answers it, as every IOException, with a one-line error and exit code 1.
/// </summary>
public class CheckpointFormatException : IOException
{
    /// <summary>A failure of <paramref name="reader"/> on <paramref name="path"/> because of <paramref name="problem"/>.</summary>
    public CheckpointFormatException(string reader, string path, string problem, Exception? inner = null)
        : this(path, $"{reader}: '{path}': {problem}", inner) { }

    /// <summary>For subclasses that compose their own <paramref name="message"/>.</summary>
    protected CheckpointFormatException(string path, string message, Exception? inner)
        : base(message, inner)
    {
        FilePath = path;
    }

    /// <summary>The file that could not be read.</summary>
    public string FilePath { get; }
}

/// <summary>
/// A safetensors file that breaks the format (or asks for something AttnCore cannot hold): raised by
/// <see cref="Safetensors"/> before any tensor is created, with the file, the tensor (when one is at
/// fault) and the rule it breaks in the message.
/// </summary>
public sealed class SafetensorsFormatException : CheckpointFormatException
{
    /// <summary>A broken rule of the file at <paramref name="path"/>, in tensor <paramref name="tensorName"/> (null: the file as a whole).</summary>
    public SafetensorsFormatException(string path, string? tensorName, string problem, Exception? inner = null)
        : base(path, tensorName is null ? $"Safetensors: '{path}': {problem}" : $"Safetensors: '{path}': tensor '{tensorName}': {problem}", inner)
    {
        TensorName = tensorName;
    }

    /// <summary>The tensor whose entry is at fault, or null when the file as a whole is.</summary>
    public string? TensorName { get; }
}
