using AttnCore.Kernels;

namespace AttnCore;

/// <summary>The ops whose derivative Autograd knows. Engine records them; Autograd owns the rules.</summary>
public enum OpKind
{
#pragma warning disable CS1591 // each value names the Tensor method that records it
#pragma warning restore CS1591
    /// <summary>A unary element-wise op; which one is <see cref="GradNode.Unary"/> (its rule is Autograd's switch over <see cref="Kernels.UnaryOp"/>).</summary>
    Unary,
    /// <summary>A binary element-wise op; which one is <see cref="GradNode.Binary"/>.</summary>
    Binary,
#pragma warning disable CS1591
    Where, Sum, Max, Min, MatMul, Softmax, LogSoftmax, LayerNorm, IndexSelect, Gather, Cat,
    Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d,
    View, Permute, Narrow, Select, Expand, Copy, ToDType, Custom,
    Attention, PackedAttention, CrossEntropy,
    // vision-models: fused attention with a learned additive score bias (BoTNet's relative position logits)
    AttentionBias,
    // recommend: SASRec's loss
    BinaryCrossEntropyWithLogits,
    // bnrelu: fused BatchNorm2d + ReLU (Tensor.BatchNorm2dRelu)
    BatchNorm2dRelu,
    // bnrelu: fused residual add + ReLU (Tensor.AddRelu)
    AddRelu,
    // fused SE recalibration + residual add + ReLU (Tensor.ScaleAddRelu)
    ScaleAddRelu,
    // a Linear layer's product and bias in one GEMM (Tensor.Linear)
    Linear,
#pragma warning restore CS1591
}

/// <summary>
/// The tensors a node saved for its rule, in the order Record saved them: the declared inputs, the output if
/// declared, then the op-specific extras. Reading one marks it read, so a test can check that every op's rule
/// reads everything its op saves (nothing unneeded stays alive) and nothing else (the accessors throw).
/// </summary>
public sealed class SavedTensorList : IReadOnlyList<Tensor>
{
    private Tensor[] _items;
    private readonly bool[] _read;
    private readonly string _owner;

    internal SavedTensorList(Tensor[] items, string owner) { _items = items; _read = new bool[items.Length]; _owner = owner; }

    /// <summary>The saved tensor at <paramref name="index"/>.</summary>
    public Tensor this[int index]
    {
        get
        {
            if (_items.Length == 0 && _read.Length > 0)
                throw new InvalidOperationException($"Backward of {_owner}: the tensors {_owner} saved for its gradient were freed by an earlier Backward; pass retainGraph: true to that Backward to walk the graph again");
            if ((uint)index >= (uint)_items.Length)
                throw new ArgumentOutOfRangeException(nameof(index), $"Backward of {_owner}: saved tensor {index} requested, but {_owner} saved {_items.Length}");
            _read[index] = true;
            return _items[index];
        }
    }

    /// <summary>How many tensors are held now (0 once released).</summary>
    public int Length => _items.Length;
    /// <inheritdoc/>
    public int Count => _items.Length;
    /// <summary>How many tensors the op saved when it was recorded (kept after release).</summary>
    public int SavedCount => _read.Length;
    /// <summary>True once <see cref="GradNode.ReleaseSaved"/> dropped them.</summary>
    public bool IsReleased => _items.Length == 0 && _read.Length > 0;
    /// <summary>Whether the rule has read the tensor saved at <paramref name="index"/> (diagnostics and tests).</summary>
    public bool WasRead(int index) => _read[index];

    internal Tensor Peek(int index) => _items[index];

    internal void Release()
    {
        foreach (var s in _items) s.Dispose();
        _items = [];
    }

    /// <inheritdoc/>
    public IEnumerator<Tensor> GetEnumerator() { for (int i = 0; i < _items.Length; i++) yield return this[i]; }
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>
/// How a tensor was made, kept only when an input requires gradients and recording is on: the op,
/// its inputs, and what its backward rule needs (saved tensors, a scalar, integer arguments).
/// This is the whole hook between Engine and Autograd: Engine fills it, Autograd reads it.
/// </summary>
public sealed class GradNode
{
    internal GradNode(OpKind kind, Saves saves, Tensor[] inputs, Tensor[] saved, double scalar, int[] ints, ICustomOp? custom, int elementwiseCode = -1)
    {
        Kind = kind; Inputs = inputs; Scalar = scalar; Ints = ints; Custom = custom;
        if (kind == OpKind.Unary) Unary = (UnaryOp)elementwiseCode;
        if (kind == OpKind.Binary) Binary = (BinaryOp)elementwiseCode;
        Saves = saves;
        Saved = new SavedTensorList(saved, Name);
        SavedVersions = saved.Select(s => s.Storage.Version).ToArray();
    }

