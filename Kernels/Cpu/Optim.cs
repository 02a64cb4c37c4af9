// Optim: fused optimizer updates, one pass over parameter, gradient and state (PyTorch's formulas).
//
// AdamW / Adam, per element (bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t computed once per call):
//   decoupled: p *= 1 - lr·wd            L2 (Adam): g += wd·p
//   m = b1·m + (1-b1)·g;  v = b2·v + (1-b2)·g²;  p -= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps)
// SGD: d = g + wd·p; buf = μ·buf + (1-τ)·d (buf = d on the first step); d = nesterov ? d + μ·buf : buf; p -= lr·d
// FLOPs: ~12 per element (Adam). Bytes: 28 per float32 element (read p, g, m, v; write p, m, v).
// Bound: memory bandwidth. Vector512 with a scalar tail that applies the same float32 formula in the same order; the
// float32 SGD and Adam steps are split over the worker pool for large tensors.
// Reference: Tests/Autograd/OptimizerTests.cs writes the formulas out in float64; Tests/Kernels/OptimKernelTests.cs
// checks the float32 SGD and Adam steps against them on every length around the vector width.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Fused in-place optimizer updates.</summary>
public static unsafe class Optim
{
    private struct AdamArgs
    {
        public float* P, G, M, V;
        public int N, Parts;
        public float Beta1, Beta2, Eps, WeightDecay, StepSize, InvSqrtBc2, Decay;
        public bool Decoupled;
    }

    /// <summary>
    /// One Adam (decoupled = false) or AdamW (decoupled = true) step; step counts from 1. Tensors of 2^18 elements or
    /// more are split over the worker pool, as the SGD step (GPT small's 10.6M parameters: 5 ms a step on one thread).
    /// </summary>
    public static void AdamW(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, float lr, float beta1, float beta2, float eps, float weightDecay, long step, bool decoupled)
    {
        int n = p.Length;
        if (g.Length < n || m.Length < n || v.Length < n) throw new ArgumentException($"Optim.AdamW: grad ({g.Length}), exp_avg ({m.Length}) or exp_avg_sq ({v.Length}) is shorter than the {n} parameters");
        if (step < 1) throw new ArgumentException($"Optim.AdamW: step counts from 1, got {step}");
        float bc1 = 1 - MathF.Pow(beta1, step), bc2 = 1 - MathF.Pow(beta2, step);
        fixed (float* pp = p) fixed (float* pg = g) fixed (float* pm = m) fixed (float* pv = v)
        {
            var a = new AdamArgs
            {
                P = pp, G = pg, M = pm, V = pv, N = n, Beta1 = beta1, Beta2 = beta2, Eps = eps, WeightDecay = weightDecay,
                StepSize = lr / bc1, InvSqrtBc2 = 1 / MathF.Sqrt(bc2), Decay = 1 - lr * weightDecay, Decoupled = decoupled,
                Parts = PartsFor(n),
            };
            WorkerPool.For(a.Parts, &AdamPart, (nint)(&a));   // one part runs inline
        }
    }

