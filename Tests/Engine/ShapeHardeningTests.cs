using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Regression tests of the Hardening issue for shapes and empty reductions: element counts are checked in one place
/// (negative dims and overflow raise ArgumentException naming the op and the shape, as PyTorch raises
/// "numel: integer multiplication overflow"), and reductions over empty tensors behave as PyTorch's.
/// </summary>
[TestFixture, Category("Engine")]
public class ShapeHardeningTests
{
    static readonly int[] Huge = [65536, 65536, 65536, 65536]; // 2^64 elements: wrapped to 0 before the fix

    static void ThrowsNaming<TException>(Action call, params string[] parts) where TException : Exception
    {
        var ex = Assert.Throws<TException>(() => call())!;
        foreach (var p in parts) Assert.That(ex.Message, Does.Contain(p));
    }

    [Test]
    public void Creating_a_tensor_whose_element_count_overflows_raises_naming_op_and_shape()
    {
        ThrowsNaming<ArgumentException>(() => Tensor.Zeros(Huge), "Zeros", "[65536,65536,65536,65536]", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.Ones(Huge), "Ones", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.Full(Huge, 2), "Full", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.Randn(Huge, 1UL), "Randn", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.RandInt(0, 5, Huge, 1UL), "RandInt", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.DropoutMask(Huge, 0.5), "DropoutMask", "overflow");
    }

    [Test]
    public void Views_to_a_shape_whose_element_count_overflows_raise()
    {
        using var one = Tensor.Ones([1]);
        ThrowsNaming<ArgumentException>(() => one.Expand(Huge), "Expand", "overflow");
        ThrowsNaming<ArgumentException>(() => one.BroadcastTo(Huge), "BroadcastTo", "overflow");
        using var empty = Tensor.Zeros([0]);
        ThrowsNaming<ArgumentException>(() => empty.Reshape(Huge), "Reshape", "overflow");
        ThrowsNaming<ArgumentException>(() => empty.View(Huge), "View", "overflow");
        using var a = one.Expand(65536, 65536, 1, 1);
        using var b = one.Expand(1, 1, 65536, 65536);
        Assert.That(a.Numel, Is.EqualTo(65536L * 65536));
        ThrowsNaming<ArgumentException>(() => a.Add(b), "Add", "overflow");
        ThrowsNaming<ArgumentException>(() => Tensor.Where(a, a, b), "Where", "overflow");
    }

    [Test]
    public void A_zero_dim_makes_the_count_zero_whatever_the_others_are_as_in_PyTorch()
    {
        using var z = Tensor.Zeros([0, 65536, 65536, 65536, 65536]);
        Assert.That(z.Numel, Is.EqualTo(0));
        Assert.That(z.Strides, Is.EqualTo(new[] { long.MaxValue, 1L << 48, 1L << 32, 1L << 16, 1 }), "strides no element uses saturate instead of wrapping");
        using var r = Tensor.Zeros([0]).Reshape(0, 65536, 65536, 65536, 65536);
        Assert.That(r.Shape, Is.EqualTo(new[] { 0, 65536, 65536, 65536, 65536 }));
    }

    [Test]
    public void Randn_of_a_negative_or_too_large_shape_raises_ArgumentException_not_OverflowException()
    {
        ThrowsNaming<ArgumentException>(() => Tensor.Randn([-3, 16], 1UL), "Randn", "negative dimension -3", "[-3,16]");
        ThrowsNaming<ArgumentException>(() => Tensor.Rand([4, -1], 1UL), "Rand", "negative dimension -1");
        ThrowsNaming<ArgumentException>(() => Tensor.Zeros([2, -2]), "Zeros", "negative dimension -2");
        // 2^32 elements count fine but do not fit one CPU array: said as such, before any memory is touched.
        ThrowsNaming<ArgumentException>(() => Tensor.Randn([65536, 65536], 1UL), "Randn", "4294967296 elements", "holds at most");
        ThrowsNaming<ArgumentException>(() => Tensor.Zeros([65536, 65536]), "Zeros", "holds at most");
    }

    [Test]
    public void Flatten_into_a_dimension_larger_than_int_raises()
    {
        using var one = Tensor.Ones([1, 1]);
        using var big = one.Expand(65536, 65536);
        ThrowsNaming<ArgumentException>(() => big.Flatten(), "Flatten", "exceeds");
    }

