// Element-wise op codes: the ONE declaration of every unary and binary element-wise function. Each value carries its
// formula (doc comment) and, in its [Elementwise] attribute, what the rest of the system must know of it: what its
// derivative reads (Saves) of the forward pass, whether it is differentiable at all, whether int64 takes it and whether its
// domain is x > 0. Engine's ElementwiseCatalogue reads these attributes once; recording (one OpKind.Unary / Binary
// carrying the code), GradNode's saved tensors, the ILGPU backend's dtype check and the tests' case tables all derive
// from it, so no second table has to agree with this one by name. The CPU backend's dispatch
// (Engine/Backends/CpuBackend.Elementwise.cs), the GPU kernels' switch (Kernels/Gpu/Elementwise.cs: ILGPU kernels
// cannot call interfaces or delegates) and Autograd's derivative switch name the same enum.
//
// Algorithm: none (codes only); each value's formula is in its doc comment, its kernels in Kernels/Cpu/Elementwise.cs
// (operator structs) and Kernels/Gpu/Elementwise.cs (ApplyUnary / ApplyBinary).
namespace AttnCore.Kernels;

/// <summary>
/// Which of an op's own tensors (its first two inputs, its output) its derivative rule reads. Record saves exactly
/// these, then the op-specific tensors its call site passes (indices, masks, statistics), and nothing else:
/// a tensor the rule does not read is not kept alive by the graph. Engine's <c>GradNode.SavesOf</c> is the table
/// for the fused ops; an element-wise op declares it on its own code (<see cref="ElementwiseAttribute.Reads"/>). It lives
/// here, below Engine, so that the op declarations can name it.
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
/// The definition of one <see cref="UnaryOp"/> or <see cref="BinaryOp"/> beside its formula. Every value carries one;
/// Engine's catalogue fails at start-up if one does not.
/// </summary>
[AttributeUsage(AttributeTargets.Field)]
public sealed class ElementwiseAttribute : Attribute
{
    /// <summary>What its derivative rule reads of the forward pass.</summary>
    public Saves Reads { get; init; }

    /// <summary>False for ops that are never differentiated (comparisons, derivative helpers such as GeluGrad):
    /// recording skips them, and Autograd has no rule for them.</summary>
    public bool Differentiable { get; init; } = true;

    /// <summary>Whether an int64 tensor takes it (unary ops; the rest need a floating-point dtype).</summary>
    public bool Int64 { get; init; }

    /// <summary>Whether its real domain is x &gt; 0 (tests draw inputs there).</summary>
    public bool PositiveOnly { get; init; }
}

