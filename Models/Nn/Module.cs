namespace AttnCore.Models.Nn;

/// <summary>
/// Base of every layer and model, as torch.nn.Module / TorchSharp's Module: registered parameters,
/// buffers and sub-modules with dotted names ("blocks.0.attn.qkv.weight"), Train()/Eval(), a state dict,
/// and Dispose for the memory they hold.
/// </summary>
public abstract class Module : IDisposable
{
    private readonly List<(string Name, Tensor Tensor)> _parameters = [];
    private readonly List<(string Name, Tensor Tensor)> _buffers = [];
    private readonly List<(string Name, Module Module)> _modules = [];

    /// <summary>True in training mode (dropout active), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers a trainable tensor (made a leaf that requires gradients) under <paramref name="name"/>.</summary>
    protected Tensor Parameter(string name, Tensor value)
    {
        CheckName(name);
        value.RequiresGrad = true;
        _parameters.Add((name, value));
        return value;
    }

    /// <summary>Registers a non-trainable tensor saved in the state dict (running statistics, fixed tables).</summary>
    protected Tensor Buffer(string name, Tensor value)
    {
        CheckName(name);
        _buffers.Add((name, value));
        return value;
    }

    /// <summary>Registers a sub-module under <paramref name="name"/>.</summary>
    protected T Child<T>(string name, T module) where T : Module
    {
        CheckName(name);
        _modules.Add((name, module));
        return module;
    }

    private void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.')) throw new ArgumentException($"{GetType().Name}: '{name}' is not a valid member name (no dots, not empty)");
        if (_parameters.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name) || _modules.Any(m => m.Name == name))
            throw new ArgumentException($"{GetType().Name}: the name '{name}' is registered twice");
    }

    /// <summary>Every parameter with its dotted name, depth first in registration order.</summary>
    public IEnumerable<(string Name, Tensor Parameter)> NamedParameters(string prefix = "")
    {
        foreach (var (n, p) in _parameters) yield return (prefix + n, p);
        foreach (var (n, m) in _modules)
            foreach (var x in m.NamedParameters(prefix + n + ".")) yield return x;
    }

    /// <summary>Every parameter.</summary>
    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(p => p.Parameter);

    /// <summary>Every buffer with its dotted name.</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers(string prefix = "")
    {
        foreach (var (n, b) in _buffers) yield return (prefix + n, b);
        foreach (var (n, m) in _modules)
            foreach (var x in m.NamedBuffers(prefix + n + ".")) yield return x;
    }

    /// <summary>Direct sub-modules with their names.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _modules;

    /// <summary>Parameters and buffers by dotted name (what AttnCore.Models.IO.Safetensors saves).</summary>
    public IReadOnlyDictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (n, p) in NamedParameters()) d[n] = p;
        foreach (var (n, b) in NamedBuffers()) d[n] = b;
        return d;
    }

    /// <summary>Copies values into this module's tensors by name; every name must be present with the same shape (strict, like PyTorch's default).</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        var own = StateDict();
        var missing = own.Keys.Where(k => !state.ContainsKey(k)).ToArray();
        var unexpected = state.Keys.Where(k => !own.ContainsKey(k)).ToArray();
        if (missing.Length > 0 || unexpected.Length > 0)
            throw new ArgumentException($"LoadStateDict ({GetType().Name}): missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}]");
        using var ng = new NoGrad();
        foreach (var (name, t) in own)
        {
            var src = state[name];
            if (!src.Shape.SequenceEqual(t.Shape))
                throw new ArgumentException($"LoadStateDict ({GetType().Name}): '{name}' has shape {Shape.Format(src.Shape)} in the state, {Shape.Format(t.Shape)} in the module");
            using var moved = src.To(t.Device);
            t.CopyFrom(moved);
        }
    }

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount() => Parameters().Sum(p => p.Numel);

    /// <summary>Training mode for this module and its children (dropout on).</summary>
    public Module Train(bool on = true)
    {
        Training = on;
        foreach (var (_, m) in _modules) m.Train(on);
        return this;
    }

    /// <summary>Evaluation mode (dropout off).</summary>
    public Module Eval() => Train(false);

    /// <summary>Frees every parameter, gradient and buffer.</summary>
    public virtual void Dispose()
    {
        foreach (var (_, p) in _parameters) { p.Grad?.Dispose(); p.Dispose(); }
        foreach (var (_, b) in _buffers) b.Dispose();
        foreach (var (_, m) in _modules) m.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A module with one input and one output.</summary>
public abstract class Module<TIn, TOut> : Module
{
    /// <summary>The computation.</summary>
    public abstract TOut Forward(TIn input);
}

/// <summary>Initialisers, as torch.nn.init (seeded through a <see cref="Generator"/>).</summary>
public static class Init
{
    /// <summary>Uniform in [-bound, bound].</summary>
    public static Tensor Uniform(int[] shape, double bound, Generator g, Device? device = null)
    {
        using var u = Tensor.Rand(shape, g, DType.Float32, device);
        using var s = u * (2 * bound);
        return s - bound;
    }

    /// <summary>Normal(0, std).</summary>
    public static Tensor Normal(int[] shape, double std, Generator g, Device? device = null)
    {
        using var n = Tensor.Randn(shape, g, DType.Float32, device);
        return n * std;
    }

    /// <summary>Xavier/Glorot uniform for a [fanIn, fanOut] weight: bound sqrt(6/(fanIn+fanOut)).</summary>
    public static Tensor XavierUniform(int fanIn, int fanOut, Generator g, Device? device = null)
        => Uniform([fanIn, fanOut], Math.Sqrt(6.0 / (fanIn + fanOut)), g, device);

    /// <summary>Kaiming (He) uniform as torch.nn.Linear's default: bound 1/sqrt(fanIn).</summary>
    public static Tensor KaimingUniform(int[] shape, int fanIn, Generator g, Device? device = null)
        => Uniform(shape, 1.0 / Math.Sqrt(fanIn), g, device);
}
