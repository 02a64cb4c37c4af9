#!/usr/bin/python3
"""Reference values for Tests/Models/SasRecTests.cs: SASRec's forward logits, loss, ranking scores and every
parameter gradient, from one set of weights, in float64.

The model is the SASRec authors' PyTorch code (pmixer/SASRec.pytorch, model.py: log2feats, forward, predict) with
dropout off and two differences AttnCore's version has on purpose: the attention also hides padded keys
(key_padding_mask), and a query that sees no key at all (a padded position, under the causal mask) gets a zero
attention output where nn.MultiheadAttention gives NaN. The attention is therefore written out (in_proj, scaled
scores, masks, softmax, out_proj); the script asserts that it equals nn.MultiheadAttention on every query that sees
a key. The loss is the authors': BCE with logits of the positive (label 1) and negative (label 0) logits at the
non-padded positions, each averaged over those positions, summed.

Weights: the authors' initialisation (Xavier normal on every matrix, zero in_proj/out_proj bias), with the layer
norms' scale and shift then randomised so that their gradients are not trivial; rounded to float32, the values
AttnCore loads. Names in the JSON are AttnCore's (attn.q / attn.kv split the in_proj rows; conv1/conv2 are the
kernel-1 Conv1d weights without their last dim).

Run: /usr/bin/python3 Tests/Fixtures/make_sasrec.py   (Debian's python3-torch, 1.13). Writes sasrec.json.
"""
import json, math, os
import torch
import torch.nn as nn

torch.manual_seed(20261202)
torch.set_default_dtype(torch.float64)
ITEMS, T, D, BLOCKS, HEADS = 20, 6, 8, 2, 2