    [Test]
    public void Shape_Numel_is_checked_and_counts_as_the_product()
    {
        Assert.That(Shape.Numel([]), Is.EqualTo(1));
        Assert.That(Shape.Numel([3, 0, 5]), Is.EqualTo(0));
        Assert.That(Shape.Numel([int.MaxValue, int.MaxValue]), Is.EqualTo((long)int.MaxValue * int.MaxValue));
        ThrowsNaming<ArgumentException>(() => Shape.Numel("Op", [int.MaxValue, int.MaxValue, 4]), "Op:", "overflow");
        ThrowsNaming<ArgumentException>(() => Shape.Numel("Op", [2, -1]), "Op:", "negative");
    }

    // ---- Defect 5: reductions of empty tensors, as PyTorch 1.13 ----

    [Test]
    public void Extremum_over_a_nonempty_dim_of_an_empty_tensor_gives_an_empty_result()
    {
        using var x = Tensor.Zeros([0, 3]);
        foreach (var r in new Func<Tensor>[] { () => x.Max(1), () => x.Min(1), () => x.ArgMax(1), () => x.ArgMin(1), () => x.Sum(1), () => x.Mean(1) })
            using (var t = r()) Assert.That(t.Shape, Is.EqualTo(new[] { 0 }));
        using var kd = x.Max(1, keepDim: true);
        Assert.That(kd.Shape, Is.EqualTo(new[] { 0, 1 }));
        using var am = x.ArgMax(1);
        Assert.That(am.DType, Is.EqualTo(DType.Int64));
    }

    [Test]
    public void Extremum_over_an_empty_reduced_dim_raises_naming_the_dim_and_Sum_gives_zero()
    {
        using var x = Tensor.Zeros([0, 3]);
        ThrowsNaming<ArgumentException>(() => x.Max(0), "Max", "dim 0", "[0,3]");
        ThrowsNaming<ArgumentException>(() => x.Min([0]), "Min", "dim 0");
        ThrowsNaming<ArgumentException>(() => x.ArgMax(0), "ArgMax", "dim 0");
        ThrowsNaming<ArgumentException>(() => x.ArgMin(0), "ArgMin", "dim 0");
        ThrowsNaming<ArgumentException>(() => x.Max(), "Max", "dim 0");
        using var s = x.Sum(0);
        Assert.That(s.ToArray<float>(), Is.EqualTo(new float[] { 0, 0, 0 }));
        using var m = x.Mean(0);
        Assert.That(m.ToArray<float>().All(float.IsNaN), Is.True);
        using var y = Tensor.Zeros([3, 0]);
        using var s1 = y.Sum(1);
        Assert.That(s1.ToArray<float>(), Is.EqualTo(new float[] { 0, 0, 0 }));
        ThrowsNaming<ArgumentException>(() => y.Max(1), "Max", "dim 1", "[3,0]");
    }

    [Test]
    public void Out_of_range_indices_raise_ArgumentOutOfRangeException_never_IndexOutOfRangeException()
    {
        using var x = Tensor.Zeros([2, 3]);
        ThrowsNaming<ArgumentOutOfRangeException>(() => x.Select(1, 3), "Select", "index 3", "dim 1", "[2,3]");
        ThrowsNaming<ArgumentOutOfRangeException>(() => x.Sum(2), "Sum", "dimension 2");
        using var w = Tensor.Zeros([4, 2]);
        using var bad = Tensor.FromArray(new long[] { 1, 4 });
        ThrowsNaming<ArgumentOutOfRangeException>(() => Tensor.Embedding(bad, w), "index 4");
    }

    [Test]
    public void No_source_file_of_Engine_or_Kernels_throws_IndexOutOfRangeException()
    {
        var root = TestContext.CurrentContext.TestDirectory;
        while (!File.Exists(Path.Combine(root, "AttnCore.sln"))) root = Path.GetDirectoryName(root)!;
        var offenders = new[] { "Engine", "Kernels" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && File.ReadAllText(f).Contains("new IndexOutOfRangeException"))
            .ToArray();
        Assert.That(offenders, Is.Empty, "the exception convention (docs/architecture.md, Errors) reserves IndexOutOfRangeException for the runtime");
    }
}
