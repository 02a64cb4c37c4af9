using System.Runtime.CompilerServices;

namespace AttnCore;

/// <summary>
/// Hooks that run when Backward has finished a leaf's gradient, as PyTorch's register_post_accumulate_grad_hook:
/// data-parallel training starts all-reducing a bucket of gradients as soon as its last gradient is final, while
/// backward goes on with the layers below. A leaf's gradient is final when Backward reaches the leaf: the walk runs in
/// reverse topological order, so every op that used the leaf has already contributed.
/// </summary>
public static class GradHooks
{
    private static readonly ConditionalWeakTable<Tensor, List<Action<Tensor>>> Hooks = new();
    private static int _registered;

    /// <summary>
    /// Calls <paramref name="hook"/> with <paramref name="leaf"/> each time a Backward has added to its
    /// <see cref="Tensor.Grad"/> (once per Backward that reaches the leaf, on the thread running Backward, after the gradient
    /// was accumulated). Dispose the returned handle to remove the hook.
    /// </summary>
    public static IDisposable RegisterPostAccumulateGradHook(this Tensor leaf, Action<Tensor> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        if (!leaf.IsLeaf || !leaf.RequiresGrad)
            throw new ArgumentException($"RegisterPostAccumulateGradHook: needs a leaf tensor that requires gradients, got {Shape.Format(leaf.Shape)} ({(leaf.IsLeaf ? "RequiresGrad is false" : "a computed tensor")})");
        var list = Hooks.GetOrCreateValue(leaf);
        lock (list) list.Add(hook);
        Interlocked.Increment(ref _registered);
        return new Registration(leaf, hook);
    }

    internal static void AfterAccumulate(Tensor leaf)
    {
        if (Volatile.Read(ref _registered) == 0 || !Hooks.TryGetValue(leaf, out var list)) return;
        Action<Tensor>[] hooks;
        lock (list) hooks = [.. list];
        foreach (var hook in hooks) hook(leaf);
    }

    private sealed class Registration(Tensor leaf, Action<Tensor> hook) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0 || !Hooks.TryGetValue(leaf, out var list)) return;
            lock (list) list.Remove(hook);
            Interlocked.Decrement(ref _registered);
        }
    }
}
