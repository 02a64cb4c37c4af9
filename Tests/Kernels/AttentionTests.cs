using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>Additive attention masks of the broadcast shapes the kernels take, as data plus strides (shared with the Gpu tests).</summary>
public static class AttentionMasks
{
    /// <summary>Which mask a test case uses.</summary>
    public enum Kind
    {
        /// <summary>No mask.</summary>
        None,
        /// <summary>[B, 1, 1, Lk] of 0 / -inf: a key padding mask, every batch hiding a different tail.</summary>
        KeyPadding,
        /// <summary>[Lq, Lk] random biases with some -inf entries, shared by batch and heads.</summary>
        Bias2d,
        /// <summary>[B, 1, Lq, Lk] random biases; query row 2 of the last batch is entirely -inf (a fully masked row).</summary>
        PerBatchWithHiddenRow,
        /// <summary>[B, H, Lq, 1]: one bias per row (stride 0 along the keys); row 1 of head 0 is -inf.</summary>
        PerRow,
    }

    /// <summary>The mask's elements and where [b, h, i, j] sits in them.</summary>
    public static (float[] Data, AttentionMaskOperand Operand) Make(Kind kind, int b, int h, int lq, int lk, Generator g)
    {
        float Bias(int i, int j) => (i + 2 * j) % 5 == 0 ? float.NegativeInfinity : (float)g.NextNormal();
        switch (kind)
        {
            case Kind.KeyPadding:
                return (Enumerable.Range(0, b * lk).Select(e => e % lk >= lk - 2 - e / lk ? float.NegativeInfinity : 0f).ToArray(), new(0, lk, 0, 0, 1));
            case Kind.Bias2d:
                return (Enumerable.Range(0, lq * lk).Select(e => Bias(e / lk, e % lk)).ToArray(), new(0, 0, 0, lk, 1));
            case Kind.PerBatchWithHiddenRow:
                return (Enumerable.Range(0, b * lq * lk).Select(e => e / (lq * lk) == b - 1 && e / lk % lq == Math.Min(2, lq - 1) ? float.NegativeInfinity : (float)g.NextNormal()).ToArray(),
                    new(0, (long)lq * lk, 0, lk, 1));
            case Kind.PerRow:
                return (Enumerable.Range(0, b * h * lq).Select(e => e % (h * lq) == 1 ? float.NegativeInfinity : (float)g.NextNormal()).ToArray(), new(0, (long)h * lq, lq, 1, 0));
            default:
                return ([], default);
        }
    }
}

/// <summary>The fused attention kernels against the float64 materialised reference.</summary>
[TestFixture, Category("Kernels")]
public class AttentionTests
{
    public record Case(string Name, int B, int H, int Lq, int Lk, int D, bool Causal, AttentionMasks.Kind Mask, float Dropout, bool Strided, int KvHeads = 0)
    {
        public override string ToString() => Name;
    }

