using System.Runtime.CompilerServices;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// MaskKernels' comparisons and mask-to-number conversion (Kernels/Cpu/Elementwise.cs) against plain C# operators on every
/// length from 0 to 41, which covers the scalar tail before, at and after one and two float32 (16-lane) and float64
/// (8-lane) vectors, with ties, NaN on either side and signed zeros in the data.
/// </summary>
[TestFixture, Category("Kernels")]
public class MaskKernelTests
{
    static double[] Values(int n, int seed)
    {
        var rnd = new Random(seed);
        var v = new double[n];
        // A small pool of values so that ties are common; NaN and both zeros among them.
        double[] pool = [-2, -1, -0.0, 0.0, 0.5, 1, 3, double.NaN];
        for (int i = 0; i < n; i++) v[i] = pool[rnd.Next(pool.Length)];
        return v;
    }

    static void Check<T>(Func<double, double, bool> rel, Action<ReadOnlySpan<T>, ReadOnlySpan<T>, Span<bool>> run,
        Action<ReadOnlySpan<T>, T, Span<bool>> runScalar, Func<double, T> of, string name)
    {
        for (int n = 0; n <= 41; n++)
        {
            double[] a = Values(n, n), b = Values(n, 100 + n);
            var ta = a.Select(of).ToArray(); var tb = b.Select(of).ToArray();
            var d = new bool[n];
            run(ta, tb, d);
            for (int i = 0; i < n; i++)
                Assert.That(d[i], Is.EqualTo(rel(a[i], b[i])), $"{name} {typeof(T).Name} length {n} element {i}: {a[i]} vs {b[i]}");
            double s = n % 3 == 0 ? double.NaN : n % 3 == 1 ? 0.5 : -0.0;
            runScalar(ta, of(s), d);
            for (int i = 0; i < n; i++)
                Assert.That(d[i], Is.EqualTo(rel(a[i], s)), $"{name} {typeof(T).Name} scalar, length {n} element {i}: {a[i]} vs {s}");
        }
    }

    static void CheckAll<T>(Func<double, T> of) where T : System.Numerics.INumber<T>
    {
        Check<T>((x, y) => x == y, (a, b, d) => MaskKernels.Compare<T, EqRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, EqRel<T>>(a, b, d), of, "Eq");
        Check<T>((x, y) => x != y, (a, b, d) => MaskKernels.Compare<T, NeRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, NeRel<T>>(a, b, d), of, "Ne");
        Check<T>((x, y) => x < y, (a, b, d) => MaskKernels.Compare<T, LtRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, LtRel<T>>(a, b, d), of, "Lt");
        Check<T>((x, y) => x <= y, (a, b, d) => MaskKernels.Compare<T, LeRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, LeRel<T>>(a, b, d), of, "Le");
        Check<T>((x, y) => x > y, (a, b, d) => MaskKernels.Compare<T, GtRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, GtRel<T>>(a, b, d), of, "Gt");
        Check<T>((x, y) => x >= y, (a, b, d) => MaskKernels.Compare<T, GeRel<T>>(a, b, d), (a, b, d) => MaskKernels.CompareScalarRight<T, GeRel<T>>(a, b, d), of, "Ge");
    }

    [Test]
    public void Comparisons_match_the_scalar_relations_on_every_length_around_the_vector_width()
    {
        CheckAll(x => (float)x);
        CheckAll(x => x);
    }

    static void CheckToNumbers<T>(Func<T, double> back) where T : System.Numerics.INumber<T>
    {
        var rnd = new Random(3);
        for (int n = 0; n <= 41; n++)
        {
            // Bytes 0, 1 and 2: a bool stored as 2 (through unsafe code or interop) still counts as true.
            var raw = new byte[n];
            for (int i = 0; i < n; i++) raw[i] = (byte)rnd.Next(3);
            var m = new bool[n];
            for (int i = 0; i < n; i++) m[i] = Unsafe.As<byte, bool>(ref raw[i]);
            var d = new T[n + 1];
            d[n] = T.CreateTruncating(7);   // past the span: must stay
            MaskKernels.ToNumbers<T>(m, d.AsSpan(0, n));
            for (int i = 0; i < n; i++) Assert.That(back(d[i]), Is.EqualTo(raw[i] != 0 ? 1.0 : 0.0), $"{typeof(T).Name} length {n} element {i} (byte {raw[i]})");
            Assert.That(back(d[n]), Is.EqualTo(7.0), $"{typeof(T).Name} length {n}: wrote past the end");
        }
    }

    [Test]
    public void Masks_convert_to_ones_and_zeros_on_every_length_around_the_vector_width()
    {
        CheckToNumbers<float>(x => x);
        CheckToNumbers<double>(x => x);
        CheckToNumbers<long>(x => x);
    }
}
