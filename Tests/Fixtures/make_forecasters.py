#!/usr/bin/python3
"""Reference values for Tests/Models/ForecasterFixtureTests.cs.

DLinear (shared and individual), PatchTST (supervised, res_attention=False) and iTransformer at tiny sizes, written
here in PyTorch after the papers' code (LTSF-Linear models/DLinear.py; PatchTST_supervised layers/PatchTST_backbone.py,
PatchTST_layers.py, RevIN.py; iTransformer model/iTransformer.py, layers/Transformer_EncDec.py, SelfAttention_Family.py,
Embed.py). Weights come from a closed-form formula, so no random generator has to agree between PyTorch and AttnCore.
Each model runs in training mode with dropout 0 (BatchNorm then uses the batch statistics), on a fixed input x
[B, L, C]; the loss is mean((y - target)^2). The JSON holds, per model, every parameter under AttnCore's name (PatchTST's
separate W_Q, W_K, W_V are stacked into AttnCore's fused qkv, rows q, k, v; DLinear's per-channel ModuleLists are
stacked), the output y and the gradient of the loss for every parameter.

Run: /usr/bin/python3 Tests/Fixtures/make_forecasters.py   (Debian's python3-torch 1.13)
"""
import json, math, os
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
B, L, C, H = 3, 24, 3, 6


def formula(k, shape, scale, add=0.0):
    n = math.prod(shape)
    vals = [math.sin(0.37 * i + 1.3 * k) * scale + add for i in range(n)]
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


x = torch.tensor([[[math.sin(0.3 * t + 0.7 * c + 1.1 * b) * (1 + 0.1 * c) + 0.05 * t + b
                    for c in range(C)] for t in range(L)] for b in range(B)], dtype=torch.float32)
target = torch.tensor([[[math.cos(0.25 * t + 0.5 * c + 0.9 * b) for c in range(C)] for t in range(H)] for b in range(B)],
                      dtype=torch.float32)


def fill(module, scale=0.3):
    """Sets every parameter of module from the formula, in named_parameters order (gains near 1)."""
    with torch.no_grad():
        for k, (name, p) in enumerate(module.named_parameters()):
            if name.endswith("norm_attn.1.weight") or name.endswith("norm_ffn.1.weight") or name.endswith("norm1.weight") \
                    or name.endswith("norm2.weight") or name == "norm.weight" or name.endswith("affine_weight"):
                p.copy_(formula(k + 1, list(p.shape), 0.1, 1.0))
            else:
                p.copy_(formula(k + 1, list(p.shape), scale))


