using System.Text.Json;
using System.Text.Json.Serialization;

namespace AttnCore.Models.Training;

/// <summary>What <see cref="Trainer"/> does when a step's loss (or, with clipping, its gradient norm) is NaN or infinite.</summary>
public enum NonFinitePolicy
{
    /// <summary>
    /// Stop at once without updating the model: <see cref="Trainer.Run"/> writes metrics.json for the steps so far,
    /// tells the callbacks (<see cref="TrainerRunOutcome.Diverged"/>: the CLI's draws loss.png) and throws <see cref="TrainingDivergedException"/>; the last checkpoint stays as it was.
    /// </summary>
    Stop,

    /// <summary>
    /// Skip the step as PyTorch AMP's GradScaler does: no parameter or optimizer-state update (the schedule still
    /// advances, so it stays aligned with the step count); skipped steps are counted in the metrics, and after
    /// <see cref="TrainerOptions.MaxConsecutiveSkips"/> skips in a row the run stops as with <see cref="Stop"/>.
    /// </summary>
    Skip,
}

/// <summary>A training run stopped because its loss or gradient norm was not finite (see <see cref="NonFinitePolicy"/>).</summary>
public sealed class TrainingDivergedException(string message, int step, double loss, double? gradientNorm) : InvalidOperationException(message)
{
    /// <summary>The 1-based step whose loss or gradient norm was not finite.</summary>
    public int Step { get; } = step;
    /// <summary>That step's loss (possibly finite when only the gradient norm was not).</summary>
    public double Loss { get; } = loss;
    /// <summary>That step's gradient norm before clipping; null when the run does not clip.</summary>
    public double? GradientNorm { get; } = gradientNorm;
}

/// <summary>
/// JSON has no NaN or infinity: a non-finite number is written as <c>null</c> (and read back as NaN), so
/// metrics.json and the history inside a checkpoint stay valid JSON whatever the loss did.
/// </summary>
public sealed class NonFiniteAsNullConverter : JsonConverter<double>
{
    /// <inheritdoc/>
    public override bool HandleNull => true;

    /// <inheritdoc/>
    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? double.NaN : reader.GetDouble();

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
    {
        if (double.IsFinite(value)) writer.WriteNumberValue(value);
        else writer.WriteNullValue();
    }
}

/// <summary><see cref="NonFiniteAsNullConverter"/> for optional numbers: null stays null, NaN and infinities become null.</summary>
public sealed class OptionalNonFiniteAsNullConverter : JsonConverter<double?>
{
    /// <inheritdoc/>
    public override bool HandleNull => true;

    /// <inheritdoc/>
    public override double? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? null : reader.GetDouble();

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, double? value, JsonSerializerOptions options)
    {
        if (value is double v && double.IsFinite(v)) writer.WriteNumberValue(v);
        else writer.WriteNullValue();
    }
}
