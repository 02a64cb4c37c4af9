using System.Globalization;
using AttnCore.Models.Nn;

namespace AttnCore.Models.Reinforcement;

/// <summary>
/// A causal Transformer over the last K observations with actor and critic heads (the memory-policy design of
/// e.g. Parisotto et al. 2020 "Stabilizing Transformers for RL" and CleanRL's ppo_trxl, without the recurrence).
/// Shapes through Forward:
/// <code>
/// windows [B, K, obs] → embed (Linear obs→D) + learned position [K, D] → L × pre-norm block
///   (h += CausalSelfAttention(LN(h), key padding mask); h += FeedForward(LN(h)))
/// → LN → the last position [B, D] → actor Linear(D, A), critic Linear(D, 1)
/// </code>
/// Attention runs through the fused kernel (<see cref="Tensor.PackedSelfAttention"/>) with causal masking and a
/// key-padding mask that hides the positions before the episode's first step, so a decision never attends to the
/// previous episode. The embedding is orthogonal with gain √2 and the heads with 0.01 (actor) and 1 (critic), as
/// PPO's MLP; the blocks keep the Transformer's default initialisation.
/// </summary>
public sealed class TransformerActorCritic : ActorCritic
{
    private readonly Linear _embed, _actor, _critic;
    private readonly LearnedPositionalEncoding _position;
    private readonly ModuleList<CausalBlock> _blocks;
    private readonly LayerNorm _norm;

    /// <summary>A policy over windows of <paramref name="context"/> observations, <paramref name="layers"/> blocks of width <paramref name="dim"/>.</summary>
    public TransformerActorCritic(int observationSize, int actionCount, int context, Generator generator, int dim = 64, int heads = 4, int layers = 1, Device? device = null)
    {
        if (observationSize <= 0 || actionCount <= 0 || context <= 0 || dim <= 0 || layers <= 0 || heads <= 0 || dim % heads != 0)
            throw new ArgumentException($"TransformerActorCritic: observation size {observationSize}, actions {actionCount}, context {context}, layers {layers} must be positive and dim {dim} a positive multiple of heads {heads}");
        (ObservationSize, ActionCount, Context, Dim, Heads, Layers) = (observationSize, actionCount, context, dim, heads, layers);
        _embed = Child("embed", new Linear(observationSize, dim, true, generator, device));
        OrthogonalInit.Apply(_embed, Math.Sqrt(2), generator);
        _position = Child("position", new LearnedPositionalEncoding(dim, context, generator, device));
        _blocks = Child("blocks", new ModuleList<CausalBlock>(Enumerable.Range(0, layers).Select(_ => new CausalBlock(dim, heads, generator, device))));
        _norm = Child("norm", new LayerNorm(dim, device: device));
        _actor = Child("actor", new Linear(dim, actionCount, true, generator, device));
        _critic = Child("critic", new Linear(dim, 1, true, generator, device));
        OrthogonalInit.Apply(_actor, 0.01, generator);
        OrthogonalInit.Apply(_critic, 1.0, generator);
    }

    /// <summary>Model width.</summary>
    public int Dim { get; }
    /// <summary>Attention heads per block.</summary>
    public int Heads { get; }
    /// <summary>Number of blocks.</summary>
    public int Layers { get; }
    /// <inheritdoc/>
    public override int ObservationSize { get; }
    /// <inheritdoc/>
    public override int ActionCount { get; }
    /// <inheritdoc/>
    public override int Context { get; }
    /// <inheritdoc/>
    public override string Kind => "transformer";

    /// <summary>The self-attention of block <paramref name="layer"/> (set KeepWeights to read its attention weights).</summary>
    public MultiHeadAttention Attention(int layer) => _blocks[layer].Attention;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>
    {
        ["observations"] = ObservationSize.ToString(CultureInfo.InvariantCulture),
        ["actions"] = ActionCount.ToString(CultureInfo.InvariantCulture),
        ["context"] = Context.ToString(CultureInfo.InvariantCulture),
        ["dim"] = Dim.ToString(CultureInfo.InvariantCulture),
        ["heads"] = Heads.ToString(CultureInfo.InvariantCulture),
        ["layers"] = Layers.ToString(CultureInfo.InvariantCulture),
    };

