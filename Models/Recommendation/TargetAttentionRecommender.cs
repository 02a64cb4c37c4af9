using AttnCore.Models.Nn;

namespace AttnCore.Models.Recommendation;

/// <summary>
/// Target attention in the manner of DIN (Zhou et al. 2018, "Deep Interest Network for Click-Through Rate
/// Prediction") on top of SASRec's self-attentive encoder, as the survey describes recommendation with attention:
/// self-attention over the history gives the user's interest state F_t, and the candidate item attends over that
/// history, so each candidate picks the past items relevant to it:
/// <code>
///   F, padding = Encode(history)                                  [B, n, d]  (the SASRec encoder)
///   a_t(i) = softmax(LN(M_i) W_q (F W_k)ᵀ / sqrt(d) + mask) F W_v W_o     the candidate queries the history
///   u_t(i) = F_t + dropout(a_t(i))                                 self-attention state plus the target's interest
///   r_{i,t} = u_t(i) · M_i                                         scored with the shared embedding
/// </code>
/// Training scores each position's next item and one negative with the causal mask (the candidate at position t
/// sees the history up to t); ranking uses the last state, every candidate attending over the whole history under
/// the key-padding mask. Both attentions go through the fused kernel. The same loss as <see cref="SasRec"/>.
/// </summary>
public sealed class TargetAttentionRecommender : SelfAttentiveRecommender
{
    private readonly LayerNorm _targetLn;
    private readonly MultiHeadAttention _targetAttn;
    private readonly Dropout _targetDrop;

    /// <summary>A model of the given sizes, initialised as SASRec (the target attention like its blocks' attention).</summary>
    public TargetAttentionRecommender(SasRecConfig config, Generator? generator = null, Device? device = null) : base(config, generator, device)
    {
        _targetLn = Child("target_ln", new LayerNorm(config.Dim, 1e-8, device: device));
        _targetAttn = Child("target_attn", new MultiHeadAttention(config.Dim, config.Heads, crossAttention: true, config.Dropout, bias: true, Generator, device));
        _targetDrop = Child("target_drop", new Dropout(config.Dropout, Generator));
        InitialiseAsAuthors();
    }

    /// <inheritdoc/>
    public override string Name => "target-attention";

    /// <summary>How many candidates one target-attention call scores at most (bounds the [B, C, d] query tensor of full ranking).</summary>
    public const int CandidateChunk = 2048;

    // r [B, C] for candidate embeddings e [B, C, d] against states state [B, C, d] (or broadcastable) and history F.
    private Tensor Relevance(Tensor features, Tensor padding, Tensor state, Tensor candidates, bool causal)
    {
        using var scope = new TensorScope();
        var e = Embed(candidates);
        var interest = _targetAttn.Forward(_targetLn.Forward(e), memory: features, keyPaddingMask: padding, causal: causal);
        var u = state + _targetDrop.Forward(interest);
        return scope.Keep((u * e).Sum(-1));
    }

    /// <inheritdoc/>
    public override Tensor Loss(Tensor history, Tensor positives, Tensor negatives)
    {
        using var scope = new TensorScope();
        var (f, padding) = Encode(history);
        var pos = Relevance(f, padding, f, positives, causal: true);
        var neg = Relevance(f, padding, f, negatives, causal: true);
        return scope.Keep(SampledBinaryLoss(pos, neg, positives));
    }

    /// <inheritdoc/>
    public override Tensor Score(Tensor history, Tensor candidates)
    {
        if (candidates.Rank != 2 || candidates.Size(0) != history.Size(0))
            throw new ArgumentException($"{Name}.Score: candidates must be [B, C] with B = {history.Size(0)} as the history, got [{string.Join(",", candidates.Shape)}]");
        using var scope = new TensorScope();
        var (f, padding) = Encode(history);
        var last = f.Select(1, f.Size(1) - 1).Unsqueeze(1);
        return scope.Keep(Relevance(f, padding, last, candidates, causal: false));
    }

    /// <inheritdoc/>
    public override Tensor ScoreAll(Tensor history)
    {
        using var scope = new TensorScope();
        var (f, padding) = Encode(history);
        var last = f.Select(1, f.Size(1) - 1).Unsqueeze(1);
        int b = history.Size(0), n = ItemCount + 1;
        var chunks = new List<Tensor>();
        for (int start = 0; start < n; start += CandidateChunk)
        {
            int len = Math.Min(CandidateChunk, n - start);
            var ids = Tensor.Arange(start, start + len, 1, DType.Int64, history.Device).Unsqueeze(0).Expand(b, len).Contiguous();
            chunks.Add(Relevance(f, padding, last, ids, causal: false));
        }
        return scope.Keep(Tensor.Cat([.. chunks], 1));
    }
}
