// CrossEntropy: torch.nn.functional.cross_entropy fused with its log-softmax, for class-index targets (with
// ignore_index, class weights and label smoothing) and class-probability targets (with weights and smoothing).
//
// Layout: logits are contiguous [outer, C, inner] (PyTorch's [N, C, d1, d2, ...] with inner = d1·d2·..., 1 for
// [N, C]; a [C] input is outer = 1). Position p = n·inner + s reads its C logits at stride inner, so there is no
// transposing copy. Class targets are int64 [outer·inner]; probability targets are shaped like the logits.
// Forward, per position (w = class weights, 1 without; ε = label smoothing):
//   lse = max + log Σ_c exp(x_c − max), kept for the backward pass; then
//   class target t:   loss = (1−ε) w_t (lse − x_t) + (ε/C) Σ_c w_c (lse − x_c)   (0 when t = ignore_index)
//                     denominator += w_t;   rowScale = (1−ε) w_t + (ε/C) Σ_c w_c   (1 without weights)
//   probabilities q:  q' = (1−ε) q + ε/C;   loss = Σ_c w_c q'_c (lse − x_c);   denominator += 1;   rowScale = Σ_c w_c q'_c
//   PyTorch's 'mean' divides the summed loss by the denominator: the total weight of the kept targets, or the
//   number of positions for probability targets. The kernel returns the sum and the denominator.
// Backward, per logit, with s = softmax_c recomputed from the saved lse and g the position's output gradient:
//   class targets:   dx_c = (s · rowScale − (ε/C) w_c − (1−ε) w_t [c = t]) · g    (0 on ignored positions)
//   probabilities:   dx_c = (s · rowScale − w_c q'_c) · g
// Ranges of positions run on the WorkerPool in both directions; the forward adds the positions' losses (float64) in
// position order afterwards, so no result depends on the thread count.
// FLOPs: ~6 per logit each way plus one exp. Bytes: 4 per logit read forward (8 in float64); 8 backward.
// Bound: exp throughput (VectorMath.Exp) on contiguous float32 rows; strided rows (inner > 1) run scalar.
// Reference: ForwardReference/BackwardReference in CrossEntropyReference.cs (float64, composed as PyTorch does:
// log_softmax, nll_loss, smoothing term), and PyTorch 1.13 values in Tests/Fixtures/cross_entropy.json.
using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>The shape and options of one cross-entropy call (layout in the header of Kernels/Cpu/CrossEntropy.cs).</summary>
/// <param name="Outer">N: the dims before the class dim (1 for a [C] input).</param>
/// <param name="Classes">C: the class dim.</param>
/// <param name="Inner">The product of the dims after the class dim (1 for [N, C]).</param>
/// <param name="ProbabilityTargets">True when targets are class probabilities shaped like the logits.</param>
/// <param name="IgnoreIndex">A class target with this value adds nothing (class targets only).</param>
/// <param name="LabelSmoothing">ε in [0, 1]: the target is mixed with the uniform distribution.</param>
public readonly record struct CrossEntropyProblem(int Outer, int Classes, int Inner, bool ProbabilityTargets, long IgnoreIndex, double LabelSmoothing)
{
    /// <summary>Positions, one loss each before reduction: Outer · Inner.</summary>
    public long Positions => (long)Outer * Inner;
    /// <summary>Logits: Outer · Classes · Inner.</summary>
    public long Logits => Positions * Classes;

    /// <summary>Position p as [n, s] over [Outer, Inner] (for error messages).</summary>
    public string Describe(long p) => Inner == 1 ? $"{p}" : $"{p} = [{p / Inner}, {p % Inner}] of [{Outer}, {Inner}]";
}

/// <summary>Fused log-softmax + negative log-likelihood (PyTorch's cross_entropy), forward and backward.</summary>
public static unsafe partial class CrossEntropy
{
    private const int MinParallelLogits = 32 * 1024;   // below this one thread is faster than waking the pool

