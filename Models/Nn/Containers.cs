namespace AttnCore.Models.Nn;

/// <summary>An indexed list of sub-modules named 0, 1, 2 ... (torch.nn.ModuleList).</summary>
public sealed class ModuleList<T> : Module where T : Module
{
    private readonly List<T> _items = [];

    /// <summary>Holds <paramref name="items"/> in order.</summary>
    public ModuleList(IEnumerable<T> items)
    {
        foreach (var m in items) _items.Add(Child(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), m));
    }

    /// <summary>The i-th module.</summary>
    public T this[int i] => _items[i];
    /// <summary>How many modules.</summary>
    public int Count => _items.Count;
    /// <summary>The modules in order.</summary>
    public IReadOnlyList<T> Items => _items;
}

/// <summary>The Transformer feed-forward block: Linear(D, F) → GELU (or ReLU) → Dropout → Linear(F, D).</summary>
public sealed class FeedForward : Module<Tensor, Tensor>
{
    private readonly Linear _fc, _proj;
    private readonly Dropout _drop;
    private readonly bool _relu;

    /// <summary>A block of width <paramref name="dim"/> with hidden size <paramref name="hidden"/>.</summary>
    public FeedForward(int dim, int hidden, double dropout = 0, bool relu = false, bool bias = true, Generator? generator = null, Device? device = null)
    {
        _fc = Child("fc", new Linear(dim, hidden, bias, generator, device));
        _proj = Child("proj", new Linear(hidden, dim, bias, generator, device));
        _drop = Child("drop", new Dropout(dropout, generator));
        _relu = relu;
    }

    /// <summary>The output projection (GPT-2 scales its initialisation).</summary>
    public Linear Projection => _proj;
    /// <summary>True when the activation is ReLU, false for GELU (what an exporter must know).</summary>
    public bool UsesRelu => _relu;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        using var scope = new TensorScope();
        var h = _fc.Forward(x);
        h = _relu ? h.Relu() : h.Gelu();
        return scope.Keep(_proj.Forward(_drop.Forward(h)));
    }
}