/// <summary>Element-wise functions of one tensor (with an optional scalar argument).</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    [Elementwise(Reads = Saves.Nothing, Int64 = true)]
    Neg,
    /// <summary>|x|</summary>
    [Elementwise(Reads = Saves.Input0, Int64 = true)]
    Abs,
    /// <summary>e^x</summary>
    [Elementwise(Reads = Saves.Output)]
    Exp,
    /// <summary>ln x</summary>
    [Elementwise(Reads = Saves.Input0, PositiveOnly = true)]
    Log,
    /// <summary>sqrt x</summary>
    [Elementwise(Reads = Saves.Output, PositiveOnly = true)]
    Sqrt,
    /// <summary>1/sqrt x</summary>
    [Elementwise(Reads = Saves.Output, PositiveOnly = true)]
    Rsqrt,
    /// <summary>tanh x</summary>
    [Elementwise(Reads = Saves.Output)]
    Tanh,
    /// <summary>1/(1+e^-x)</summary>
    [Elementwise(Reads = Saves.Output)]
    Sigmoid,
    /// <summary>max(x, 0)</summary>
    [Elementwise(Reads = Saves.Output)]
    Relu,
    /// <summary>x * Phi(x) with the exact erf (PyTorch's default).</summary>
    [Elementwise(Reads = Saves.Input0)]
    Gelu,
    /// <summary>The tanh approximation of GELU (GPT-2).</summary>
    [Elementwise(Reads = Saves.Input0)]
    GeluTanh,
    /// <summary>x * sigmoid(x)</summary>
    [Elementwise(Reads = Saves.Input0)]
    Silu,
    /// <summary>sin x</summary>
    [Elementwise(Reads = Saves.Input0)]
    Sin,
    /// <summary>cos x</summary>
    [Elementwise(Reads = Saves.Input0)]
    Cos,
    /// <summary>x*x</summary>
    [Elementwise(Reads = Saves.Input0, Int64 = true)]
    Square,
    /// <summary>1/x</summary>
    [Elementwise(Reads = Saves.Output, PositiveOnly = true)]
    Reciprocal,
    /// <summary>-1, 0 or 1</summary>
    [Elementwise(Reads = Saves.Nothing, Int64 = true)]
    Sign,
    /// <summary>x + s</summary>
    [Elementwise(Reads = Saves.Nothing, Int64 = true)]
    AddScalar,
    /// <summary>x * s</summary>
    [Elementwise(Reads = Saves.Nothing, Int64 = true)]
    MulScalar,
    /// <summary>x ^ s</summary>
    [Elementwise(Reads = Saves.Input0)]
    PowScalar,
    /// <summary>s - x</summary>
    [Elementwise(Reads = Saves.Nothing, Int64 = true)]
    RSubScalar,
    /// <summary>s / x</summary>
    [Elementwise(Reads = Saves.Input0, PositiveOnly = true)]
    RDivScalar,
    /// <summary>max(x, s)</summary>
    [Elementwise(Reads = Saves.Input0, Int64 = true)]
    ClampMin,
    /// <summary>min(x, s)</summary>
    [Elementwise(Reads = Saves.Input0, Int64 = true)]
    ClampMax,
    /// <summary>d GELU(x) / dx, exact erf form (for the backward pass).</summary>
    [Elementwise(Differentiable = false)]
    GeluGrad,
    /// <summary>d GELU(x) / dx, tanh approximation (for the backward pass).</summary>
    [Elementwise(Differentiable = false)]
    GeluTanhGrad,
    /// <summary>ln(1 + e^x), and x itself above 20 (PyTorch's beta = 1, threshold = 20).</summary>
    [Elementwise(Reads = Saves.Input0)]
    Softplus,
    /// <summary>x * tanh(softplus(x))</summary>
    [Elementwise(Reads = Saves.Input0)]
    Mish,
    /// <summary>ln sigmoid(x) = -softplus(-x), computed without overflow for large |x|.</summary>
    [Elementwise(Reads = Saves.Input0)]
    LogSigmoid,
}

/// <summary>
/// Element-wise functions of two tensors (broadcast to one shape). Comparisons write a bool output (or 1 and 0 in
/// the input dtype when the output has it); the logical ops take and give bool.
/// </summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    [Elementwise(Reads = Saves.Nothing)]
    Add,
    /// <summary>a - b</summary>
    [Elementwise(Reads = Saves.Nothing)]
    Sub,
    /// <summary>a * b</summary>
    [Elementwise(Reads = Saves.Inputs | Saves.ForOtherInput)]
    Mul,
    /// <summary>a / b</summary>
    [Elementwise(Reads = Saves.Input1 | Saves.Output)]
    Div,
    /// <summary>a ^ b</summary>
    [Elementwise(Reads = Saves.Inputs | Saves.Output)]
    Pow,
    /// <summary>max(a, b)</summary>
    [Elementwise(Reads = Saves.Inputs)]
    Maximum,
    /// <summary>min(a, b)</summary>
    [Elementwise(Reads = Saves.Inputs)]
    Minimum,
    /// <summary>a == b</summary>
    [Elementwise(Differentiable = false)]
    Eq,
    /// <summary>a != b</summary>
    [Elementwise(Differentiable = false)]
    Ne,
    /// <summary>a &lt; b</summary>
    [Elementwise(Differentiable = false)]
    Lt,
    /// <summary>a &lt;= b</summary>
    [Elementwise(Differentiable = false)]
    Le,
    /// <summary>a &gt; b</summary>
    [Elementwise(Differentiable = false)]
    Gt,
    /// <summary>a &gt;= b</summary>
    [Elementwise(Differentiable = false)]
    Ge,
    /// <summary>a and b (bool)</summary>
    [Elementwise(Differentiable = false)]
    LogicalAnd,
    /// <summary>a or b (bool)</summary>
    [Elementwise(Differentiable = false)]
    LogicalOr,
    /// <summary>a xor b (bool)</summary>
    [Elementwise(Differentiable = false)]
    LogicalXor,
    /// <summary>a · GELU'(b), exact erf form: Gelu's backward in one pass (a the output's gradient, b the input).</summary>
    [Elementwise(Differentiable = false)]
    GeluBackward,
    /// <summary>a · GELU'(b), tanh approximation.</summary>
    [Elementwise(Differentiable = false)]
    GeluTanhBackward,
}
