"""PyTorch side of `attncore bench sasrec-step --vs torch`: one Adam step (lr 1e-3, betas 0.9/0.98) of SASRec as its
authors' PyTorch code builds it (pmixer/SASRec.pytorch model.py: item and position embeddings, blocks of layer norm,
nn.MultiheadAttention with the causal mask, point-wise Conv1d feed-forward, timeline mask, last layer norm), with the
BCE-with-logits loss over the non-padded positions, on the batch the C# side sends. The authors' attention has no
key-padding mask (nn.MultiheadAttention gives NaN to a query that sees no key), so this side runs without one; AttnCore
also hides padded keys, which costs it nothing extra in the fused kernel. Dropout is on, as in training.
"""
import torch
import torch.nn as nn


class PointWiseFeedForward(nn.Module):
    def __init__(self, d, p):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(d, d, 1), nn.Conv1d(d, d, 1)
        self.dropout1, self.dropout2, self.relu = nn.Dropout(p), nn.Dropout(p), nn.ReLU()

    def forward(self, x):
        out = self.dropout2(self.conv2(self.relu(self.dropout1(self.conv1(x.transpose(-1, -2))))))
        return out.transpose(-1, -2) + x


class SASRec(nn.Module):
    def __init__(self, items, maxlen, d, blocks, heads, p):
        super().__init__()
        self.item_emb = nn.Embedding(items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, d)
        self.emb_dropout = nn.Dropout(p)
        self.attention_layernorms = nn.ModuleList([nn.LayerNorm(d, eps=1e-8) for _ in range(blocks)])
        self.attention_layers = nn.ModuleList([nn.MultiheadAttention(d, heads, p) for _ in range(blocks)])
        self.forward_layernorms = nn.ModuleList([nn.LayerNorm(d, eps=1e-8) for _ in range(blocks)])
        self.forward_layers = nn.ModuleList([PointWiseFeedForward(d, p) for _ in range(blocks)])
        self.last_layernorm = nn.LayerNorm(d, eps=1e-8)
        for _, w in self.named_parameters():
            try:
                nn.init.xavier_normal_(w.data)
            except ValueError:
                pass

    def log2feats(self, log_seqs):
        seqs = self.item_emb(log_seqs) * self.item_emb.embedding_dim ** 0.5
        seqs = seqs + self.pos_emb(torch.arange(log_seqs.shape[1]).unsqueeze(0).expand_as(log_seqs))
        seqs = self.emb_dropout(seqs)
        keep = (log_seqs != 0).unsqueeze(-1)
        seqs = seqs * keep
        tl = seqs.shape[1]
        causal = ~torch.tril(torch.ones((tl, tl), dtype=torch.bool))
        for i in range(len(self.attention_layers)):
            seqs = seqs.transpose(0, 1)
            q = self.attention_layernorms[i](seqs)
            out, _ = self.attention_layers[i](q, seqs, seqs, attn_mask=causal, need_weights=False)
            seqs = (q + out).transpose(0, 1)
            seqs = self.forward_layers[i](self.forward_layernorms[i](seqs)) * keep
        return self.last_layernorm(seqs)

    def forward(self, log_seqs, pos_seqs, neg_seqs):
        feats = self.log2feats(log_seqs)
        return (feats * self.item_emb(pos_seqs)).sum(-1), (feats * self.item_emb(neg_seqs)).sum(-1)


def make_step(c):
    b, t = c["batch"], c["max_len"]
    model = SASRec(c["items"], t, c["dim"], c["blocks"], c["heads"], c["dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    history = torch.tensor(c["history"]).view(b, t)
    positives = torch.tensor(c["positives"]).view(b, t)
    negatives = torch.tensor(c["negatives"]).view(b, t)
    counted = positives != 0
    bce = nn.BCEWithLogitsLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        pos, neg = model(history, positives, negatives)
        loss = bce(pos[counted], torch.ones_like(pos[counted])) + bce(neg[counted], torch.zeros_like(neg[counted]))
        loss.backward()
        opt.step()
    return step
