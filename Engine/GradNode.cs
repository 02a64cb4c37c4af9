namespace AttnCore;

/// <summary>The ops whose derivative Autograd knows. Engine records them; Autograd owns the rules.</summary>
public enum OpKind
{
#pragma warning disable CS1591 // each value names the Tensor method that records it
    Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu, Sin, Cos, Square, Reciprocal, Sign, Softplus, Mish, LogSigmoid,
    AddScalar, MulScalar, PowScalar, RSubScalar, RDivScalar, ClampMin, ClampMax,
    Add, Sub, Mul, Div, Pow, Maximum, Minimum,
    Where, Sum, Max, Min, MatMul, Softmax, LogSoftmax, LayerNorm, IndexSelect, Gather, Cat,
    Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d,
    View, Permute, Narrow, Select, Expand, Copy, ToDType, Custom,
    Attention, PackedAttention, CrossEntropy,
    // recommend: SASRec's loss
    BinaryCrossEntropyWithLogits,
#pragma warning restore CS1591
}

/// <summary>
/// Which of an op's own tensors (its first two inputs, its output) its derivative rule reads. Record saves exactly
/// these, then the op-specific tensors its call site passes (indices, masks, statistics), and nothing else:
/// a tensor the rule does not read is not kept alive by the graph. <see cref="GradNode.SavesOf"/> is the table.
/// </summary>
[Flags]
public enum Saves
{
    /// <summary>The rule needs only shapes, the scalar and the integer arguments (Add, Sum, views ...).</summary>
    Nothing = 0,
    /// <summary>The first input.</summary>
    Input0 = 1,
    /// <summary>The second input.</summary>
    Input1 = 2,
    /// <summary>Both inputs.</summary>
    Inputs = Input0 | Input1,
    /// <summary>The op's output (Exp, Tanh, Softmax ... differentiate through their result).</summary>
    Output = 4,
    /// <summary>
    /// With <see cref="Inputs"/>: each input is saved only when the other one requires gradients, because it is needed
    /// only for the other's gradient (c = a * b: dc/da = b). Dropout's x * mask then keeps the mask, not x.
    /// </summary>
    ForOtherInput = 8,
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
    internal GradNode(OpKind kind, Saves saves, Tensor[] inputs, Tensor[] saved, double scalar, int[] ints, ICustomOp? custom)
    {
        Kind = kind; Inputs = inputs; Scalar = scalar; Ints = ints; Custom = custom;
        Saves = saves;
        Saved = new SavedTensorList(saved, custom?.Name ?? kind.ToString());
        SavedVersions = saved.Select(s => s.Storage.Version).ToArray();
    }

    /// <summary>
    /// What the rule of <paramref name="kind"/> reads of the op's own inputs and output: the one declaration both
    /// Record (what it saves) and the rule (<see cref="SavedInput"/>, <see cref="SavedOutput"/>) follow. An op whose
    /// rule needs other tensors (an index, a condition, per-row statistics) passes them to Record as extras.
    /// </summary>
    public static Saves SavesOf(OpKind kind) => UnaryOpCatalogue.SavesOfKind(kind) ?? kind switch
    {
        // the unary element-wise ops (Exp, Log, Gelu ...) are declared in UnaryOpCatalogue
        // d/dx from the result: softmax, log-softmax
        OpKind.Softmax or OpKind.LogSoftmax => Saves.Output,
        // batch norm's x̂ from x and the saved batch statistics (extras: mean, 1/std, weight)
        OpKind.BatchNorm2d => Saves.Input0,
        // each input's gradient needs the other: dA = g B^T, dB = A^T g
        OpKind.Mul or OpKind.MatMul => Saves.Inputs | Saves.ForOtherInput,
        // both, to compare them
        OpKind.Maximum or OpKind.Minimum => Saves.Inputs,
        // c = a / b: dc/da = 1/b, dc/db = -c/b
        OpKind.Div => Saves.Input1 | Saves.Output,
        // c = a^b: dc/da = b a^(b-1), dc/db = c ln a
        OpKind.Pow => Saves.Inputs | Saves.Output,
        // Add, Sub, Sum, Cat, views, Copy, ToDType need shapes and scalars only; Where, Max, Min, IndexSelect,
        // Gather, LayerNorm and Custom ops pass what they need as extras.
        _ => Saves.Nothing,
    };

    /// <summary>The op that produced the tensor.</summary>
    public OpKind Kind { get; }
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
        var flag = k switch { 0 => Saves.Input0, 1 => Saves.Input1, _ => throw new ArgumentOutOfRangeException(nameof(k), $"Backward of {Kind}: SavedInput({k}): only inputs 0 and 1 can be declared saved; pass others as extras") };
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
            throw new InvalidOperationException($"Backward of {Kind}: the rule reads {flag}, but this {Kind} saved only {Saves}; declare it in GradNode.SavesOf (with ForOtherInput, read an input only for the other input's gradient)");
        return System.Numerics.BitOperations.PopCount((uint)(Saves & (flag - 1)));
    }

    /// <summary>Throws if a saved tensor was modified in place after it was saved.</summary>
    public void CheckSavedVersions()
    {
        for (int i = 0; i < Saved.Length; i++)
        {
            var s = Saved.Peek(i);
            if (s.Storage.Version != SavedVersions[i])
                throw new InvalidOperationException($"Backward of {Kind}: a tensor of shape {Shape.Format(s.Layout.Shape)} that {Kind} saved for its gradient was modified in place after the forward pass (version {SavedVersions[i]} -> {s.Storage.Version}); clone it before writing to it");
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