# ---------------------------------------------------------------- DLinear (LTSF-Linear models/DLinear.py)
class MovingAvg(nn.Module):
    def __init__(self, kernel_size, stride):
        super().__init__()
        self.kernel_size = kernel_size
        self.avg = nn.AvgPool1d(kernel_size=kernel_size, stride=stride, padding=0)

    def forward(self, x):
        front = x[:, 0:1, :].repeat(1, (self.kernel_size - 1) // 2, 1)
        end = x[:, -1:, :].repeat(1, (self.kernel_size - 1) // 2, 1)
        x = torch.cat([front, x, end], dim=1)
        x = self.avg(x.permute(0, 2, 1))
        return x.permute(0, 2, 1)


class DLinear(nn.Module):
    def __init__(self, seq_len, pred_len, enc_in, individual, kernel_size):
        super().__init__()
        self.decomposition = MovingAvg(kernel_size, 1)
        self.individual = individual
        self.channels = enc_in
        if individual:
            self.Linear_Seasonal = nn.ModuleList([nn.Linear(seq_len, pred_len) for _ in range(enc_in)])
            self.Linear_Trend = nn.ModuleList([nn.Linear(seq_len, pred_len) for _ in range(enc_in)])
        else:
            self.Linear_Seasonal = nn.Linear(seq_len, pred_len)
            self.Linear_Trend = nn.Linear(seq_len, pred_len)
        self.pred_len = pred_len

    def forward(self, x):
        trend_init = self.decomposition(x)
        seasonal_init = x - trend_init
        seasonal_init, trend_init = seasonal_init.permute(0, 2, 1), trend_init.permute(0, 2, 1)
        if self.individual:
            seasonal_output = torch.zeros([seasonal_init.size(0), seasonal_init.size(1), self.pred_len], dtype=seasonal_init.dtype)
            trend_output = torch.zeros([trend_init.size(0), trend_init.size(1), self.pred_len], dtype=trend_init.dtype)
            for i in range(self.channels):
                seasonal_output[:, i, :] = self.Linear_Seasonal[i](seasonal_init[:, i, :])
                trend_output[:, i, :] = self.Linear_Trend[i](trend_init[:, i, :])
        else:
            seasonal_output = self.Linear_Seasonal(seasonal_init)
            trend_output = self.Linear_Trend(trend_init)
        return (seasonal_output + trend_output).permute(0, 2, 1)


def dlinear_export(m, individual):
    named = dict(m.named_parameters())
    if not individual:
        return {k: v for k, v in named.items()}
    out = {}
    for part in ("Linear_Seasonal", "Linear_Trend"):
        out[part + "_weight"] = torch.stack([named[f"{part}.{i}.weight"] for i in range(C)])          # [C, H, L]
        out[part + "_bias"] = torch.stack([named[f"{part}.{i}.bias"] for i in range(C)]).unsqueeze(1)  # [C, 1, H]
    return out


# ---------------------------------------------------------------- PatchTST (PatchTST_supervised)
class RevIN(nn.Module):
    def __init__(self, num_features, eps=1e-5, affine=True):
        super().__init__()
        self.eps = eps
        self.affine_weight = nn.Parameter(torch.ones(num_features))
        self.affine_bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x, mode):
        if mode == "norm":
            self.mean = torch.mean(x, dim=1, keepdim=True).detach()
            self.stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + self.eps).detach()
            x = (x - self.mean) / self.stdev
            return x * self.affine_weight + self.affine_bias
        x = (x - self.affine_bias) / (self.affine_weight + self.eps * self.eps)
        return x * self.stdev + self.mean


class Transpose(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.transpose(*self.dims)


class MultiheadAttention(nn.Module):  # _MultiheadAttention with res_attention=False, lsa=False, attn_dropout=0
    def __init__(self, d_model, n_heads, proj_dropout):
        super().__init__()
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.W_Q = nn.Linear(d_model, d_model)
        self.W_K = nn.Linear(d_model, d_model)
        self.W_V = nn.Linear(d_model, d_model)
        self.scale = self.d_k ** -0.5
        self.to_out = nn.Sequential(nn.Linear(d_model, d_model), nn.Dropout(proj_dropout))

    def forward(self, Q):
        bs = Q.size(0)
        q_s = self.W_Q(Q).view(bs, -1, self.n_heads, self.d_k).transpose(1, 2)
        k_s = self.W_K(Q).view(bs, -1, self.n_heads, self.d_k).permute(0, 2, 3, 1)
        v_s = self.W_V(Q).view(bs, -1, self.n_heads, self.d_k).transpose(1, 2)
        attn = F.softmax(torch.matmul(q_s, k_s) * self.scale, dim=-1)
        out = torch.matmul(attn, v_s).transpose(1, 2).contiguous().view(bs, -1, self.n_heads * self.d_k)
        return self.to_out(out)


class TSTEncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, n_heads, dropout)
        self.dropout_attn = nn.Dropout(dropout)
        self.norm_attn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))

    def forward(self, src):
        src = self.norm_attn(src + self.dropout_attn(self.self_attn(src)))
        return self.norm_ffn(src + self.dropout_ffn(self.ff(src)))