    // The elements of part `part` (PartRange): each element's update depends on that element alone, so the result is
    // the same for any number of parts.
    private static void AdamPart(int part, nint state)
    {
        ref AdamArgs a = ref *(AdamArgs*)state;
        var (i, n) = PartRange(a.N, a.Parts, part);
        float* pp = a.P, pg = a.G, pm = a.M, pv = a.V;
        float beta1 = a.Beta1, beta2 = a.Beta2, eps = a.Eps, weightDecay = a.WeightDecay, stepSize = a.StepSize, invSqrtBc2 = a.InvSqrtBc2, decay = a.Decay;
        bool decoupled = a.Decoupled;
        if (Vector512.IsHardwareAccelerated)
        {
            var b1 = Vector512.Create(beta1); var b2 = Vector512.Create(beta2); var ob1 = Vector512.Create(1 - beta1); var ob2 = Vector512.Create(1 - beta2);
            var ss = Vector512.Create(stepSize); var ib = Vector512.Create(invSqrtBc2); var ep = Vector512.Create(eps);
            var dec = Vector512.Create(decay); var wd = Vector512.Create(weightDecay);
            for (; i + 16 <= n; i += 16)
            {
                var pi = Vector512.Load(pp + i); var gi = Vector512.Load(pg + i);
                if (decoupled) pi *= dec; else gi = Vector512.FusedMultiplyAdd(wd, pi, gi);
                var mi = Vector512.FusedMultiplyAdd(b1, Vector512.Load(pm + i), ob1 * gi);
                var vi = Vector512.FusedMultiplyAdd(b2, Vector512.Load(pv + i), ob2 * gi * gi);
                var denom = Vector512.Sqrt(vi) * ib + ep;
                pi -= ss * mi / denom;
                pi.Store(pp + i); mi.Store(pm + i); vi.Store(pv + i);
            }
        }
        else if (Vector.IsHardwareAccelerated)
        {
            // The same update at the portable width (AVX2: 8 lanes, Arm64: 4); parts are cut at multiples of 16.
            var b1 = new Vector<float>(beta1); var b2 = new Vector<float>(beta2); var ob1 = new Vector<float>(1 - beta1); var ob2 = new Vector<float>(1 - beta2);
            var ss = new Vector<float>(stepSize); var ib = new Vector<float>(invSqrtBc2); var ep = new Vector<float>(eps);
            var dec = new Vector<float>(decay); var wd = new Vector<float>(weightDecay);
            for (int w = Vector<float>.Count; i + w <= n; i += w)
            {
                var pi = Vector.Load(pp + i); var gi = Vector.Load(pg + i);
                if (decoupled) pi *= dec; else gi = Vector.MultiplyAddEstimate(wd, pi, gi);
                var mi = Vector.MultiplyAddEstimate(b1, Vector.Load(pm + i), ob1 * gi);
                var vi = Vector.MultiplyAddEstimate(b2, Vector.Load(pv + i), ob2 * gi * gi);
                var denom = Vector.SquareRoot(vi) * ib + ep;
                pi -= ss * mi / denom;
                pi.Store(pp + i); mi.Store(pm + i); vi.Store(pv + i);
            }
        }
        for (; i < n; i++)
        {
            float pi = pp[i], gi = pg[i];
            if (decoupled) pi *= decay; else gi = MathF.FusedMultiplyAdd(weightDecay, pi, gi);
            float mi = MathF.FusedMultiplyAdd(beta1, pm[i], (1 - beta1) * gi);
            float vi = MathF.FusedMultiplyAdd(beta2, pv[i], (1 - beta2) * gi * gi);
            pi -= stepSize * mi / (MathF.Sqrt(vi) * invSqrtBc2 + eps);
            pp[i] = pi; pm[i] = mi; pv[i] = vi;
        }
    }

