using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace AttnCore.Cli;

/// <summary>
/// The values a numeric option accepts. It is the option's validator, so a value outside it is a usage error
/// found while parsing (one line on stderr, exit 2, nothing run); its <see cref="Describe"/> is appended to the
/// option's help. <see cref="Of"/> finds it on an option, which lets a test walk every command and prove that
/// each numeric option has a range and enforces it.
/// </summary>
/// <param name="Min">Smallest allowed value (or the open lower bound when <paramref name="MinExclusive"/>).</param>
/// <param name="Max">Largest allowed value (or the open upper bound when <paramref name="MaxExclusive"/>).</param>
/// <param name="Integer">Whole numbers only (the option's type is an integer type).</param>
/// <param name="MinExclusive">The lower bound itself is not allowed.</param>
/// <param name="MaxExclusive">The upper bound itself is not allowed.</param>
public sealed record NumericRange(double Min, double Max, bool Integer, bool MinExclusive = false, bool MaxExclusive = false)
{
    /// <summary>Whether <paramref name="value"/> is allowed (NaN and infinities never are).</summary>
    public bool Contains(double value) =>
        double.IsFinite(value) && (MinExclusive ? value > Min : value >= Min) && (MaxExclusive ? value < Max : value <= Max);

    /// <summary>What the option takes, in words: "a positive integer", "an integer from 1 to 65536", "a number in [0, 1)".</summary>
    public string Describe()
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        bool unbounded = Integer ? Max >= int.MaxValue : double.IsPositiveInfinity(Max);
        if (Integer)
            return unbounded ? Min switch { 1 => "a positive integer", 0 => "a non-negative integer", _ => $"an integer of at least {F(Min)}" }
                : $"an integer from {F(Min)} to {F(Max)}";
        if (unbounded) return $"a finite number {(MinExclusive ? ">" : ">=")} {F(Min)}";
        return $"a number in {(MinExclusive ? "(" : "[")}{F(Min)}, {F(Max)}{(MaxExclusive ? ")" : "]")}";
    }

    /// <summary>The range declared on <paramref name="option"/>, or null when it has none.</summary>
    public static NumericRange? Of(Option option) => option.Validators.Select(v => v.Target).OfType<NumericRange>().FirstOrDefault();

    // The option's validator (its Target is this range, which is how Of finds it).
    private void Validate<T>(OptionResult result)
    {
        if (result.Implicit) return;
        object? value;
        try { value = result.GetValueOrDefault<T>(); }
        catch (InvalidOperationException) { return; } // not a number of this type: System.CommandLine reports that itself
        if (value is null) return;
        double v = Convert.ToDouble(value, CultureInfo.InvariantCulture);
        if (!Contains(v))
            result.AddError($"{result.Option.Name} must be {Describe()}, got {result.Tokens[^1].Value}");
    }

    /// <summary>Makes this range the validator of <paramref name="option"/> and states it in its help.</summary>
    public Option<T> On<T>(Option<T> option)
    {
        option.Validators.Add(Validate<T>);
        option.Description = $"{option.Description} ({Describe()})";
        return option;
    }
}

/// <summary>Numeric options with their allowed range attached (see <see cref="NumericRange"/>).</summary>
public static class NumericOption
{
    /// <summary>Sizes (batch, block, dim, rows ...) stop here: beyond it a single tensor would pass .NET's array limit anyway.</summary>
    public const int MaxSize = 1 << 20;

    /// <summary>An integer option with a default, allowed in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<int> Int(string name, string description, int defaultValue, int min, int max = int.MaxValue) =>
        new NumericRange(min, max, Integer: true).On(new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue });

    /// <summary>An optional integer option (null when not given), allowed in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<int?> OptionalInt(string name, string description, int min, int max = int.MaxValue) =>
        new NumericRange(min, max, Integer: true).On(new Option<int?>(name) { Description = description });

    /// <summary>A floating-point option with a default; NaN and infinities are always rejected.</summary>
    public static Option<double> Number(string name, string description, double defaultValue, double min, double max = double.PositiveInfinity,
        bool minExclusive = false, bool maxExclusive = false) =>
        new NumericRange(min, max, Integer: false, minExclusive, maxExclusive).On(new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue });
}

/// <summary>
/// Rules between the options of a command ("--dim a multiple of --heads"). They run after parsing succeeded, when
/// every option has its value (System.CommandLine's command validators run before defaults are filled in), and a
/// broken rule is a usage error like a value out of range: one line, exit 2, nothing run.
/// </summary>
public static class OptionRules
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Command, List<Func<ParseResult, string?>>> Rules = [];

    /// <summary>Adds <paramref name="rule"/> to <paramref name="command"/>: it returns the error message, or null when the values agree.</summary>
    public static void AddRule(this Command command, Func<ParseResult, string?> rule) => Rules.GetOrCreateValue(command).Add(rule);

    /// <summary>The first broken rule of the parsed command, or null.</summary>
    public static string? FirstViolation(ParseResult parsed) =>
        Rules.TryGetValue(parsed.CommandResult.Command, out var rules) ? rules.Select(r => r(parsed)).FirstOrDefault(m => m is not null) : null;
}