class PatchTST(nn.Module):
    def __init__(self, c_in, context_window, target_window, patch_len, stride, n_layers, d_model, n_heads, d_ff):
        super().__init__()
        self.revin_layer = RevIN(c_in)
        self.patch_len, self.stride = patch_len, stride
        patch_num = int((context_window - patch_len) / stride + 1) + 1
        self.padding_patch_layer = nn.ReplicationPad1d((0, stride))
        self.W_P = nn.Linear(patch_len, d_model)
        self.W_pos = nn.Parameter(torch.empty((patch_num, d_model)))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.ModuleList([TSTEncoderLayer(d_model, n_heads, d_ff, 0.0) for _ in range(n_layers)])
        self.head = nn.Linear(d_model * patch_num, target_window)
        self.patch_num, self.d_model = patch_num, d_model

    def forward(self, x):                                   # x: [bs, seq_len, nvars]
        z = self.revin_layer(x, "norm").permute(0, 2, 1)    # [bs, nvars, seq_len]
        z = self.padding_patch_layer(z)
        z = z.unfold(dimension=-1, size=self.patch_len, step=self.stride)  # [bs, nvars, patch_num, patch_len]
        n_vars = z.shape[1]
        u = self.W_P(z)                                     # [bs, nvars, patch_num, d_model]
        u = torch.reshape(u, (u.shape[0] * u.shape[1], u.shape[2], u.shape[3]))
        u = self.dropout(u + self.W_pos)
        for layer in self.layers:
            u = layer(u)
        z = torch.reshape(u, (-1, n_vars, u.shape[-2], u.shape[-1])).permute(0, 1, 3, 2)  # [bs, nvars, d_model, patch_num]
        z = self.head(torch.flatten(z, start_dim=-2))       # [bs, nvars, target_window]
        return self.revin_layer(z.permute(0, 2, 1), "denorm")


def patchtst_export(m):
    out = {}
    for name, p in m.named_parameters():
        parts = name.split(".")
        if name.startswith("layers.") and parts[2] == "self_attn":
            prefix = ".".join(parts[:3])
            if parts[3] == "W_Q":
                kind = parts[4]
                out[f"{prefix}.qkv.{kind}"] = torch.cat([p, dict(m.named_parameters())[f"{prefix}.W_K.{kind}"],
                                                         dict(m.named_parameters())[f"{prefix}.W_V.{kind}"]], 0)
            elif parts[3] == "to_out":
                out[f"{prefix}.proj.{parts[5]}"] = p
            continue
        name = name.replace("norm_attn.1.", "norm_attn.").replace("norm_ffn.1.", "norm_ffn.")
        name = name.replace("ff.0.", "ff.fc.").replace("ff.3.", "ff.proj.")
        out[name] = p
    return out


def patchtst_buffers(m):
    out = {}
    for name, b in m.named_buffers():
        if name.endswith("num_batches_tracked"):
            continue
        out[name.replace("norm_attn.1.", "norm_attn.").replace("norm_ffn.1.", "norm_ffn.")] = b
    return out


# ---------------------------------------------------------------- iTransformer
class AttentionLayer(nn.Module):  # AttentionLayer(FullAttention(False, attention_dropout=0))
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.query_projection = nn.Linear(d_model, d_model)
        self.key_projection = nn.Linear(d_model, d_model)
        self.value_projection = nn.Linear(d_model, d_model)
        self.out_projection = nn.Linear(d_model, d_model)
        self.n_heads = n_heads

    def forward(self, x):
        Bq, Lq, _ = x.shape
        h = self.n_heads
        queries = self.query_projection(x).view(Bq, Lq, h, -1)
        keys = self.key_projection(x).view(Bq, Lq, h, -1)
        values = self.value_projection(x).view(Bq, Lq, h, -1)
        scale = 1.0 / math.sqrt(queries.shape[-1])
        scores = torch.einsum("blhe,bshe->bhls", queries, keys)
        A = torch.softmax(scale * scores, dim=-1)
        V = torch.einsum("bhls,bshd->blhd", A, values).contiguous().view(Bq, Lq, -1)
        return self.out_projection(V)


class EncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.attention = AttentionLayer(d_model, n_heads)
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x):
        x = x + self.attention(x)
        y = x = self.norm1(x)
        y = F.gelu(self.conv1(y.transpose(-1, 1)))
        y = self.conv2(y).transpose(-1, 1)
        return self.norm2(x + y)


