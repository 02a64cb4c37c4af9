namespace AttnCore;

/// <summary>
/// Checks analytic gradients against central finite differences in float64, as torch.autograd.gradcheck.
/// The output is projected on a fixed random tensor r (loss = sum(f(x) * r)) so one Backward checks every
/// output element's contribution; each input element is then perturbed by ±eps.
/// Tolerances: with eps = 1e-6 in float64 the central difference has truncation error O(eps²·f''')
/// and rounding error O(1e-16/eps) ≈ 1e-10, so |analytic - numeric| &lt;= atol + rtol·|numeric| with
/// atol = 1e-6, rtol = 1e-5 separates a wrong rule (errors of order 1) from round-off by five orders.
/// </summary>
public static class GradCheck
{
    /// <summary>Default step.</summary>
    public const double Eps = 1e-6;
    /// <summary>Default absolute tolerance.</summary>
    public const double Atol = 1e-6;
    /// <summary>Default relative tolerance.</summary>
    public const double Rtol = 1e-5;

    /// <summary>
    /// Throws an <see cref="InvalidOperationException"/> naming the input, element and both values when a
    /// gradient of <paramref name="f"/> at <paramref name="inputs"/> (float64 tensors; those with
    /// RequiresGrad are checked) disagrees with central differences.
    /// </summary>
    public static void Assert(Func<Tensor[], Tensor> f, Tensor[] inputs, ulong seed = 1, double eps = Eps, double atol = Atol, double rtol = Rtol, string name = "f")
    {
        foreach (var x in inputs)
            if (x.RequiresGrad && x.DType != DType.Float64)
                throw new ArgumentException($"GradCheck: inputs must be float64 for a meaningful check, got {x.DType.Name()} {Shape.Format(x.Shape)}");
        foreach (var x in inputs) { x.Grad?.Dispose(); x.Grad = null; }

        Tensor r;
        using (var probe = Evaluate(f, inputs)) r = Tensor.Randn(probe.Shape, seed, DType.Float64, probe.Device);
        using (r)
        {
            using (var scope = new TensorScope())
            {
                var y = f(inputs);
                if (!y.RequiresGrad) throw new InvalidOperationException($"GradCheck {name}: the output does not require gradients");
                var loss = (y * r).Sum();
                loss.Backward();
            }
            for (int i = 0; i < inputs.Length; i++)
            {
                var x = inputs[i];
                if (!x.RequiresGrad) continue;
                double[] analytic = x.Grad?.ToArray<double>() ?? new double[x.Numel];
                double[] values = x.ToArray<double>();
                for (int j = 0; j < values.Length; j++)
                {
                    double plus = Loss(f, inputs, i, values, j, eps, r);
                    double minus = Loss(f, inputs, i, values, j, -eps, r);
                    double numeric = (plus - minus) / (2 * eps);
                    if (!(Math.Abs(analytic[j] - numeric) <= atol + rtol * Math.Abs(numeric)))
                        throw new InvalidOperationException($"GradCheck {name}: input {i} {Shape.Format(x.Shape)} element {j}: analytic {analytic[j]:G10} vs numeric {numeric:G10} (atol {atol}, rtol {rtol})");
                }
            }
        }
    }

    private static Tensor Evaluate(Func<Tensor[], Tensor> f, Tensor[] inputs)
    {
        using var ng = new NoGrad();
        return f(inputs);
    }

    private static double Loss(Func<Tensor[], Tensor> f, Tensor[] inputs, int which, double[] values, int j, double delta, Tensor r)
    {
        using var ng = new NoGrad();
        using var scope = new TensorScope();
        var moved = (double[])values.Clone();
        moved[j] += delta;
        var args = (Tensor[])inputs.Clone();
        args[which] = Tensor.FromArray(moved, inputs[which].Shape, inputs[which].Device);
        var y = f(args);
        return (y * r).Sum().Item();
    }
}