    /// <inheritdoc/>
    public override (Tensor Logits, Tensor Values) Forward(Tensor windows, Tensor? paddingMask)
    {
        CheckInput(windows, paddingMask);
        using var scope = new TensorScope();
        var h = _position.Forward(_embed.Forward(windows));
        for (int i = 0; i < Layers - 1; i++) h = _blocks[i].Forward(h, paddingMask);
        var top = _blocks[Layers - 1];
        // Only the last position reaches the heads, so the top block runs its query, projection and feed-forward
        // for that position alone; the full block is kept for reading the attention weights of every query.
        var lastHidden = top.Attention.KeepWeights ? top.Forward(h, paddingMask).Select(1, Context - 1) : top.ForwardLast(h, paddingMask);
        var last = _norm.Forward(lastHidden);
        var logits = _actor.Forward(last);
        var v = _critic.Forward(last);
        return (scope.Keep(logits), scope.Keep(v.Reshape(v.Size(0))));
    }

    /// <summary>A pre-norm block with causal self-attention and a GELU feed-forward of width 4D.</summary>
    internal sealed class CausalBlock : Module
    {
        private readonly LayerNorm _ln1, _ln2;
        private readonly FeedForward _ff;

        public CausalBlock(int dim, int heads, Generator g, Device? device)
        {
            _ln1 = Child("ln1", new LayerNorm(dim, device: device));
            Attention = Child("attn", new MultiHeadAttention(dim, heads, false, 0, true, g, device));
            _ln2 = Child("ln2", new LayerNorm(dim, device: device));
            _ff = Child("ff", new FeedForward(dim, 4 * dim, 0, generator: g, device: device));
        }

        public MultiHeadAttention Attention { get; }

        private Linear AttentionLinear(string name) => (Linear)Attention.NamedChildren().Single(c => c.Name == name).Module;

        /// <summary>
        /// The block's output at the last position only, [B, D]: keys and values from every position, the query
        /// from the last one. The last query sees every key, so the causal mask changes nothing and only the key
        /// padding applies; equal to <c>Forward(x, paddingMask)[:, K-1]</c> with a sixteenth of the projection,
        /// feed-forward and attention work for K = 16.
        /// </summary>
        public Tensor ForwardLast(Tensor x, Tensor? paddingMask)
        {
            using var scope = new TensorScope();
            int b = x.Size(0), k = x.Size(1), dim = Attention.Dim, heads = Attention.Heads, headDim = dim / heads;
            var qkv = AttentionLinear("qkv").Forward(_ln1.Forward(x));
            var q = qkv.Narrow(1, k - 1, 1).Narrow(-1, 0, dim).Reshape(b, 1, heads, headDim).Transpose(1, 2);
            var keys = qkv.Narrow(-1, dim, dim).Reshape(b, k, heads, headDim).Transpose(1, 2);
            var values = qkv.Narrow(-1, 2 * dim, dim).Reshape(b, k, heads, headDim).Transpose(1, 2);
            var attended = Tensor.ScaledDotProductAttention(q, keys, values, paddingMask).Reshape(b, dim);
            var h = x.Select(1, k - 1) + AttentionLinear("proj").Forward(attended);
            return scope.Keep(h + _ff.Forward(_ln2.Forward(h)));
        }

        public Tensor Forward(Tensor x, Tensor? paddingMask)
        {
            using var scope = new TensorScope();
            var (h, n2) = _ln2.Forward(x, Attention.Forward(_ln1.Forward(x), null, paddingMask, causal: true));
            return scope.Keep(h + _ff.Forward(n2));
        }
    }
}
