// Element-wise op codes: the ONE declaration of every unary and binary element-wise function, shared by the CPU
// backend's dispatch (Engine/Backends/CpuBackend.Elementwise.cs), the GPU kernels' switch on an int code
// (Kernels/Gpu/Elementwise.cs: ILGPU kernels cannot call interfaces or delegates) and Engine's op catalogue
// (Engine/UnaryOpCatalogue.cs: name, OpKind, saved tensors, domain). Declaring it here, below both backends, is what
// lets every switch name the same enum instead of a copy matched by name.
//
// Algorithm: none (codes only); each value's formula is in its doc comment, its kernels in Kernels/Cpu/Elementwise.cs
// (operator structs) and Kernels/Gpu/Elementwise.cs (ApplyUnary / ApplyBinary).
namespace AttnCore.Kernels;

/// <summary>Element-wise functions of one tensor (with an optional scalar argument).</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>ln x</summary>
    Log,
    /// <summary>sqrt x</summary>
    Sqrt,
    /// <summary>1/sqrt x</summary>
    Rsqrt,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>1/(1+e^-x)</summary>
    Sigmoid,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>x * Phi(x) with the exact erf (PyTorch's default).</summary>
    Gelu,
    /// <summary>The tanh approximation of GELU (GPT-2).</summary>
    GeluTanh,
    /// <summary>x * sigmoid(x)</summary>
    Silu,
    /// <summary>sin x</summary>
    Sin,
    /// <summary>cos x</summary>
    Cos,
    /// <summary>x*x</summary>
    Square,
    /// <summary>1/x</summary>
    Reciprocal,
    /// <summary>-1, 0 or 1</summary>
    Sign,
    /// <summary>x + s</summary>
    AddScalar,
    /// <summary>x * s</summary>
    MulScalar,
    /// <summary>x ^ s</summary>
    PowScalar,
    /// <summary>s - x</summary>
    RSubScalar,
    /// <summary>s / x</summary>
    RDivScalar,
    /// <summary>max(x, s)</summary>
    ClampMin,
    /// <summary>min(x, s)</summary>
    ClampMax,
    /// <summary>d GELU(x) / dx, exact erf form (for the backward pass).</summary>
    GeluGrad,
    /// <summary>d GELU(x) / dx, tanh approximation (for the backward pass).</summary>
    GeluTanhGrad,
    /// <summary>ln(1 + e^x), and x itself above 20 (PyTorch's beta = 1, threshold = 20).</summary>
    Softplus,
    /// <summary>x * tanh(softplus(x))</summary>
    Mish,
    /// <summary>ln sigmoid(x) = -softplus(-x), computed without overflow for large |x|.</summary>
    LogSigmoid,
}

/// <summary>
/// Element-wise functions of two tensors (broadcast to one shape). Comparisons write a bool output (or 1 and 0 in
/// the input dtype when the output has it); the logical ops take and give bool.
/// </summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a * b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>a ^ b</summary>
    Pow,
    /// <summary>max(a, b)</summary>
    Maximum,
    /// <summary>min(a, b)</summary>
    Minimum,
    /// <summary>a == b</summary>
    Eq,
    /// <summary>a != b</summary>
    Ne,
    /// <summary>a &lt; b</summary>
    Lt,
    /// <summary>a &lt;= b</summary>
    Le,
    /// <summary>a &gt; b</summary>
    Gt,
    /// <summary>a &gt;= b</summary>
    Ge,
    /// <summary>a and b (bool)</summary>
    LogicalAnd,
    /// <summary>a or b (bool)</summary>
    LogicalOr,
    /// <summary>a xor b (bool)</summary>
    LogicalXor,
}
