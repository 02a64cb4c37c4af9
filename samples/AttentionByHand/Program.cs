// Scaled dot-product attention written out with loops, next to the engine's fused kernel:
//   scores[i, j] = (q_i · k_j) / sqrt(D)   (j > i hidden when causal)
//   weights[i, :] = softmax(scores[i, :])
//   out_i = Σ_j weights[i, j] v_j
// The loops are the definition; Tensor.ScaledDotProductAttention computes the same thing tile by tile
// (FlashAttention's online softmax) without ever storing the T x T score matrix.
using System.Globalization;
using AttnCore;

const int B = 2, H = 3, T = 7, D = 16;
using var q = Tensor.Randn([B, H, T, D], seed: 1);
using var k = Tensor.Randn([B, H, T, D], seed: 2);
using var v = Tensor.Randn([B, H, T, D], seed: 3);

foreach (bool causal in new[] { false, true })
{
    float[] byHand = Attention(q.ToArray<float>(), k.ToArray<float>(), v.ToArray<float>(), causal);
    using var fused = Tensor.ScaledDotProductAttention(q, k, v, causal: causal);
    float[] engine = fused.ToArray<float>();
    double maxDiff = byHand.Zip(engine, (a, b) => Math.Abs(a - b)).Max();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{(causal ? "causal" : "full")} attention [{B}, {H}, {T}, {D}]: out[0, 0, 0, 0..3] = {byHand[0]:F5} {byHand[1]:F5} {byHand[2]:F5} {byHand[3]:F5}, max |hand - engine| = {maxDiff:E2}"));
}

// One (batch, head) slice at a time: T queries against T keys, in float64 so the loops are the reference.
static float[] Attention(float[] q, float[] k, float[] v, bool causal)
{
    var output = new float[q.Length];
    var scores = new double[T];
    double scale = 1.0 / Math.Sqrt(D);
    for (int slice = 0; slice < B * H; slice++)
    {
        int at = slice * T * D;
        for (int i = 0; i < T; i++)
        {
            int visible = causal ? i + 1 : T;
            double max = double.NegativeInfinity;
            for (int j = 0; j < visible; j++)
            {
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)q[at + i * D + d] * k[at + j * D + d];
                scores[j] = dot * scale;
                max = Math.Max(max, scores[j]);
            }
            // Subtracting the row maximum keeps exp from overflowing; it cancels in the division.
            double total = 0;
            for (int j = 0; j < visible; j++) total += scores[j] = Math.Exp(scores[j] - max);
            for (int d = 0; d < D; d++)
            {
                double sum = 0;
                for (int j = 0; j < visible; j++) sum += scores[j] / total * v[at + j * D + d];
                output[at + i * D + d] = (float)sum;
            }
        }
    }
    return output;
}
