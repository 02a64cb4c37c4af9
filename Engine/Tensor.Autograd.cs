using AttnCore.Kernels;
using AttnCore.Backends;

namespace AttnCore;

// The Engine half of autograd: each op records a GradNode on its output when an input requires
// gradients and recording is on. The derivative rules and Backward() live in AttnCore.Autograd.
public sealed partial class Tensor
{
    private bool _requiresGrad;

    /// <summary>
    /// True for a leaf the user asked gradients for, and for every tensor computed from one while
    /// recording. Only floating-point leaves can be set.
    /// </summary>
    public bool RequiresGrad
    {
        get => _requiresGrad || GradFn is not null;
        set
        {
            if (GradFn is not null)
            {
                if (!value) throw new InvalidOperationException("RequiresGrad: cannot be turned off on a computed tensor; use Detach()");
                return;
            }
            if (value && !DType.IsFloatingPoint()) throw new ArgumentException($"RequiresGrad: only floating-point tensors can require gradients, got {DType.Name()} {Describe()}");
            _requiresGrad = value;
        }
    }

    /// <summary>Sets <see cref="RequiresGrad"/> and returns this tensor (fluent, like torch's requires_grad_()).</summary>
    public Tensor RequiresGrad_(bool value = true) { RequiresGrad = value; return this; }

    /// <summary>The accumulated gradient of a leaf after Backward (null before).</summary>
    public Tensor? Grad { get; set; }

    /// <summary>How this tensor was computed (null for leaves and for tensors made without recording).</summary>
    public GradNode? GradFn { get; private set; }

    /// <summary>True when the tensor was not computed by a recorded op.</summary>
    public bool IsLeaf => GradFn is null;

    /// <summary>A view of the same storage that is cut from the graph.</summary>
    public Tensor Detach() => ViewOf(Layout);

    /// <summary>
    /// Attaches a GradNode to this freshly computed tensor if any input requires gradients. It saves what
    /// <see cref="GradNode.SavesOf"/> declares for <paramref name="kind"/> (inputs, this output), then the
    /// op-specific <paramref name="saved"/> tensors (indices, masks, statistics), and nothing else.
    /// </summary>
    internal Tensor Record(OpKind kind, Tensor[] inputs, Tensor[]? saved = null, double scalar = 0, int[]? ints = null, ICustomOp? custom = null)
        => Record(kind, GradNode.SavesOf(kind), -1, inputs, saved, scalar, ints, custom);

    /// <summary>Records a unary element-wise op (nothing for one the catalogue marks not differentiable).</summary>
    internal Tensor Record(UnaryOp op, Tensor input, double scalar)
    {
        var info = ElementwiseCatalogue.Of(op);
        return info.Differentiable ? Record(OpKind.Unary, info.Saves, info.Code, [input], null, scalar, null, null) : this;
    }

    /// <summary>Records a binary element-wise op (nothing for comparisons and logical ops).</summary>
    internal Tensor Record(BinaryOp op, Tensor a, Tensor b)
    {
        var info = ElementwiseCatalogue.Of(op);
        return info.Differentiable ? Record(OpKind.Binary, info.Saves, info.Code, [a, b], null, 0, null, null) : this;
    }

    private Tensor Record(OpKind kind, Saves saves, int elementwiseCode, Tensor[] inputs, Tensor[]? saved, double scalar, int[]? ints, ICustomOp? custom)
    {
        if (!GradMode.IsEnabled) return this;
        bool any = false;
        foreach (var t in inputs) any |= t.RequiresGrad;
        if (!any) return this;
        if ((saves & Saves.ForOtherInput) != 0)
        {
            if (!inputs[1].RequiresGrad) saves &= ~Saves.Input0;
            if (!inputs[0].RequiresGrad) saves &= ~Saves.Input1;
        }
        var keep = new List<Tensor>(4);
        if ((saves & Saves.Input0) != 0) keep.Add(inputs[0].SavedView());
        if ((saves & Saves.Input1) != 0) keep.Add(inputs[1].SavedView());
        if ((saves & Saves.Output) != 0) keep.Add(SavedView());
        if (saved is not null) foreach (var s in saved) keep.Add(s.SavedView());
        GradFn = new GradNode(kind, saves, inputs, [.. keep], scalar, ints ?? [], custom, elementwiseCode);
        return this;
    }

    /// <summary>Records a custom fused op (its class supplies the backward) on this output.</summary>
    public Tensor RecordCustom(ICustomOp op, Tensor[] inputs, Tensor[] saved, int[]? ints = null, double scalar = 0)
        => Record(OpKind.Custom, inputs, saved, scalar, ints, op);

    // A saved tensor holds its own storage reference and is not owned by any TensorScope: the graph,
    // not the scope, decides when it dies (GradNode.ReleaseSaved after its rule ran).
    private Tensor SavedView()
    {
        var s = Storage;
        s.AddRef();
        return new Tensor(s, Layout, register: false);
    }
}