    private static void Check(string op, in CrossEntropyProblem p, int logits, int classTargets, int probTargets, int weight, int lse, int rowScale)
    {
        if (p.Outer < 0 || p.Inner < 0 || p.Classes <= 0)
            throw new ArgumentException($"{op}: need outer >= 0, inner >= 0 and classes > 0, got [{p.Outer}, {p.Classes}, {p.Inner}]");
        if (p.LabelSmoothing is < 0 or > 1 || double.IsNaN(p.LabelSmoothing))
            throw new ArgumentOutOfRangeException(nameof(p), $"{op}: label smoothing must be in [0, 1], got {p.LabelSmoothing}");
        long n = p.Logits, positions = p.Positions;
        if (logits < n) throw new ArgumentException($"{op}: logits hold {logits} values, [{p.Outer}, {p.Classes}, {p.Inner}] needs {n}");
        if (p.ProbabilityTargets ? probTargets < n : classTargets < positions)
            throw new ArgumentException($"{op}: targets hold {(p.ProbabilityTargets ? probTargets : classTargets)} values, need {(p.ProbabilityTargets ? n : positions)}");
        if (weight != 0 && weight != p.Classes) throw new ArgumentException($"{op}: weight has {weight} values, need one per class ({p.Classes})");
        if (lse < positions || rowScale < positions) throw new ArgumentException($"{op}: lse ({lse}) or rowScale ({rowScale}) is shorter than {positions} positions");
    }

    /// <summary>
    /// Throws <see cref="ArgumentOutOfRangeException"/> naming the first class target outside [0, C) that is not the
    /// ignore index (PyTorch: "Target 5 is out of bounds").
    /// </summary>
    public static void CheckTargets(ReadOnlySpan<long> targets, in CrossEntropyProblem p)
    {
        long positions = p.Positions;
        for (long i = 0; i < positions; i++)
        {
            long t = targets[(int)i];
            if ((t < 0 || t >= p.Classes) && t != p.IgnoreIndex)
                throw new ArgumentOutOfRangeException(nameof(targets), t,
                    $"CrossEntropy: target {t} at position {p.Describe(i)} is outside the {p.Classes} classes [0, {p.Classes}) and is not ignore_index {p.IgnoreIndex}");
        }
    }

