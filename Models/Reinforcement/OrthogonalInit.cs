using AttnCore.Models.Nn;

namespace AttnCore.Models.Reinforcement;

/// <summary>
/// Orthogonal initialisation (Saxe et al. 2014), as torch.nn.init.orthogonal_: draw a rows × cols matrix of
/// standard normals, orthonormalise it by QR (here modified Gram-Schmidt in float64 on the taller orientation,
/// which is QR with R's diagonal made positive, PyTorch's sign convention), and scale by the gain. The result has
/// orthonormal rows when rows ≤ cols (W Wᵀ = gain²·I) and orthonormal columns otherwise (Wᵀ W = gain²·I).
/// PPO's reference implementations initialise hidden layers with gain √2, the policy head with 0.01 and the
/// value head with 1, and every bias with 0.
/// </summary>
public static class OrthogonalInit
{
    /// <summary>A rows × cols matrix with orthonormal rows or columns, times <paramref name="gain"/>, in float64 (row-major).</summary>
    public static double[] Matrix(int rows, int cols, double gain, Generator generator)
    {
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"OrthogonalInit.Matrix: sizes must be positive, got {rows} x {cols}");
        // Work on a tall m × n matrix (m ≥ n) whose n columns get orthonormalised; transpose back at the end.
        bool transpose = rows < cols;
        int m = transpose ? cols : rows, n = transpose ? rows : cols;
        var a = new double[rows * cols];
        for (int i = 0; i < a.Length; i++) a[i] = generator.NextNormal();
        var q = new double[m * n];   // column-major: column j at [j·m, (j+1)·m)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                if (transpose) q[i * m + j] = a[i * cols + j]; else q[j * m + i] = a[i * cols + j];
        for (int j = 0; j < n; j++)
        {
            var cj = q.AsSpan(j * m, m);
            for (int k = 0; k < j; k++)
            {
                var ck = q.AsSpan(k * m, m);
                double dot = 0;
                for (int r = 0; r < m; r++) dot += ck[r] * cj[r];
                for (int r = 0; r < m; r++) cj[r] -= dot * ck[r];
            }
            double norm = 0;
            for (int r = 0; r < m; r++) norm += cj[r] * cj[r];
            norm = Math.Sqrt(norm);
            if (norm < 1e-12) throw new InvalidOperationException($"OrthogonalInit.Matrix: a drawn {rows} x {cols} matrix was rank deficient (column {j})");
            for (int r = 0; r < m; r++) cj[r] /= norm;
        }
        var w = new double[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                w[i * cols + j] = gain * (transpose ? q[i * m + j] : q[j * m + i]);
        return w;
    }

    /// <summary>Sets a linear layer's weight [out, in] orthogonal with <paramref name="gain"/> and its bias to <paramref name="bias"/>.</summary>
    public static void Apply(Linear layer, double gain, Generator generator, double bias = 0)
    {
        var w = Matrix(layer.OutFeatures, layer.InFeatures, gain, generator);
        var f = new float[w.Length];
        for (int i = 0; i < w.Length; i++) f[i] = (float)w[i];
        using var ng = new NoGrad();
        using var src = Tensor.FromArray(f, [layer.OutFeatures, layer.InFeatures], layer.Weight.Device);
        layer.Weight.CopyFrom(src);
        layer.Bias?.Fill_(bias);
    }
}
