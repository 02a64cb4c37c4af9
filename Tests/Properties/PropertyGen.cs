using AttnCore.Tests.Reference;
using CsCheck;
using NUnit.Framework;

namespace AttnCore.Tests.Properties;

/// <summary>How a generated operand reaches the op: as is, or through a view that is not contiguous.</summary>
public enum ViewKind
{
    /// <summary>A fresh row-major tensor.</summary>
    Contiguous,
    /// <summary>All dims reversed (a Permute view of a tensor laid out the other way round).</summary>
    Transposed,
    /// <summary>Every other element of the last dim of a bigger tensor (a Slice view with step 2).</summary>
    Strided,
    /// <summary>One dim broadcast from size 1 (an Expand view with stride 0).</summary>
    Expanded,
}

/// <summary>
/// A generated operand: its logical shape, how it is laid out, and its values. For <see cref="ViewKind.Expanded"/>
/// the values fill the shape with dim <see cref="ExpandDim"/> set to 1; otherwise they fill <see cref="Shape"/>
/// in row-major order. The float64 reference sees the logical values; the op sees the view.
/// </summary>
public sealed record Operand(int[] Shape, ViewKind View, int ExpandDim, double[] Values)
{
    /// <summary>Values the strided view skips: a kernel that reads them gives a visibly wrong answer.</summary>
    const double Filler = 777;

    public int[] StoredShape => View == ViewKind.Expanded ? Shape.Select((d, i) => i == ExpandDim ? 1 : d).ToArray() : Shape;

    /// <summary>The logical values, for the float64 reference.</summary>
    public NdArray Reference()
    {
        var stored = new NdArray(StoredShape, Values);
        return View == ViewKind.Expanded ? NdArray.Zip(stored, new NdArray(Shape, new double[NdArray.Numel(Shape)]), (a, _) => a) : stored;
    }

    /// <summary>The tensor that owns the memory (a gradient-check leaf): the view's base.</summary>
    public Tensor Leaf(DType dtype)
    {
        switch (View)
        {
            case ViewKind.Transposed:
            {
                var reversed = new NdArray(Shape, Values).Permute(Reversal);
                return FromValues(reversed.Data, reversed.Shape, dtype);
            }
            case ViewKind.Strided:
            {
                int n = Shape[^1];
                var big = (int[])Shape.Clone();
                big[^1] = 2 * n + 1;
                var data = new double[NdArray.Numel(big)];
                for (long p = 0; p < data.Length; p++)
                {
                    int j = (int)(p % big[^1]);
                    data[p] = j % 2 == 1 ? Values[p / big[^1] * n + j / 2] : Filler;
                }
                return FromValues(data, big, dtype);
            }
            default:
                return FromValues(Values, StoredShape, dtype);
        }
    }

    /// <summary>The view of <paramref name="leaf"/> the op is given (recorded, so gradients flow through it).</summary>
    public Tensor ViewOf(Tensor leaf) => View switch
    {
        ViewKind.Transposed => leaf.Permute(Reversal),
        ViewKind.Strided => leaf.Slice(-1, 1, 1 + 2 * Shape[^1], 2),
        ViewKind.Expanded => leaf.Expand(Shape),
        _ => leaf.Reshape(Shape),
    };

    /// <summary>The operand as the op sees it.</summary>
    public Tensor Build(DType dtype)
    {
        using var leaf = Leaf(dtype);
        return ViewOf(leaf);
    }

    int[] Reversal => Enumerable.Range(0, Shape.Length).Reverse().ToArray();

    static Tensor FromValues(double[] values, int[] shape, DType dtype) => dtype == DType.Float64
        ? Tensor.FromArray(values, shape)
        : Tensor.FromArray(values.Select(v => (float)v).ToArray(), shape);

    public override string ToString() =>
        $"{Shape.Length}-d {AttnCore.Shape.Format(Shape)} {View}{(View == ViewKind.Expanded ? $" (dim {ExpandDim})" : "")} values [{string.Join(", ", Values.Select(v => v.ToString("R")))}]";
}

/// <summary>
/// Generators of shapes, views and values for the property tests, and the one way they run CsCheck: a fixed
/// seed (printed), one thread, a bounded number of iterations. CsCheck shrinks a failure to a minimal case
/// (fewer dims, smaller dims, simpler values) and its message shows that case and the seed that replays it.
/// </summary>
public static class PropertyGen
{
    /// <summary>The fixed seed of every property run (CsCheck's PCG seed format).</summary>
    public const string Seed = "1xn1HwIbwfUS";

    /// <summary>Iterations per property in the suite (a few seconds in all), and in the [Explicit] long run.</summary>
    public const int SuiteIterations = 150, LongIterations = 20_000;

    /// <summary>Dims of size 0 and 1 come up often: that is where stride and broadcasting bugs live.</summary>
    /// Draws 0 with probability 1/7, 1 with 2/7, else 2..5; shrinking moves towards 0.
    public static readonly Gen<int> Dim = Gen.Int[0, 6].Select(r => r == 0 ? 0 : r <= 2 ? 1 : r - 1);

    /// <summary>A shape of rank <paramref name="minRank"/> to <paramref name="maxRank"/>.</summary>
    public static Gen<int[]> Shape(int minRank = 0, int maxRank = 3, Gen<int>? dim = null) =>
        Gen.Int[minRank, maxRank].SelectMany(r => (dim ?? Dim).Array[r]);

