namespace AttnCore;

/// <summary>
/// Disposes every tensor created on this thread while the scope is open, except those kept with
/// <see cref="Keep"/>. Scopes nest; a kept tensor moves to the enclosing scope (or to none).
/// <code>
/// using (var scope = new TensorScope())
/// {
///     var h = x.MatMul(w).Relu();      // intermediates die with the scope
///     result = scope.Keep(h.Sum());    // this one survives
/// }
/// </code>
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;
    private readonly TensorScope? _outer;
    private readonly List<Tensor> _owned = [];
    private bool _disposed;

    /// <summary>Opens a scope on the current thread.</summary>
    public TensorScope()
    {
        _outer = _current;
        _current = this;
    }

    /// <summary>The innermost open scope of this thread, if any.</summary>
    public static TensorScope? Current => _current;

    /// <summary>How many tensors this scope will dispose.</summary>
    public int Count => _owned.Count;

    internal static void Register(Tensor t) => _current?._owned.Add(t);

    /// <summary>Makes tensors created from now on belong to no scope, until <see cref="Resume"/>; returns the scope to resume.</summary>
    public static TensorScope? Suspend()
    {
        var s = _current;
        _current = null;
        return s;
    }

    /// <summary>Restores the scope returned by <see cref="Suspend"/>.</summary>
    public static void Resume(TensorScope? scope) => _current = scope;

    /// <summary>Takes <paramref name="t"/> out of this scope (into the enclosing one) and returns it.</summary>
    public Tensor Keep(Tensor t)
    {
        int i = _owned.LastIndexOf(t);
        if (i >= 0) _owned.RemoveAt(i);
        _outer?._owned.Add(t);
        return t;
    }

    // Takes t out of this scope without handing it to the enclosing one: its new owner (a leaf's Grad) disposes it.
    internal void Disown(Tensor t)
    {
        int i = _owned.LastIndexOf(t);
        if (i >= 0) _owned.RemoveAt(i);
    }

    /// <summary>Disposes the tensors the scope owns and closes it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_current != this) throw new InvalidOperationException("TensorScope: scopes must be disposed in the reverse order they were opened (on the same thread)");
        _current = _outer;
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