class ITransformer(nn.Module):
    def __init__(self, seq_len, pred_len, d_model, n_heads, d_ff, e_layers):
        super().__init__()
        self.enc_embedding = nn.Linear(seq_len, d_model)    # DataEmbedding_inverted.value_embedding
        self.layers = nn.ModuleList([EncoderLayer(d_model, n_heads, d_ff) for _ in range(e_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.projector = nn.Linear(d_model, pred_len)

    def forward(self, x_enc):
        means = x_enc.mean(1, keepdim=True).detach()
        x_enc = x_enc - means
        stdev = torch.sqrt(torch.var(x_enc, dim=1, keepdim=True, unbiased=False) + 1e-5)
        x_enc = x_enc / stdev
        enc_out = self.enc_embedding(x_enc.permute(0, 2, 1))
        for layer in self.layers:
            enc_out = layer(enc_out)
        enc_out = self.norm(enc_out)
        dec_out = self.projector(enc_out).permute(0, 2, 1)
        return dec_out * stdev + means


def itransformer_export(m):
    named = dict(m.named_parameters())
    out = {}
    for name, p in named.items():
        parts = name.split(".")
        if name.startswith("layers."):
            prefix = ".".join(parts[:2])
            sub = parts[2]
            if sub == "attention":
                if parts[3] == "query_projection":
                    kind = parts[4]
                    out[f"{prefix}.attn.qkv.{kind}"] = torch.cat([p, named[f"{prefix}.attention.key_projection.{kind}"],
                                                                  named[f"{prefix}.attention.value_projection.{kind}"]], 0)
                elif parts[3] == "out_projection":
                    out[f"{prefix}.attn.proj.{parts[4]}"] = p
                continue
            if sub in ("conv1", "conv2"):
                out[f"{prefix}.ff.{'fc' if sub == 'conv1' else 'proj'}.{parts[3]}"] = p.squeeze(-1) if parts[3] == "weight" else p
                continue
            out[f"{prefix}.{'ln1' if sub == 'norm1' else 'ln2'}.{parts[3]}"] = p
            continue
        out[name] = p
    return out


def run(name, model, export, buffers=None, config=None):
    fill(model)
    model.train()
    exported = {k: v.detach().clone() for k, v in export(model).items()}
    if buffers is not None:
        exported.update({k: v.detach().clone() for k, v in buffers(model).items()})
    y = model(x)
    loss = ((y - target) ** 2).mean()
    loss.backward()
    # The stacked/concatenated exports are new tensors: export the gradients through the same mapping by swapping
    # each parameter's data for its gradient.
    named = dict(model.named_parameters())
    saved = {k: p.data for k, p in named.items()}
    for k, p in named.items():
        p.data = p.grad
    grads = {k: v.detach().clone() for k, v in export(model).items()}
    for k, p in named.items():
        p.data = saved[k]
    return {
        "config": config,
        "params": {k: {"shape": list(v.shape), "values": v.flatten().tolist()} for k, v in exported.items()},
        "output": y.detach().flatten().tolist(),
        "loss": loss.item(),
        "grads": {k: v.flatten().tolist() for k, v in grads.items()},
    }


torch.manual_seed(0)
out = {"B": B, "L": L, "C": C, "H": H, "x": x.flatten().tolist(), "target": target.flatten().tolist()}
out["dlinear_shared"] = run("dlinear", DLinear(L, H, C, False, 5), lambda m: dlinear_export(m, False),
                            config={"MovingAverage": 5, "Individual": False})
out["dlinear_individual"] = run("dlinear", DLinear(L, H, C, True, 5), lambda m: dlinear_export(m, True),
                                config={"MovingAverage": 5, "Individual": True})
out["patchtst"] = run("patchtst", PatchTST(C, L, H, patch_len=8, stride=4, n_layers=2, d_model=8, n_heads=2, d_ff=16),
                      patchtst_export, patchtst_buffers,
                      config={"PatchLen": 8, "Stride": 4, "Layers": 2, "DModel": 8, "Heads": 2, "DFf": 16})
out["itransformer"] = run("itransformer", ITransformer(L, H, d_model=8, n_heads=2, d_ff=16, e_layers=2), itransformer_export,
                          config={"Layers": 2, "DModel": 8, "Heads": 2, "DFf": 16})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forecasters.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", path)