    public static readonly Case[] Cases =
    [
        new("plain", 2, 3, 37, 37, 64, false, AttentionMasks.Kind.None, 0, false),
        new("causal", 1, 2, 70, 70, 64, true, AttentionMasks.Kind.None, 0, false),
        // GPT-small's heads: four diagonal key tiles, on which the P V and dQ products stop at each group's last key.
        new("causal_t256_d64_strided_four_diagonal_tiles", 1, 2, 256, 256, 64, true, AttentionMasks.Kind.None, 0, true),
        new("padding", 2, 2, 20, 33, 32, false, AttentionMasks.Kind.KeyPadding, 0, false),
        new("causal_and_padding", 2, 1, 9, 9, 16, true, AttentionMasks.Kind.KeyPadding, 0, false),
        new("cross_length_causal", 1, 2, 5, 70, 64, true, AttentionMasks.Kind.None, 0, false),
        new("dim_not_multiple_of_16", 1, 2, 19, 23, 24, false, AttentionMasks.Kind.None, 0, false),
        new("dim_1_length_1", 1, 1, 1, 1, 1, false, AttentionMasks.Kind.None, 0, false),
        new("dim_80_two_slices", 1, 1, 8, 130, 80, false, AttentionMasks.Kind.None, 0, false),
        new("dropout", 1, 2, 17, 17, 32, true, AttentionMasks.Kind.None, 0.3f, false),
        new("strided_BLHD_views", 2, 3, 21, 21, 16, true, AttentionMasks.Kind.None, 0, true),
        // Rows 1 KiB apart ([B, L, H, D] with H·D = 256) and more than one narrow tile of keys: V (forward) and K, dK,
        // dV (backward) go through their contiguous copies (Attention.CopiesRows).
        new("strided_rows_1kib_apart_two_key_tiles_causal", 1, 4, 70, 70, 64, true, AttentionMasks.Kind.None, 0, true),
        new("strided_rows_1kib_apart_gqa_padding_dropout", 2, 8, 33, 130, 64, false, AttentionMasks.Kind.KeyPadding, 0.2f, true, 4),
        new("bias_2d_mask_lq_ne_lk_d20", 2, 2, 13, 70, 20, false, AttentionMasks.Kind.Bias2d, 0, false),
        new("bias_2d_mask_causal_two_key_tiles", 1, 2, 67, 67, 16, true, AttentionMasks.Kind.Bias2d, 0, false),
        new("per_batch_mask_with_a_fully_hidden_row", 2, 2, 6, 9, 12, false, AttentionMasks.Kind.PerBatchWithHiddenRow, 0, false),
        new("per_row_mask_key_stride_0", 2, 2, 7, 11, 8, false, AttentionMasks.Kind.PerRow, 0, false),
        new("gqa_4_query_heads_per_kv_head_mask", 2, 8, 11, 75, 24, false, AttentionMasks.Kind.Bias2d, 0, false, 2),
        new("gqa_causal_dropout_strided", 2, 6, 9, 9, 8, true, AttentionMasks.Kind.None, 0.25f, true, 3),
        new("multi_query_one_kv_head_padding", 1, 5, 10, 66, 33, true, AttentionMasks.Kind.KeyPadding, 0, false, 1),
        // The backward pass walks blocks of 64 query rows; these cross two block edges, with a ragged last block.
        new("gqa_causal_bias_three_query_blocks_lq_gt_lk", 1, 4, 150, 140, 16, true, AttentionMasks.Kind.Bias2d, 0, false, 2),
        new("dropout_three_query_blocks", 1, 2, 131, 70, 8, false, AttentionMasks.Kind.None, 0.2f, true),
        // More queries than keys, causal (the diagonal shifted left): in the second block of 64 query rows the first
        // groups see nothing of the second key tile, so the dK/dV products of that tile start at a later row; at the
        // head sizes with register-blocked dK/dV kernels (D 64: four keys at a time, D 32: eight).
        new("causal_lq_gt_lk_d64_rows_start_past_the_block_edge", 1, 2, 140, 100, 64, true, AttentionMasks.Kind.None, 0, false),
        new("causal_lq_gt_lk_d32_dropout_strided", 1, 2, 150, 75, 32, true, AttentionMasks.Kind.None, 0.2f, true),
        // At most Attention.DecodeMaxQueries queries without dropout: the decode kernel (AttentionDecode.cs).
        new("decode_one_query_causal_long_cache", 1, 4, 1, 70, 32, true, AttentionMasks.Kind.None, 0, false),
        new("decode_two_queries_gqa_bias_strided", 2, 4, 2, 37, 24, true, AttentionMasks.Kind.Bias2d, 0, true, 2),
        new("decode_per_row_mask_multi_query", 2, 3, 2, 9, 8, false, AttentionMasks.Kind.PerRow, 0, false, 1),
        new("decode_padding_enough_work_to_split_heads", 2, 8, 1, 300, 64, true, AttentionMasks.Kind.KeyPadding, 0, false),
        new("decode_more_queries_than_keys_first_row_sees_nothing", 1, 2, 2, 1, 16, true, AttentionMasks.Kind.None, 0, false),
        new("decode_with_dropout_takes_the_fused_kernel", 1, 2, 1, 20, 16, true, AttentionMasks.Kind.None, 0.3f, false),
        // PatchTST's shape: d_model 16 over 4 heads (D = 4, the 4-wide slices) and 42 patches (one short key tile).
        new("patchtst_d4_42_patches_strided", 3, 4, 42, 42, 4, false, AttentionMasks.Kind.None, 0, true),
        new("dim_7_short_tile_bias_mask", 2, 2, 10, 30, 7, false, AttentionMasks.Kind.Bias2d, 0, false),
        // At most 16 keys: the narrow tile (Kᵀ packed 16 wide, one zmm of scores per row). iTransformer's shape (7
        // variates, D 32, dropout 0.1) on the vector dropout path of the backward pass, then the narrow tile's edges.
        new("itransformer_7_tokens_dropout_strided", 3, 8, 7, 7, 32, false, AttentionMasks.Kind.None, 0.1f, true),
        new("narrow_16_keys_bias_mask_d20", 2, 3, 9, 16, 20, false, AttentionMasks.Kind.Bias2d, 0, false),
        new("narrow_causal_dropout_padding", 2, 2, 11, 11, 8, true, AttentionMasks.Kind.KeyPadding, 0.3f, false),
        new("seventeen_keys_one_past_the_narrow_tile_dropout", 1, 2, 6, 17, 16, false, AttentionMasks.Kind.None, 0.25f, false),
        // SASRec's shape (n 50, d 50, causal, key padding, dropout 0.5): one short key tile that the causal diagonal
        // crosses for every query group, so the whole backward pass runs the vector path's per-row visible prefix.
        new("sasrec_n50_d50_causal_padding_dropout", 2, 1, 50, 50, 50, true, AttentionMasks.Kind.KeyPadding, 0.5f, false),
    ];

