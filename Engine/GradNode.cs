namespace AttnCore;

/// <summary>The ops whose derivative Autograd knows. Engine records them; Autograd owns the rules.</summary>
public enum OpKind
{
#pragma warning disable CS1591 // each value names the Tensor method that records it
    Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu, Sin, Cos, Square, Reciprocal, Sign,
    AddScalar, MulScalar, PowScalar, RSubScalar, RDivScalar, ClampMin, ClampMax,
    Add, Sub, Mul, Div, Pow, Maximum, Minimum,
    Where, Sum, Max, Min, MatMul, Softmax, LogSoftmax, LayerNorm, IndexSelect, Gather, Cat,
    Conv2d, MaxPool2d, AvgPool2d,
    View, Permute, Narrow, Select, Expand, Copy, ToDType, Custom,
    Attention, PackedAttention, CrossEntropy,
#pragma warning restore CS1591
}

/// <summary>
/// How a tensor was made, kept only when an input requires gradients and recording is on: the op,
/// its inputs, and what its backward rule needs (saved tensors, a scalar, integer arguments).
/// This is the whole hook between Engine and Autograd: Engine fills it, Autograd reads it.
/// </summary>
public sealed class GradNode
{
    internal GradNode(OpKind kind, Tensor[] inputs, Tensor[] saved, double scalar, int[] ints, ICustomOp? custom)
    {
        Kind = kind; Inputs = inputs; Saved = saved; Scalar = scalar; Ints = ints; Custom = custom;
        SavedVersions = saved.Select(s => s.Storage.Version).ToArray();
    }

    /// <summary>The op that produced the tensor.</summary>
    public OpKind Kind { get; }
    /// <summary>The op's inputs, in order.</summary>
    public Tensor[] Inputs { get; }
    /// <summary>Tensors the backward rule needs (views holding their own storage reference).</summary>
    public Tensor[] Saved { get; private set; }
    /// <summary>The storage version of each saved tensor when it was saved (detects in-place writes).</summary>
    public long[] SavedVersions { get; }
    /// <summary>A scalar argument (exponent, scalar operand, epsilon ...).</summary>
    public double Scalar { get; }
    /// <summary>Integer arguments (axes, sizes, offsets ...), as the recording op documents.</summary>
    public int[] Ints { get; }
    /// <summary>The custom op for <see cref="OpKind.Custom"/> nodes.</summary>
    public ICustomOp? Custom { get; }

    /// <summary>Throws if a saved tensor was modified in place after it was saved.</summary>
    public void CheckSavedVersions()
    {
        for (int i = 0; i < Saved.Length; i++)
            if (Saved[i].Storage.Version != SavedVersions[i])
                throw new InvalidOperationException($"Backward of {Kind}: a tensor of shape {Shape.Format(Saved[i].Layout.Shape)} that {Kind} saved for its gradient was modified in place after the forward pass (version {SavedVersions[i]} -> {Saved[i].Storage.Version}); clone it before writing to it");
    }

    /// <summary>Drops the saved tensors once the backward rule has used them.</summary>
    public void ReleaseSaved()
    {
        foreach (var s in Saved) s.Dispose();
        Saved = [];
    }
}

/// <summary>A fused op with its own backward (attention, cross-entropy ...), recorded as <see cref="OpKind.Custom"/>.</summary>
public interface ICustomOp
{
    /// <summary>Name used in error messages.</summary>
    string Name { get; }
    /// <summary>Gradients of the inputs given the output's gradient (null where an input needs none).</summary>
    Tensor?[] Backward(GradNode node, Tensor gradOutput);
}

/// <summary>Whether ops record the graph on this thread.</summary>
public static class GradMode
{
    [ThreadStatic] private static int _disabled;

    /// <summary>True unless a <see cref="NoGrad"/> scope is open on this thread.</summary>
    public static bool IsEnabled => _disabled == 0;

    internal static void Push() => _disabled++;
    internal static void Pop() => _disabled--;
}

/// <summary>While open, no op records a graph (inference, optimizer updates, evaluation).</summary>
public sealed class NoGrad : IDisposable
{
    private bool _closed;
    /// <summary>Opens the scope on this thread.</summary>
    public NoGrad() => GradMode.Push();
    /// <summary>Closes the scope.</summary>
    public void Dispose() { if (!_closed) { _closed = true; GradMode.Pop(); } }
}

/// <summary>
/// Inference mode (torch.inference_mode): records nothing, exactly like <see cref="NoGrad"/>. AttnCore keeps
/// no per-op bookkeeping outside recording (version counters are plain counters), so the two cost the same;
/// the separate name says intent at the call site.
/// </summary>
public sealed class InferenceMode : IDisposable
{
    private readonly NoGrad _inner = new();
    /// <summary>Closes the scope.</summary>
    public void Dispose() => _inner.Dispose();
}