    /// <summary>
    /// Forward pass (float32 or float64): fills lse and rowScale per position, rowLoss (when not empty) with each
    /// position's loss, and returns the summed loss; <paramref name="denominator"/> is what PyTorch's 'mean' divides
    /// by. Pass the unused target span and an absent weight as empty spans.
    /// </summary>
    public static double Forward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<long> classTargets, ReadOnlySpan<T> probTargets, ReadOnlySpan<T> weight,
        Span<T> lse, Span<T> rowScale, Span<T> rowLoss, in CrossEntropyProblem p, out double denominator) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Check("CrossEntropy.Forward", p, logits.Length, classTargets.Length, probTargets.Length, weight.Length, lse.Length, rowScale.Length);
        if (!rowLoss.IsEmpty && rowLoss.Length < p.Positions) throw new ArgumentException($"CrossEntropy.Forward: rowLoss ({rowLoss.Length}) is shorter than {p.Positions} positions");
        if (!p.ProbabilityTargets) CheckTargets(classTargets, p);
        fixed (T* x = logits) fixed (long* ct = classTargets) fixed (T* q = probTargets) fixed (T* w = weight)
        fixed (T* l = lse) fixed (T* rs = rowScale) fixed (T* rl = rowLoss)
            return ForwardCore(x, ct, q, weight.IsEmpty ? null : w, l, rs, rowLoss.IsEmpty ? null : rl, p, out denominator);
    }

    /// <summary>
    /// Backward pass (float32 or float64): dlogits from the saved lse and rowScale. The output gradient of position p
    /// is gradOutput[p] / divisor when gradOutput holds one value per position ('none'), else gradOutput[0] / divisor
    /// (divisor: the forward denominator for 'mean', 1 for 'sum' and 'none').
    /// </summary>
    public static void Backward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<long> classTargets, ReadOnlySpan<T> probTargets, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> lse, ReadOnlySpan<T> rowScale, ReadOnlySpan<T> gradOutput, T divisor, Span<T> dlogits, in CrossEntropyProblem p)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        CheckBackward(p, logits.Length, classTargets.Length, probTargets.Length, weight.Length, lse.Length, rowScale.Length, gradOutput.Length, dlogits.Length);
        fixed (T* x = logits) fixed (long* ct = classTargets) fixed (T* q = probTargets) fixed (T* w = weight)
        fixed (T* l = lse) fixed (T* rs = rowScale) fixed (T* g = gradOutput) fixed (T* d = dlogits)
        {
            var a = new BackwardArgs<T> { X = x, ClassTargets = ct, Probabilities = q, Weight = weight.IsEmpty ? null : w, Lse = l, RowScale = rs,
                Grad = g, PerPosition = gradOutput.Length > 1, Divisor = divisor, Dx = d, Problem = p };
            RunBackward(ref a);
        }
    }

    private static void CheckBackward(in CrossEntropyProblem p, int logits, int classTargets, int probTargets, int weight, int lse, int rowScale, int gradOutput, int dlogits)
    {
        Check("CrossEntropy.Backward", p, Math.Min(logits, dlogits), classTargets, probTargets, weight, lse, rowScale);
        if (gradOutput != 1 && gradOutput < p.Positions)
            throw new ArgumentException($"CrossEntropy.Backward: gradOutput holds {gradOutput} values, need 1 or one per position ({p.Positions})");
    }

    private struct ForwardArgs<T> where T : unmanaged
    {
        public T* X, Probabilities, Weight, Lse, RowScale;
        public long* ClassTargets;
        public double* Losses;
        public double WeightSum;
        public CrossEntropyProblem Problem;
        public long PositionsPerChunk;
    }

    private static double ForwardCore<T>(T* x, long* classTargets, T* probs, T* w, T* lse, T* rowScale, T* rowLoss, in CrossEntropyProblem p, out double denominator)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        long positions = p.Positions;
        double weightSum = p.Classes;
        if (w != null) { weightSum = 0; for (int c = 0; c < p.Classes; c++) weightSum += double.CreateTruncating(w[c]); }
        var losses = ArrayPool<double>.Shared.Rent((int)Math.Max(positions, 1));
        try
        {
            fixed (double* pl = losses)
            {
                var a = new ForwardArgs<T> { X = x, ClassTargets = classTargets, Probabilities = probs, Weight = w, Lse = lse, RowScale = rowScale,
                    Losses = pl, WeightSum = weightSum, Problem = p };
                int chunks = Chunks(p, out a.PositionsPerChunk);
                WorkerPool.For(chunks, &ForwardChunk<T>, (nint)(&a));
            }
            // The positions' losses are added in order after the parallel part: the sum does not depend on the split.
            double total = 0, denom = 0;
            for (long pos = 0; pos < positions; pos++)
            {
                total += losses[pos];
                if (rowLoss != null) rowLoss[pos] = T.CreateTruncating(losses[pos]);
                if (p.ProbabilityTargets) denom += 1;
                else if (classTargets[pos] != p.IgnoreIndex) denom += w == null ? 1 : double.CreateTruncating(w[classTargets[pos]]);
            }
            denominator = denom;
            return total;
        }
        finally { ArrayPool<double>.Shared.Return(losses); }
    }

    // Positions are independent: ranges of them run on the pool, one range per chunk.
    private static int Chunks(in CrossEntropyProblem p, out long positionsPerChunk)
    {
        long positions = p.Positions;
        int chunks = p.Logits < MinParallelLogits ? 1 : (int)Math.Min(positions, WorkerPool.ChunkCount(p.Logits, MinParallelLogits, 4));
        positionsPerChunk = Math.Max(1, (positions + chunks - 1) / chunks);
        return (int)((positions + positionsPerChunk - 1) / positionsPerChunk);
    }

    private static void ForwardChunk<T>(int chunk, nint state) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ref var a = ref *(ForwardArgs<T>*)state;
        var p = a.Problem;
        int classes = p.Classes, inner = p.Inner;
        double eps = p.LabelSmoothing;
        long end = Math.Min(p.Positions, (chunk + 1) * a.PositionsPerChunk);
        for (long pos = chunk * a.PositionsPerChunk; pos < end; pos++)
        {
            long at = pos / inner * classes * inner + pos % inner;
            T* row = a.X + at, w = a.Weight;
            T l = Lse(row, classes, inner);
            a.Lse[pos] = l;
            double loss, scale;
            if (p.ProbabilityTargets) (loss, scale) = ProbabilityRow(row, a.Probabilities + at, w, double.CreateTruncating(l), classes, inner, eps);
            else
            {
                long t = a.ClassTargets[pos];
                if (t == p.IgnoreIndex) { loss = 0; scale = 0; }
                else
                {
                    double wt = w == null ? 1 : double.CreateTruncating(w[t]);
                    // l − x_t in T: the float32 default path (no weights, no smoothing) keeps the bits it always had.
                    loss = wt * double.CreateTruncating(l - row[t * inner]);
                    if (eps != 0) loss = (1 - eps) * loss + eps * SmoothingTerm(row, w, double.CreateTruncating(l), classes, inner, a.WeightSum);
                    scale = w == null ? 1 : (1 - eps) * wt + eps * a.WeightSum / classes;
                }
            }
            a.RowScale[pos] = T.CreateTruncating(scale);
            a.Losses[pos] = loss;
        }
    }

    // log Σ exp over one position's logits (stride `inner`); contiguous float32 rows take the vector exp.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T Lse<T>(T* x, int classes, int inner) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && inner == 1)
        {
            float* xf = (float*)x;
            float maxF = float.NegativeInfinity;
            for (int c = 0; c < classes; c++) maxF = MathF.Max(maxF, xf[c]);
            float lf = maxF + MathF.Log(Softmax.ExpShiftSum(xf, null, classes, maxF, storeExp: false));
            return Unsafe.As<float, T>(ref lf);
        }
        T max = T.NegativeInfinity;
        for (int c = 0; c < classes; c++) max = T.Max(max, x[(long)c * inner]);
        T sum = T.Zero;
        for (int c = 0; c < classes; c++) sum += T.Exp(x[(long)c * inner] - max);
        return max + T.Log(sum);
    }

    // (1/C) Σ_c w_c (lse − x_c): the smoothing part of a class-target loss, w_c = 1 without weights.
    private static double SmoothingTerm<T>(T* x, T* w, double lse, int classes, int inner, double weightSum) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double dot;
        if (inner == 1)
            dot = w == null ? double.CreateTruncating(TensorPrimitives.Sum(new ReadOnlySpan<T>(x, classes)))
                            : double.CreateTruncating(TensorPrimitives.Dot(new ReadOnlySpan<T>(x, classes), new ReadOnlySpan<T>(w, classes)));
        else
        {
            dot = 0;
            for (int c = 0; c < classes; c++) dot += (w == null ? 1 : double.CreateTruncating(w[c])) * double.CreateTruncating(x[(long)c * inner]);
        }
        return w == null ? lse - dot / classes : (lse * weightSum - dot) / classes;
    }

    // Σ_c w_c q'_c (lse − x_c) and Σ_c w_c q'_c for one position of probability targets.
    private static (double Loss, double Mass) ProbabilityRow<T>(T* x, T* q, T* w, double lse, int classes, int inner, double eps) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double loss = 0, mass = 0;
        for (int c = 0; c < classes; c++)
        {
            long i = (long)c * inner;
            double wq = (w == null ? 1 : double.CreateTruncating(w[c])) * ((1 - eps) * double.CreateTruncating(q[i]) + eps / classes);
            loss += wq * (lse - double.CreateTruncating(x[i]));
            mass += wq;
        }
        return (loss, mass);
    }

    private struct BackwardArgs<T> where T : unmanaged
    {
        public T* X, Probabilities, Weight, Lse, RowScale, Grad, Dx;
        public long* ClassTargets;
        public bool PerPosition;
        public T Divisor;
        public CrossEntropyProblem Problem;
        public long PositionsPerChunk;
    }

    private static void RunBackward<T>(ref BackwardArgs<T> a) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (a.Problem.Logits == 0) return;
        int chunks = Chunks(a.Problem, out a.PositionsPerChunk);
        fixed (BackwardArgs<T>* pa = &a) WorkerPool.For(chunks, &BackwardChunk<T>, (nint)pa);
    }

    private static void BackwardChunk<T>(int chunk, nint state) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ref var a = ref *(BackwardArgs<T>*)state;
        var p = a.Problem;
        int classes = p.Classes, inner = p.Inner;
        T eps = T.CreateTruncating(p.LabelSmoothing), one = T.One;
        T uniform = eps / T.CreateTruncating(classes);
        long end = Math.Min(p.Positions, (chunk + 1) * a.PositionsPerChunk);
        for (long pos = chunk * a.PositionsPerChunk; pos < end; pos++)
        {
            long at = pos / inner * classes * inner + pos % inner;
            T* x = a.X + at, d = a.Dx + at;
            T scale = a.Grad[a.PerPosition ? pos : 0] / a.Divisor;
            T l = a.Lse[pos], k = a.RowScale[pos];
            if (p.ProbabilityTargets)
            {
                T* q = a.Probabilities + at;
                for (int c = 0; c < classes; c++)
                {
                    long i = (long)c * inner;
                    T wc = a.Weight == null ? one : a.Weight[c];
                    d[i] = (T.Exp(x[i] - l) * k - wc * ((one - eps) * q[i] + uniform)) * scale;
                }
                continue;
            }
            long t = a.ClassTargets[pos];
            if (t == p.IgnoreIndex)
            {
                for (int c = 0; c < classes; c++) d[(long)c * inner] = T.Zero;
                continue;
            }
            if (typeof(T) == typeof(float) && inner == 1)
                ClassRowFloat((float*)x, (float*)d, (float*)a.Weight, classes, float.CreateTruncating(l), float.CreateTruncating(k),
                    float.CreateTruncating(uniform), float.CreateTruncating(scale));
            else
                for (int c = 0; c < classes; c++)
                {
                    long i = (long)c * inner;
                    d[i] = (T.Exp(x[i] - l) * k - uniform * (a.Weight == null ? one : a.Weight[c])) * scale;
                }
            T wt = a.Weight == null ? one : a.Weight[t];
            d[t * inner] -= (one - eps) * wt * scale;
        }
    }

    // dx_c = (exp(x_c − lse) · k − uniform · w_c) · scale over a contiguous float32 row (w_c = 1 without weights).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ClassRowFloat(float* x, float* d, float* w, int classes, float l, float k, float uniform, float scale)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var lv = Vector512.Create(l); var sv = Vector512.Create(scale); var uv = Vector512.Create(uniform); var kv = Vector512.Create(k);
            if (w == null)
                for (; c + 16 <= classes; c += 16) ((VectorMath.Exp(Vector512.Load(x + c) - lv) * kv - uv) * sv).Store(d + c);
            else
                for (; c + 16 <= classes; c += 16) ((VectorMath.Exp(Vector512.Load(x + c) - lv) * kv - uv * Vector512.Load(w + c)) * sv).Store(d + c);
        }
        else if (Vector.IsHardwareAccelerated)
        {
            // The same at the portable width (AVX2: 8 lanes, Arm64: 4).
            int n = Vector<float>.Count;
            var lv = new Vector<float>(l); var sv = new Vector<float>(scale); var uv = new Vector<float>(uniform); var kv = new Vector<float>(k);
            for (; c + n <= classes; c += n)
            {
                var u = w == null ? uv : uv * Vector.Load(w + c);
                ((VectorMath.Exp(Vector.Load(x + c) - lv) * kv - u) * sv).Store(d + c);
            }
        }
        for (; c < classes; c++) d[c] = (VectorMath.Exp(x[c] - l) * k - uniform * (w == null ? 1f : w[c])) * scale;
    }
}
