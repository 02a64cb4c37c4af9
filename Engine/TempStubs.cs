// TEMPORARY (deleted before commit): stand-ins until the kernel helpers deliver.
namespace AttnCore.Kernels.Cpu
{
    public static class Softmax
    {
        public static void Forward(ReadOnlySpan<float> x, Span<float> y, int rows, int cols) { for (int r = 0; r < rows; r++) { float m = float.NegativeInfinity; for (int j = 0; j < cols; j++) m = Math.Max(m, x[r * cols + j]); double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - m); for (int j = 0; j < cols; j++) y[r * cols + j] = (float)(Math.Exp(x[r * cols + j] - m) / s); } }
        public static void LogSoftmaxForward(ReadOnlySpan<float> x, Span<float> y, int rows, int cols) { for (int r = 0; r < rows; r++) { float m = float.NegativeInfinity; for (int j = 0; j < cols; j++) m = Math.Max(m, x[r * cols + j]); double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - m); for (int j = 0; j < cols; j++) y[r * cols + j] = (float)(x[r * cols + j] - m - Math.Log(s)); } }
        public static void Forward(ReadOnlySpan<double> x, Span<double> y, int rows, int cols) { for (int r = 0; r < rows; r++) { double m = double.NegativeInfinity; for (int j = 0; j < cols; j++) m = Math.Max(m, x[r * cols + j]); double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - m); for (int j = 0; j < cols; j++) y[r * cols + j] = Math.Exp(x[r * cols + j] - m) / s; } }
        public static void LogSoftmaxForward(ReadOnlySpan<double> x, Span<double> y, int rows, int cols) { for (int r = 0; r < rows; r++) { double m = double.NegativeInfinity; for (int j = 0; j < cols; j++) m = Math.Max(m, x[r * cols + j]); double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - m); for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] - m - Math.Log(s); } }
    }
    public static class LayerNorm
    {
        public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> g, ReadOnlySpan<float> b, Span<float> y, Span<float> mean, Span<float> rstd, int rows, int cols, float eps)
        { for (int r = 0; r < rows; r++) { double m = 0; for (int j = 0; j < cols; j++) m += x[r * cols + j]; m /= cols; double v = 0; for (int j = 0; j < cols; j++) v += (x[r * cols + j] - m) * (x[r * cols + j] - m); v /= cols; double rs = 1 / Math.Sqrt(v + eps); mean[r] = (float)m; rstd[r] = (float)rs; for (int j = 0; j < cols; j++) y[r * cols + j] = (float)((x[r * cols + j] - m) * rs * (g.IsEmpty ? 1 : g[j]) + (b.IsEmpty ? 0 : b[j])); } }
        public static void Forward(ReadOnlySpan<double> x, ReadOnlySpan<double> g, ReadOnlySpan<double> b, Span<double> y, Span<double> mean, Span<double> rstd, int rows, int cols, double eps)
        { for (int r = 0; r < rows; r++) { double m = 0; for (int j = 0; j < cols; j++) m += x[r * cols + j]; m /= cols; double v = 0; for (int j = 0; j < cols; j++) v += (x[r * cols + j] - m) * (x[r * cols + j] - m); v /= cols; double rs = 1 / Math.Sqrt(v + eps); mean[r] = m; rstd[r] = rs; for (int j = 0; j < cols; j++) y[r * cols + j] = (x[r * cols + j] - m) * rs * (g.IsEmpty ? 1 : g[j]) + (b.IsEmpty ? 0 : b[j]); } }
    }
}
namespace AttnCore.Kernels.Cpu
{
    public static class Optim
    {
        public static void AdamW<T>(Span<T> p, ReadOnlySpan<T> g, Span<T> m, Span<T> v, T lr, T b1, T b2, T eps, T wd, long step, bool decoupled) where T : System.Numerics.IFloatingPointIeee754<T>
        {
            T bc1 = T.One - T.Pow(b1, T.CreateTruncating(step)), bc2 = T.One - T.Pow(b2, T.CreateTruncating(step));
            for (int i = 0; i < p.Length; i++)
            {
                T gi = g[i];
                if (decoupled) p[i] *= T.One - lr * wd; else gi += wd * p[i];
                m[i] = b1 * m[i] + (T.One - b1) * gi;
                v[i] = b2 * v[i] + (T.One - b2) * gi * gi;
                T denom = T.Sqrt(v[i]) / T.Sqrt(bc2) + eps;
                p[i] -= lr / bc1 * m[i] / denom;
            }
        }
        public static void Sgd<T>(Span<T> p, ReadOnlySpan<T> g, Span<T> buf, T lr, T momentum, T dampening, T wd, bool nesterov, bool first) where T : System.Numerics.IFloatingPointIeee754<T>
        {
            for (int i = 0; i < p.Length; i++)
            {
                T d = g[i] + wd * p[i];
                if (momentum != T.Zero)
                {
                    buf[i] = first ? d : momentum * buf[i] + (T.One - dampening) * d;
                    d = nesterov ? d + momentum * buf[i] : buf[i];
                }
                p[i] -= lr * d;
            }
        }
    }
}