    /// <summary>float64 Adam/AdamW (scalar).</summary>
    public static void AdamW(Span<double> p, ReadOnlySpan<double> g, Span<double> m, Span<double> v, double lr, double beta1, double beta2, double eps, double weightDecay, long step, bool decoupled)
    {
        if (g.Length < p.Length || m.Length < p.Length || v.Length < p.Length) throw new ArgumentException("Optim.AdamW: state spans are shorter than the parameters");
        double bc1 = 1 - Math.Pow(beta1, step), bc2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < p.Length; i++)
        {
            double gi = g[i];
            if (decoupled) p[i] *= 1 - lr * weightDecay; else gi += weightDecay * p[i];
            m[i] = beta1 * m[i] + (1 - beta1) * gi;
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
            p[i] -= lr / bc1 * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(bc2) + eps);
        }
    }

    private const int ParallelLength = 1 << 18;   // elements from which a float32 step (SGD, Adam) is split over the pool

    private static int PartsFor(int n) => n >= ParallelLength ? WorkerPool.ThreadCount : 1;

    // Elements [start, end) of part `part` of n cut into `parts`, at multiples of 16 so that only the last part has a
    // scalar tail (the portable widths, 8 and 4, divide 16 too).
    private static (int Start, int End) PartRange(int n, int parts, int part)
    {
        int per = (n / parts + 15) / 16 * 16, start = Math.Min(n, part * per);
        return (start, part == parts - 1 ? n : Math.Min(n, start + per));
    }

    private struct SgdArgs
    {
        public float* P, G, Buf;
        public int N, Parts;
        public float Lr, Momentum, Dampening, WeightDecay;
        public bool Nesterov, FirstStep;
    }

    /// <summary>
    /// One float32 SGD step (momentum buffer may be empty when momentum is 0): Vector512 with a scalar tail that applies
    /// the same formula, and for tensors of 2^18 elements or more split over the worker pool (a ResNet-50 step updates
    /// 25.6M parameters: about 45 ms on one thread with the scalar loop).
    /// </summary>
    public static void Sgd(Span<float> p, ReadOnlySpan<float> g, Span<float> buf, float lr, float momentum, float dampening, float weightDecay, bool nesterov, bool firstStep)
    {
        int n = p.Length;
        if (g.Length < n || (momentum != 0 && buf.Length < n))
            throw new ArgumentException($"Optim.Sgd: grad ({g.Length}) or momentum buffer ({buf.Length}) is shorter than the {n} parameters");
        fixed (float* pp = p) fixed (float* pg = g) fixed (float* pb = buf)
        {
            var a = new SgdArgs
            {
                P = pp, G = pg, Buf = pb, N = n, Lr = lr, Momentum = momentum, Dampening = dampening, WeightDecay = weightDecay,
                Nesterov = nesterov, FirstStep = firstStep, Parts = PartsFor(n),
            };
            WorkerPool.For(a.Parts, &SgdPart, (nint)(&a));   // one part runs inline
        }
    }

    // The elements of part `part` (PartRange).
    private static void SgdPart(int part, nint state)
    {
        ref SgdArgs a = ref *(SgdArgs*)state;
        var (i, end) = PartRange(a.N, a.Parts, part);
        float mu = a.Momentum, keep = 1 - a.Dampening;
        if (Vector512.IsHardwareAccelerated)
        {
            var lr = Vector512.Create(a.Lr); var wd = Vector512.Create(a.WeightDecay); var m = Vector512.Create(mu); var k = Vector512.Create(keep);
            for (; i + 16 <= end; i += 16)
            {
                var pi = Vector512.Load(a.P + i);
                var d = Vector512.FusedMultiplyAdd(wd, pi, Vector512.Load(a.G + i));
                if (mu != 0)
                {
                    var b = a.FirstStep ? d : Vector512.FusedMultiplyAdd(m, Vector512.Load(a.Buf + i), k * d);
                    b.Store(a.Buf + i);
                    d = a.Nesterov ? Vector512.FusedMultiplyAdd(m, b, d) : b;
                }
                (pi - lr * d).Store(a.P + i);
            }
        }
        else if (Vector.IsHardwareAccelerated)
        {
            // Parts are cut at multiples of 16, which the portable widths (8, 4) divide.
            var lr = new Vector<float>(a.Lr); var wd = new Vector<float>(a.WeightDecay); var m = new Vector<float>(mu); var k = new Vector<float>(keep);
            for (int w = Vector<float>.Count; i + w <= end; i += w)
            {
                var pi = Vector.Load(a.P + i);
                var d = Vector.MultiplyAddEstimate(wd, pi, Vector.Load(a.G + i));
                if (mu != 0)
                {
                    var b = a.FirstStep ? d : Vector.MultiplyAddEstimate(m, Vector.Load(a.Buf + i), k * d);
                    b.Store(a.Buf + i);
                    d = a.Nesterov ? Vector.MultiplyAddEstimate(m, b, d) : b;
                }
                (pi - lr * d).Store(a.P + i);
            }
        }
        for (; i < end; i++)
        {
            float pi = a.P[i], d = MathF.FusedMultiplyAdd(a.WeightDecay, pi, a.G[i]);
            if (mu != 0)
            {
                float b = a.FirstStep ? d : MathF.FusedMultiplyAdd(mu, a.Buf[i], keep * d);
                a.Buf[i] = b;
                d = a.Nesterov ? MathF.FusedMultiplyAdd(mu, b, d) : b;
            }
            a.P[i] = pi - a.Lr * d;
        }
    }

    /// <summary>One SGD step, scalar, for float64 (float32 takes the vector overload above); the momentum buffer may be empty when momentum is 0.</summary>
    public static void Sgd<T>(Span<T> p, ReadOnlySpan<T> g, Span<T> buf, T lr, T momentum, T dampening, T weightDecay, bool nesterov, bool firstStep)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (g.Length < p.Length || (momentum != T.Zero && buf.Length < p.Length)) throw new ArgumentException("Optim.Sgd: grad or momentum buffer is shorter than the parameters");
        for (int i = 0; i < p.Length; i++)
        {
            T d = g[i] + weightDecay * p[i];
            if (momentum != T.Zero)
            {
                buf[i] = firstStep ? d : momentum * buf[i] + (T.One - dampening) * d;
                d = nesterov ? d + momentum * buf[i] : buf[i];
            }
            p[i] -= lr * d;
        }
    }
}