class PointWiseFeedForward(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.conv1 = nn.Conv1d(d, d, kernel_size=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(d, d, kernel_size=1)

    def forward(self, x):
        out = self.conv2(self.relu(self.conv1(x.transpose(-1, -2)))).transpose(-1, -2)
        return out + x


def attention(mha, q_in, kv_in, causal_hidden, padding_hidden):
    # q_in, kv_in [B, T, D]; hidden: True = masked. nn.MultiheadAttention's computation, fully masked rows -> 0.
    b, t, d = q_in.shape
    h, dh = mha.num_heads, d // mha.num_heads
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    q = (q_in @ w[:d].T + bias[:d]).view(b, t, h, dh).transpose(1, 2)
    k = (kv_in @ w[d:2 * d].T + bias[d:2 * d]).view(b, t, h, dh).transpose(1, 2)
    v = (kv_in @ w[2 * d:].T + bias[2 * d:]).view(b, t, h, dh).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(dh)
    hidden = causal_hidden.view(1, 1, t, t) | padding_hidden.view(b, 1, 1, t)
    s = s.masked_fill(hidden, float("-inf"))
    p = torch.softmax(s, -1)
    p = torch.where(hidden.all(-1, keepdim=True), torch.zeros_like(p), p)
    o = (p @ v).transpose(1, 2).reshape(b, t, d)
    return mha.out_proj(o), hidden.all(-1)[:, 0, :]


class SASRec(nn.Module):
    def __init__(self):
        super().__init__()
        self.item_emb = nn.Embedding(ITEMS + 1, D, padding_idx=0)
        self.pos_emb = nn.Embedding(T, D)
        self.attention_layernorms = nn.ModuleList([nn.LayerNorm(D, eps=1e-8) for _ in range(BLOCKS)])
        self.attention_layers = nn.ModuleList([nn.MultiheadAttention(D, HEADS, dropout=0.0) for _ in range(BLOCKS)])
        self.forward_layernorms = nn.ModuleList([nn.LayerNorm(D, eps=1e-8) for _ in range(BLOCKS)])
        self.forward_layers = nn.ModuleList([PointWiseFeedForward(D) for _ in range(BLOCKS)])
        self.last_layernorm = nn.LayerNorm(D, eps=1e-8)

    def log2feats(self, log_seqs):
        seqs = self.item_emb(log_seqs) * self.item_emb.embedding_dim ** 0.5
        positions = torch.arange(log_seqs.shape[1]).unsqueeze(0).expand_as(log_seqs)
        seqs = seqs + self.pos_emb(positions)
        timeline_mask = log_seqs == 0
        seqs = seqs * ~timeline_mask.unsqueeze(-1)
        tl = seqs.shape[1]
        causal = ~torch.tril(torch.ones((tl, tl), dtype=torch.bool))
        for i in range(len(self.attention_layers)):
            Q = self.attention_layernorms[i](seqs)
            mha_outputs, blind = attention(self.attention_layers[i], Q, seqs, causal, timeline_mask)
            # the written-out attention is nn.MultiheadAttention wherever a query sees a key
            ref, _ = self.attention_layers[i](Q.transpose(0, 1), seqs.transpose(0, 1), seqs.transpose(0, 1),
                                              attn_mask=causal, key_padding_mask=timeline_mask)
            ref = ref.transpose(0, 1)
            assert torch.allclose(mha_outputs[~blind], ref[~blind], atol=1e-12), "manual attention != nn.MultiheadAttention"
            seqs = Q + mha_outputs
            seqs = self.forward_layernorms[i](seqs)
            seqs = self.forward_layers[i](seqs)
            seqs = seqs * ~timeline_mask.unsqueeze(-1)
        return self.last_layernorm(seqs)

    def forward(self, log_seqs, pos_seqs, neg_seqs):
        feats = self.log2feats(log_seqs)
        pos_logits = (feats * self.item_emb(pos_seqs)).sum(dim=-1)
        neg_logits = (feats * self.item_emb(neg_seqs)).sum(dim=-1)
        return pos_logits, neg_logits

    def predict(self, log_seqs, item_indices):
        final = self.log2feats(log_seqs)[:, -1, :]
        return self.item_emb(item_indices) @ final.unsqueeze(-1)


model = SASRec()
for name, p in model.named_parameters():
    try:
        nn.init.xavier_normal_(p.data)      # the authors' loop; 1-d tensors raise and keep their default
    except ValueError:
        pass
with torch.no_grad():
    for layer in model.attention_layers:
        layer.in_proj_bias.zero_()
        layer.out_proj.bias.zero_()
    for ln in list(model.attention_layernorms) + list(model.forward_layernorms) + [model.last_layernorm]:
        ln.weight.copy_(1 + 0.3 * torch.randn(D))
        ln.bias.copy_(0.2 * torch.randn(D))
    for p in model.parameters():
        p.copy_(p.to(torch.float32).to(torch.float64))

# rows: no padding, two padded positions, one item only
history = torch.tensor([[3, 7, 1, 9, 12, 5], [0, 0, 4, 4, 18, 2], [0, 0, 0, 0, 0, 11]])
positives = torch.tensor([[7, 1, 9, 12, 5, 8], [0, 0, 4, 18, 2, 20], [0, 0, 0, 0, 0, 6]])
negatives = torch.tensor([[2, 2, 15, 3, 1, 17], [0, 0, 13, 6, 9, 1], [0, 0, 0, 0, 0, 14]])
candidates = torch.tensor([[8, 1, 2, 20], [20, 3, 4, 5], [6, 11, 19, 10]])

pos_logits, neg_logits = model(history, positives, negatives)
indices = positives != 0
bce = nn.BCEWithLogitsLoss()
loss = bce(pos_logits[indices], torch.ones_like(pos_logits[indices])) + bce(neg_logits[indices], torch.zeros_like(neg_logits[indices]))
loss.backward()
with torch.no_grad():
    scores = model.predict(history, candidates).squeeze(-1)


def ours(name):
    """AttnCore's names and layouts for each PyTorch parameter: (name, tensor) pairs."""
    p = dict(model.named_parameters())[name]
    parts = name.split(".")
    if name.startswith("attention_layers."):
        i = parts[1]
        if parts[2] == "in_proj_weight":
            return [(f"blocks.{i}.attn.q.weight", p[:D]), (f"blocks.{i}.attn.kv.weight", p[D:])]
        if parts[2] == "in_proj_bias":
            return [(f"blocks.{i}.attn.q.bias", p[:D]), (f"blocks.{i}.attn.kv.bias", p[D:])]
        return [(f"blocks.{i}.attn.proj.{parts[-1]}", p)]
    if name.startswith("attention_layernorms."):
        return [(f"blocks.{parts[1]}.attn_ln.{parts[-1]}", p)]
    if name.startswith("forward_layernorms."):
        return [(f"blocks.{parts[1]}.ffn_ln.{parts[-1]}", p)]
    if name.startswith("forward_layers."):
        return [(f"blocks.{parts[1]}.{parts[2]}.{parts[-1]}", p.squeeze(-1) if p.dim() == 3 else p)]
    if name.startswith("last_layernorm."):
        return [(f"last_ln.{parts[-1]}", p)]
    return [(name, p)]


weights, grads = {}, {}
for name, p in model.named_parameters():
    for our_name, view in ours(name):
        weights[our_name] = {"shape": list(view.shape), "data": view.detach().flatten().tolist()}
    # the gradient is split and reshaped as its weight
    splits = ours(name)
    g = p.grad.squeeze(-1) if p.grad.dim() == 3 else p.grad
    if len(splits) == 2:
        grads[splits[0][0]] = g[:D].flatten().tolist()
        grads[splits[1][0]] = g[D:].flatten().tolist()
    else:
        grads[splits[0][0]] = g.flatten().tolist()

out = {
    "config": {"items": ITEMS, "max_length": T, "dim": D, "blocks": BLOCKS, "heads": HEADS},
    "tolerance": "float32 AttnCore vs float64 PyTorch: |ours - torch| <= 1e-4 * max|torch| of the tensor + 1e-3 * |torch|",
    "weights": weights,
    "history": history.flatten().tolist(), "positives": positives.flatten().tolist(),
    "negatives": negatives.flatten().tolist(), "candidates": candidates.flatten().tolist(),
    "pos_logits": pos_logits.detach().flatten().tolist(), "neg_logits": neg_logits.detach().flatten().tolist(),
    "loss": loss.item(), "scores": scores.flatten().tolist(), "grads": grads,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sasrec.json")
with open(path, "w") as f:
    json.dump(out, f)
print(f"wrote {path}: loss {loss.item():.6f}, {len(weights)} tensors")
