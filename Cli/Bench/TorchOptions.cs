using System.CommandLine;

namespace AttnCore.Cli.Bench;

/// <summary>The options of <c>bench ... --vs torch</c> that configure the PyTorch reference process.</summary>
public sealed class TorchOptions
{
    /// <summary>--torch-untuned: inherit the environment as it is, to show what the tuned configuration changes.</summary>
    public Option<bool> Untuned { get; } = new("--torch-untuned")
    {
        Description = "run PyTorch with the inherited environment (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) and the system allocator, to show what the tuned reference changes",
    };

    /// <summary>--torch-allocator auto|jemalloc|glibc-tuned|system.</summary>
    public Option<string> Allocator { get; } = new Option<string>("--torch-allocator")
    {
        Description = "PyTorch's allocator: auto (jemalloc where libjemalloc2 is installed, else glibc-tuned), jemalloc, glibc-tuned (large blocks kept, not returned to the OS) or system",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong("auto", "jemalloc", "glibc-tuned", "system");

    /// <summary>Adds the options to <paramref name="cmd"/>.</summary>
    public Command AddTo(Command cmd)
    {
        cmd.Options.Add(Untuned); cmd.Options.Add(Allocator);
        return cmd;
    }

    /// <summary>The reference settings for <paramref name="threads"/> threads; rejects these options when there is no PyTorch reference.</summary>
    /// <exception cref="ArgumentException">--torch-untuned or --torch-allocator without --vs torch.</exception>
    public TorchSettings Read(ParseResult p, int threads, bool vsTorch)
    {
        bool untuned = p.GetValue(Untuned);
        string allocator = p.GetValue(Allocator) ?? "auto";
        if (!vsTorch && (untuned || allocator != "auto"))
            throw new ArgumentException($"bench: {(untuned ? "--torch-untuned" : "--torch-allocator " + allocator)} configures the PyTorch reference; it needs --vs torch");
        var kind = Enum.GetValues<TorchAllocator>().First(a => TorchBridge.AllocatorName(a) == allocator);
        return new TorchSettings(threads, untuned, kind);
    }
}