    static float[] Rand(Generator g, int n) { var x = new float[n]; for (int i = 0; i < n; i++) x[i] = (float)g.NextNormal(); return x; }
    static double[] D(float[] x) => x.Select(f => (double)f).ToArray();

    [TestCaseSource(nameof(Cases))]
    public void Forward_and_backward_match_the_float64_reference(Case c)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        int hkv = c.KvHeads == 0 ? c.H : c.KvHeads;
        var shape = new AttentionShape(c.B, c.H, c.Lq, c.Lk, c.D, 1f / MathF.Sqrt(c.D), c.Causal, c.Dropout, seed, c.KvHeads);
        // Strided: the tensors are [B, L, H, D] in memory and read as [B, H, L, D] views.
        AttentionOperand Op(int heads, int l) => c.Strided ? new AttentionOperand(0, (long)l * heads * c.D, c.D, (long)heads * c.D) : AttentionOperand.Contiguous(heads, l, c.D);
        var qo = Op(c.H, c.Lq); var ko = Op(hkv, c.Lk); var oo = Op(c.H, c.Lq);
        var q = Rand(g, c.B * c.H * c.Lq * c.D); var k = Rand(g, c.B * hkv * c.Lk * c.D); var v = Rand(g, c.B * hkv * c.Lk * c.D);
        var dO = Rand(g, q.Length);
        var (mask, mo) = AttentionMasks.Make(c.Mask, c.B, c.H, c.Lq, c.Lk, g);
        var o = new float[q.Length]; var lse = new float[c.B * c.H * c.Lq];
        Attention.Forward(shape, q, qo, k, ko, v, ko, o, oo, lse, mask, mo);