    /// <summary>Values representable in float32 (so float32 and float64 runs see the same inputs).</summary>
    public static Gen<double> Values(double lo, double hi, params double[] specials)
    {
        var ordinary = Gen.Double[lo, hi].Select(v => (double)(float)v);
        if (specials.Length == 0) return ordinary;
        var special = Gen.Int[0, specials.Length - 1].Select(i => (double)(float)specials[i]);
        return Gen.Int[0, 5].SelectMany(k => k < 5 ? ordinary : special);   // one value in six is special
    }

    /// <summary>Every IEEE special and extreme a float32 op meets: ±0, ±inf, NaN, huge, tiny and subnormal magnitudes.</summary>
    public static readonly double[] Extremes = [0.0, -0.0, double.PositiveInfinity, double.NegativeInfinity, double.NaN, 1e30, -1e30, 3e38, -3e38, 1e-30, -1e-30, 1e-40, -1e-40, 1, -1];

    /// <summary>An operand of a shape from <paramref name="shape"/>, in any view the shape allows.</summary>
    public static Gen<Operand> Operand(Gen<int[]> shape, Gen<double> values, bool views = true) =>
        shape.SelectMany(s => ViewFor(s, views).SelectMany(v =>
        {
            var (kind, expandDim) = v;
            var stored = kind == ViewKind.Expanded ? s.Select((d, i) => i == expandDim ? 1 : d).ToArray() : s;
            return values.Array[(int)NdArray.Numel(stored)].Select(vals => new Operand(s, kind, expandDim, vals));
        }));

    /// <summary>An operand of exactly <paramref name="shape"/>.</summary>
    public static Gen<Operand> Operand(int[] shape, Gen<double> values, bool views = true) => Operand(Gen.Const(shape), values, views);

    static Gen<(ViewKind, int)> ViewFor(int[] shape, bool views)
    {
        var contiguous = Gen.Const((ViewKind.Contiguous, 0));
        if (!views || shape.Length == 0) return contiguous;
        var options = new List<Gen<(ViewKind, int)>> { contiguous, Gen.Const((ViewKind.Strided, 0)), Gen.Int[0, shape.Length - 1].Select(d => (ViewKind.Expanded, d)) };
        if (shape.Length >= 2) options.Add(Gen.Const((ViewKind.Transposed, 0)));
        return Gen.Int[0, options.Count - 1].SelectMany(i => options[i]);
    }

    /// <summary>Shapes that broadcast to <paramref name="result"/>: leading dims dropped, some dims set to 1.</summary>
    public static Gen<int[]> BroadcastableTo(int[] result) =>
        Gen.Int[0, result.Length].SelectMany(drop => Gen.Int[0, 3].Array[result.Length - drop].Select(r =>
            result[drop..].Select((d, i) => r[i] == 0 ? 1 : d).ToArray()));   // a dim becomes 1 with probability 1/4

    /// <summary>Runs <paramref name="assert"/> on <paramref name="iterations"/> generated cases with the fixed seed; the failure message holds the shrunk case.</summary>
    public static void Run<T>(Gen<T> gen, Action<T> assert, int iterations, Func<T, string>? print = null)
    {
        TestContext.Out.WriteLine($"CsCheck seed {Seed}, {iterations} iterations");
        gen.Sample(assert, writeLine: TestContext.Out.WriteLine, seed: Seed, iter: iterations, threads: 1, print: print ?? (t => t?.ToString() ?? "null"));
    }

    /// <summary>
    /// |got - expected| &lt;= atol + rtol |expected| element-wise; NaN must meet NaN and an infinity the same infinity.
    /// Throws a plain exception (not an NUnit assertion, which would record every case CsCheck tries while shrinking).
    /// </summary>
    public static void Close(Tensor actual, NdArray expected, double rtol, double atol, Func<int, double>? scale = null)
    {
        if (!actual.Shape.SequenceEqual(expected.Shape))
            throw new PropertyFailure($"shape {AttnCore.Shape.Format(actual.Shape)}, expected {AttnCore.Shape.Format(expected.Shape)}");
        var got = actual.ToArray<double>();
        for (int i = 0; i < got.Length; i++)
        {
            double e = expected.Data[i], g = got[i];
            if (double.IsNaN(e) || double.IsNaN(g) || double.IsInfinity(e) || double.IsInfinity(g))
            {
                if (!(e.Equals(g))) throw new PropertyFailure($"element {i} [{string.Join(",", NdArray.Unravel(i, expected.Shape))}]: got {g:R}, expected {e:R}");
                continue;
            }
            double bound = atol * (scale?.Invoke(i) ?? 1) + rtol * Math.Abs(e);
            if (!(Math.Abs(g - e) <= bound))
                throw new PropertyFailure($"element {i} [{string.Join(",", NdArray.Unravel(i, expected.Shape))}]: got {g:R}, expected {e:R}, error {Math.Abs(g - e):g3} > {bound:g3}");
        }
    }

    /// <summary>The reference rounded to the tensor's dtype, as the op's exact result would be stored.</summary>
    public static NdArray Rounded(NdArray r, DType dtype) => dtype == DType.Float32 ? r.Map(v => (double)(float)v) : r;
}

/// <summary>A property's result disagrees with its reference.</summary>
public sealed class PropertyFailure(string message) : Exception(message);