    /// <summary>
    /// What the rule of <paramref name="kind"/> reads of the op's own inputs and output: the one declaration both
    /// Record (what it saves) and the rule (<see cref="SavedInput"/>, <see cref="SavedOutput"/>) follow. An op whose
    /// rule needs other tensors (an index, a condition, per-row statistics) passes them to Record as extras.
    /// </summary>
    public static Saves SavesOf(OpKind kind) => kind switch
    {
        OpKind.Unary or OpKind.Binary => throw new ArgumentException($"SavesOf: an element-wise op declares what it saves on its own code (ElementwiseCatalogue.Of(op).Saves), not on OpKind.{kind}", nameof(kind)),
        // d/dx from the result: softmax, log-softmax
        OpKind.Softmax or OpKind.LogSoftmax => Saves.Output,
        // batch norm's x̂ from x and the saved batch statistics (extras: mean, 1/std, weight)
        OpKind.BatchNorm2d => Saves.Input0,
        // fused batch norm + ReLU: x for x̂, and its output for the ReLU's mask y > 0 (same extras as BatchNorm2d)
        OpKind.BatchNorm2dRelu => Saves.Input0 | Saves.Output,
        // fused add + ReLU: the output alone (the mask y > 0 serves both inputs)
        OpKind.AddRelu => Saves.Output,
        // fused scale + add + ReLU: the output for the mask, x for the scale's gradient, the scale for x's
        OpKind.ScaleAddRelu => Saves.Input0 | Saves.Input1 | Saves.Output,
        // each input's gradient needs the other: dA = g B^T, dB = A^T g
        OpKind.MatMul => Saves.Inputs | Saves.ForOtherInput,
        // y = x Wᵀ + b: dx = g W, dW = gᵀ x (the bias's gradient, Σ g, needs neither)
        OpKind.Linear => Saves.Inputs | Saves.ForOtherInput,
        // Sum, Cat, views, Copy, ToDType need shapes and scalars only; Where, Max, Min, IndexSelect,
        // Gather, LayerNorm and Custom ops pass what they need as extras.
        _ => Saves.Nothing,
    };

    /// <summary>The op that produced the tensor.</summary>
    public OpKind Kind { get; }
    /// <summary>Which unary element-wise op, for <see cref="OpKind.Unary"/> nodes (null otherwise).</summary>
    public UnaryOp? Unary { get; }
    /// <summary>Which binary element-wise op, for <see cref="OpKind.Binary"/> nodes (null otherwise).</summary>
    public BinaryOp? Binary { get; }
    /// <summary>The op's name for messages: the custom op's, the element-wise op's (Exp, Mul ...) or the kind's.</summary>
    public string Name => Custom?.Name ?? Unary?.ToString() ?? Binary?.ToString() ?? Kind.ToString();
    /// <summary>The op's inputs, in order.</summary>
    public Tensor[] Inputs { get; }
    /// <summary>What this node saved first in <see cref="Saved"/>: <see cref="SavesOf"/>, less an input no other input's gradient needed.</summary>
    public Saves Saves { get; }
    /// <summary>Tensors the backward rule needs (views holding their own storage reference): declared inputs, output, extras.</summary>
    public SavedTensorList Saved { get; }
    /// <summary>The storage version of each saved tensor when it was saved (detects in-place writes).</summary>
    public long[] SavedVersions { get; }
    /// <summary>A scalar argument (exponent, scalar operand, epsilon ...).</summary>
    public double Scalar { get; }
    /// <summary>Integer arguments (axes, sizes, offsets ...), as the recording op documents.</summary>
    public int[] Ints { get; }
    /// <summary>The custom op for <see cref="OpKind.Custom"/> nodes.</summary>
    public ICustomOp? Custom { get; }

    /// <summary>The saved input <paramref name="k"/> (0 or 1); throws unless <see cref="SavesOf"/> declares it for this op.</summary>
    public Tensor SavedInput(int k)
    {
        var flag = k switch { 0 => Saves.Input0, 1 => Saves.Input1, _ => throw new ArgumentOutOfRangeException(nameof(k), $"Backward of {Name}: SavedInput({k}): only inputs 0 and 1 can be declared saved; pass others as extras") };
        return Saved[SlotOf(flag)];
    }

    /// <summary>The saved output; throws unless <see cref="SavesOf"/> declares it for this op.</summary>
    public Tensor SavedOutput => Saved[SlotOf(Saves.Output)];

    /// <summary>The op-specific tensor <paramref name="k"/> its call site passed to Record (after the declared ones).</summary>
    public Tensor SavedExtra(int k) => Saved[DeclaredCount + k];

    private int DeclaredCount => System.Numerics.BitOperations.PopCount((uint)(Saves & (Saves.Inputs | Saves.Output)));

    private int SlotOf(Saves flag)
    {
        if ((Saves & flag) == 0)
            throw new InvalidOperationException($"Backward of {Name}: the rule reads {flag}, but this {Name} saved only {Saves}; declare it in GradNode.SavesOf (element-wise ops: their [Elementwise(Reads = ...)] attribute) (with ForOtherInput, read an input only for the other input's gradient)");
        return System.Numerics.BitOperations.PopCount((uint)(Saves & (flag - 1)));
    }

    /// <summary>Throws if a saved tensor was modified in place after it was saved.</summary>
    public void CheckSavedVersions()
    {
        for (int i = 0; i < Saved.Length; i++)
        {
            var s = Saved.Peek(i);
            if (s.Storage.Version != SavedVersions[i])
                throw new InvalidOperationException($"Backward of {Name}: a tensor of shape {Shape.Format(s.Layout.Shape)} that {Name} saved for its gradient was modified in place after the forward pass (version {SavedVersions[i]} -> {s.Storage.Version}); clone it before writing to it");
        }
    }

    /// <summary>Drops the saved tensors once the backward rule has used them.</summary>
    public void ReleaseSaved() => Saved.Release();
}

/// <summary>
/// A user-defined op that brings its own backward (candle's CustomOp, torch.autograd.Function), recorded as
/// <see cref="OpKind.Custom"/> with <see cref="Tensor.RecordCustom"/>: the extension point for code outside AttnCore.
/// AttnCore's own ops all record an OpKind whose rule lives in Autograd's rule table.
/// </summary>
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