        var ro = new double[q.Length]; var rl = new double[lse.Length];
        AttentionReference.Forward(shape, D(q), qo, D(k), ko, D(v), ko, ro, oo, rl, D(mask), mo);
        for (int i = 0; i < o.Length; i++) Assert.That(o[i], Is.EqualTo(ro[i]).Within(2e-5 + 2e-5 * Math.Abs(ro[i])), $"O[{i}] {c.Name} seed={seed}");
        for (int i = 0; i < lse.Length; i++)
            if (double.IsNegativeInfinity(rl[i])) Assert.That(lse[i], Is.EqualTo(float.NegativeInfinity));
            else Assert.That(lse[i], Is.EqualTo(rl[i]).Within(2e-5 * (1 + Math.Abs(rl[i]))), $"lse[{i}] {c.Name} seed={seed}");

        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        Attention.Backward(shape, q, qo, k, ko, v, ko, o, oo, dO, oo, lse, mask, mo, dq, qo, dk, ko, dv, ko);
        var rdq = new double[q.Length]; var rdk = new double[k.Length]; var rdv = new double[v.Length];
        AttentionReference.Backward(shape, D(q), qo, D(k), ko, D(v), ko, D(dO), oo, D(mask), mo, rdq, qo, rdk, ko, rdv, ko);
        void Same(float[] got, double[] want, string name)
        {
            double scale = want.Select(Math.Abs).DefaultIfEmpty(0).Max();
            for (int i = 0; i < got.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4 * (1 + scale)), $"{name}[{i}] {c.Name} seed={seed}");
        }
        Same(dq, rdq, "dQ"); Same(dk, rdk, "dK"); Same(dv, rdv, "dV");
    }

    /// <summary>
    /// The forward's lazy rescaling: a row's exps are taken against a shift that moves only when a score passes it by
    /// more than 8. Scores that climb by 3, by 12 and by 30 per key tile (keys scaled by the tile index, a query along
    /// them), with a tile that falls back, a masked first tile and causal rows, must give the float64 reference's O and
    /// lse: the first climb stays under the slack (probabilities above 1 before normalisation), the others rescale.
    /// </summary>
    [TestCase(3.0), TestCase(12.0), TestCase(30.0)]
    public void Scores_that_climb_across_key_tiles_match_the_reference(double climbPerTile)
    {
        const int lq = 9, lk = 260, d = 16;
        var g = new Generator(7);
        var q = new float[lq * d]; var k = new float[lk * d]; var v = Rand(g, lk * d);
        for (int i = 0; i < lq; i++) for (int c = 0; c < d; c++) q[i * d + c] = 1f / d + 0.01f * (float)g.NextNormal();
        for (int j = 0; j < lk; j++)
        {
            // Tile t = j / 64 scores about climb·t (tile 3 falls back to tile 1's level), plus noise of 1.
            int t = j / 64, level = t == 3 ? 1 : t;
            for (int c = 0; c < d; c++) k[j * d + c] = (float)(climbPerTile * level + g.NextNormal());
        }
        var mask = new float[lq * lk];
        for (int i = 0; i < lq; i++) for (int j = 0; j < 64; j++) mask[i * lk + j] = i % 2 == 0 ? float.NegativeInfinity : 0;
        var mo = new AttentionMaskOperand(0, 0, 0, lk, 1);
        // Unmasked, the full tiles clear of the diagonal take the fused scores-and-softmax path (ScoresSoftmax).
        foreach (bool masked in new[] { true, false })
        foreach (bool causal in new[] { false, true })
        {
            var shape = new AttentionShape(1, 1, lq, lk, d, 1.0, causal);
            var (qo, ko) = (AttentionOperand.Contiguous(1, lq, d), AttentionOperand.Contiguous(1, lk, d));
            var o = new float[lq * d]; var lse = new float[lq];
            float[] m = masked ? mask : [];
            var mop = masked ? mo : default;
            Attention.Forward(shape, q, qo, k, ko, v, ko, o, qo, lse, m, mop);
            var ro = new double[o.Length]; var rl = new double[lq];
            AttentionReference.Forward(shape, D(q), qo, D(k), ko, D(v), ko, ro, qo, rl, D(m), mop);
            string where = $"climb {climbPerTile} causal {causal} masked {masked}";
            for (int i = 0; i < o.Length; i++) Assert.That(o[i], Is.EqualTo(ro[i]).Within(2e-5 + 2e-5 * Math.Abs(ro[i])), $"O[{i}] {where}");
            for (int i = 0; i < lq; i++) Assert.That(lse[i], Is.EqualTo(rl[i]).Within(2e-5 * (1 + Math.Abs(rl[i]))), $"lse[{i}] {where}");
        }
    }

    [Test]
    public void Fully_masked_rows_give_zero_output_and_zero_gradients_not_nan()
    {
        // Query 0 sees keys 0 and 2; query 1 sees nothing (every entry of its mask row is -inf).
        var shape = new AttentionShape(1, 1, 2, 3, 4, 0.5f, false);
        var g = new Generator(3);
        var q = Rand(g, 8); var k = Rand(g, 12); var v = Rand(g, 12); var dO = Rand(g, 8);
        float ninf = float.NegativeInfinity;
        float[] mask = [0, ninf, 0, ninf, ninf, ninf];
        var mo = new AttentionMaskOperand(0, 0, 0, 3, 1);
        var (qo, ko) = (AttentionOperand.Contiguous(1, 2, 4), AttentionOperand.Contiguous(1, 3, 4));
        var o = new float[8]; var lse = new float[2];
        Attention.Forward(shape, q, qo, k, ko, v, ko, o, qo, lse, mask, mo);
        Assert.That(o.Skip(4), Is.All.EqualTo(0f));
        Assert.That(lse[1], Is.EqualTo(float.NegativeInfinity));
        Assert.That(o.Take(4), Is.All.Not.EqualTo(0f));
        var dq = new float[8]; var dk = new float[12]; var dv = new float[12];
        Attention.Backward(shape, q, qo, k, ko, v, ko, o, qo, dO, qo, lse, mask, mo, dq, qo, dk, ko, dv, ko);
        Assert.That(dq.Skip(4), Is.All.EqualTo(0f), "the hidden query gets no gradient");
        Assert.That(dk.Skip(4).Take(4).Concat(dv.Skip(4).Take(4)), Is.All.EqualTo(0f), "key 1 is hidden from every query: no gradient");
        Assert.That(dq.Concat(dk).Concat(dv), Has.None.NaN);
    }

    [Test]
    public void A_shape_survives_the_integers_an_autograd_node_keeps()
    {
        var shape = new AttentionShape(3, 8, 5, 7, 24, 0.3, true, 0.1f, 0xFEDCBA9876543210UL, 2);
        Assert.That(AttentionShape.FromInts(shape.ToInts()), Is.EqualTo(shape));
    }

    [Test]
    public void Bad_shapes_are_reported_with_the_sizes()
    {
        var shape = new AttentionShape(1, 1, 4, 4, 8, 1, false);
        var op = AttentionOperand.Contiguous(1, 4, 8);
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(shape, new float[10], op, new float[32], op, new float[32], op, new float[32], op, new float[4]));
        Assert.That(ex!.Message, Does.Contain("Attention.Forward").And.Contain("q (10 elements"));

        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(shape with { Heads = 3, KvHeads = 2 }, new float[96], AttentionOperand.Contiguous(3, 4, 8), new float[64],
            AttentionOperand.Contiguous(2, 4, 8), new float[64], AttentionOperand.Contiguous(2, 4, 8), new float[96], AttentionOperand.Contiguous(3, 4, 8), new float[12]));
        Assert.That(ex!.Message, Does.Contain("3 query heads are not a multiple of 2 key/value heads"));

        // A [4, 4] mask read as if it were [4, 5] per row runs past its end.
        ex = Assert.Throws<ArgumentException>(() => Attention.Forward(shape, new float[32], op, new float[32], op, new float[32], op, new float[32], op, new float[4],
            new float[16], new AttentionMaskOperand(0, 0, 0, 5, 1)));
        Assert.That(ex!.Message, Does.Contain("mask (16 elements").And.Contain("q=5").And.Contain("[1,1,4,4]"));
    }
}
