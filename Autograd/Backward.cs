namespace AttnCore;

/// <summary>
/// Reverse-mode differentiation over the GradNodes that Engine ops record. Extension methods in the
/// AttnCore namespace, so <c>loss.Backward()</c> reads as a Tensor method wherever Autograd is referenced.
/// </summary>
public static class AutogradExtensions
{
    /// <summary>
    /// Computes d(this)/d(leaf) for every leaf that requires gradients and adds it to the leaf's
    /// <see cref="Tensor.Grad"/> (gradients accumulate across calls, as in PyTorch). A non-scalar output
    /// needs <paramref name="gradient"/> of its shape. Saved tensors are released as soon as their rule ran, so
    /// a graph through an op that saved tensors can be walked once unless <paramref name="retainGraph"/> is set
    /// (as PyTorch's retain_graph); ops that save nothing (Add, MulScalar, Sum, views ...) can be walked again.
    /// </summary>
    public static void Backward(this Tensor output, Tensor? gradient = null, bool retainGraph = false)
    {
        if (!output.RequiresGrad)
            throw new InvalidOperationException($"Backward: the tensor {Shape.Format(output.Shape)} does not require gradients (no input of it had RequiresGrad = true, or it was computed under NoGrad)");
        if (gradient is null && output.Numel != 1)
            throw new ArgumentException($"Backward: a gradient is needed for a non-scalar output of shape {Shape.Format(output.Shape)}");
        if (gradient is not null && !gradient.Shape.SequenceEqual(output.Shape))
            throw new ArgumentException($"Backward: gradient shape {Shape.Format(gradient.Shape)} differs from the output's {Shape.Format(output.Shape)}");

        using var noGrad = new NoGrad();
        var (order, consumers) = TopologicalOrder(output);
        // Gradients flowing to non-leaf tensors, by identity; each is disposed once its node has run.
        var pending = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        // The seed belongs to the backward scope too, or a Backward called outside any scope leaks it.
        using var scope = new TensorScope();
        pending[output] = gradient is null ? output.OnesLike() : gradient.Clone();
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (!pending.Remove(t, out var g)) continue;
            var node = t.GradFn;
            if (node is null)
            {
                Accumulate(t, g, scope, Unshared(g, pending, null, -1));
                continue;
            }
            if (node.Saved.IsReleased)
                throw new InvalidOperationException($"Backward of {node.Name}: the {node.Saved.SavedCount} tensor(s) it saved for its gradient were freed by an earlier Backward; pass retainGraph: true to that Backward to walk the graph again");
            node.CheckSavedVersions();
            var addend = PendingAddend(node, pending);
            var grads = DerivativeRules.Apply(node, g, addend);
            if (!retainGraph) node.ReleaseSaved();
            for (int k = 0; k < node.Inputs.Length; k++)
            {
                var input = node.Inputs[k];
                var gi = grads[k];
                if (gi is not null && input.RequiresGrad)
                {
                    if (!gi.Shape.SequenceEqual(input.Shape))
                        throw new InvalidOperationException($"Backward: the {node.Name} rule returned a gradient of shape {Shape.Format(gi.Shape)} for an input of shape {Shape.Format(input.Shape)}");
                    if (k == 0 && addend is not null) pending[input] = gi; // the rule added the pending gradient itself
                    else if (pending.TryGetValue(input, out var acc)) pending[input] = acc + gi;
                    else pending[input] = gi;
                }
                // A leaf whose last consumer has run holds its final gradient now: accumulate it (and run its hooks) at
                // once rather than where the topological order puts it, so data-parallel all-reduces start early in backward.
                if (input.GradFn is null && consumers.TryGetValue(input, out int left))
                {
                    if (left > 1) consumers[input] = left - 1;
                    else
                    {
                        consumers.Remove(input);
                        if (pending.Remove(input, out var final)) Accumulate(input, final, scope, Unshared(final, pending, grads, k));
                    }
                }
            }
        }
    }

    // The gradient the node's first input already has, when the node's rule adds it in its own pass
    // (DerivativeRules.AddsInputGradient: a layer norm on a residual stream) instead of Backward adding it afterwards.
    internal static Tensor? PendingAddend(GradNode node, Dictionary<Tensor, Tensor> pending) =>
        node.Inputs.Length > 0 && node.Inputs[0].RequiresGrad && pending.TryGetValue(node.Inputs[0], out var p) && DerivativeRules.AddsInputGradient(node, p) ? p : null;

    // Leaves keep their gradient beyond the backward scope: it is created outside any TensorScope. A leaf's first
    // gradient is adopted rather than copied when nothing else can see it (Adoptable), as PyTorch's AccumulateGrad
    // steals a gradient nobody else holds: one pass over every parameter fewer per step.
    private static void Accumulate(Tensor leaf, Tensor g, TensorScope scope, bool unshared)
    {
        if (!leaf.RequiresGrad) return;
        if (leaf.Grad is null && unshared && Adoptable(g))
        {
            scope.Disown(g);
            leaf.Grad = g;
        }
        else
        {
            var outer = TensorScope.Suspend();
            try
            {
                var old = leaf.Grad;
                leaf.Grad = old is null ? g.Clone() : old + g;
                old?.Dispose();
            }
            finally { TensorScope.Resume(outer); }
        }
        GradHooks.AfterAccumulate(leaf);
    }

    // A gradient a leaf may keep as its Grad: a whole, dense storage that no other tensor views (a rule's view of the
    // incoming gradient, a saved tensor kept by retainGraph) and the layout a cloned gradient would have.
    private static bool Adoptable(Tensor g) =>
        g.Storage.HasOneReference && g.IsContiguous && g.Layout.Offset == 0 && g.Numel == g.Storage.Length && !g.RequiresGrad;

    // False when the same tensor object still flows elsewhere: another input's gradient from this rule (Add returns
    // its incoming gradient for both inputs) or a gradient pending for a tensor not yet reached.
    private static bool Unshared(Tensor g, Dictionary<Tensor, Tensor> pending, Tensor?[]? grads, int slot)
    {
        if (grads is not null)
            for (int i = 0; i < grads.Length; i++)
                if (i != slot && ReferenceEquals(grads[i], g)) return false;
        foreach (var v in pending.Values)
            if (ReferenceEquals(v, g)) return false;
        return true;
    }

    // Also counts, for each leaf, the graph edges that lead into it (one per input slot of a node that uses it).
    private static (List<Tensor> Order, Dictionary<Tensor, int> LeafConsumers) TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var consumers = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor T, bool Expanded)>();
        stack.Push((root, false));
        while (stack.Count > 0)
        {
            var (t, expanded) = stack.Pop();
            if (expanded) { order.Add(t); continue; }
            if (!seen.Add(t)) continue;
            stack.Push((t, true));
            if (t.GradFn is { } node)
                foreach (var input in node.Inputs)
                {
                    if (!input.RequiresGrad) continue;
                    if (input.GradFn is null) consumers[input] = consumers.GetValueOrDefault(input) + 1;
                    if (!seen.Contains(input)) stack.Push((input, false));
                }
        }
        return (order, consumers);   // inputs before the tensors computed from them
    }

    /// <summary>Sets the gradient of every given tensor to null (what an optimizer's ZeroGrad does).</summary>
    public static void ZeroGrad(this IEnumerable<Tensor> parameters)
    {
        foreach (var p in parameters) { p.Grad?.Dispose(); p.Grad = null; }
    }
}
