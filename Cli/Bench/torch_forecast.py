"""PyTorch forecasters after the papers' code, shared by Tests/Fixtures/make_forecasters.py (outputs and gradients
from fixed weights) and torch_bench.py (`attncore bench forecast-step --vs torch`).

DLinear: LTSF-Linear models/DLinear.py. PatchTST (supervised, res_attention=False): PatchTST_supervised
layers/PatchTST_backbone.py, PatchTST_layers.py, RevIN.py. iTransformer: model/iTransformer.py,
layers/Transformer_EncDec.py, SelfAttention_Family.py, Embed.py.
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


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


class MultiheadAttention(nn.Module):  # _MultiheadAttention with lsa=False, attn_dropout=0
    def __init__(self, d_model, n_heads, proj_dropout):
        super().__init__()
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.W_Q = nn.Linear(d_model, d_model)
        self.W_K = nn.Linear(d_model, d_model)
        self.W_V = nn.Linear(d_model, d_model)
        self.scale = self.d_k ** -0.5
        self.to_out = nn.Sequential(nn.Linear(d_model, d_model), nn.Dropout(proj_dropout))

    def forward(self, Q, prev=None):
        """Returns the output and the pre-softmax scores; prev (the previous layer's scores) is added to this
        layer's before the softmax: the paper code's res_attention=True ("residual attention")."""
        bs = Q.size(0)
        q_s = self.W_Q(Q).view(bs, -1, self.n_heads, self.d_k).transpose(1, 2)
        k_s = self.W_K(Q).view(bs, -1, self.n_heads, self.d_k).permute(0, 2, 3, 1)
        v_s = self.W_V(Q).view(bs, -1, self.n_heads, self.d_k).transpose(1, 2)
        scores = torch.matmul(q_s, k_s) * self.scale
        if prev is not None:
            scores = scores + prev
        attn = F.softmax(scores, dim=-1)
        out = torch.matmul(attn, v_s).transpose(1, 2).contiguous().view(bs, -1, self.n_heads * self.d_k)
        return self.to_out(out), scores


class TSTEncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, n_heads, dropout)
        self.dropout_attn = nn.Dropout(dropout)
        self.norm_attn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))

    def forward(self, src, prev=None):
        attended, scores = self.self_attn(src, prev)
        src = self.norm_attn(src + self.dropout_attn(attended))
        return self.norm_ffn(src + self.dropout_ffn(self.ff(src))), scores


# The parameter names of PatchTST here (the paper's code) against AttnCore's, as (PyTorch fragment, AttnCore fragment);
# the attention's W_Q/W_K/W_V against AttnCore's fused qkv is a concatenation, mapped where the weights are moved.
# Tests/Fixtures/make_forecasters.py maps to AttnCore's names, Cli/Bench/rescore_patchtst_etth1.py back to these.
PATCHTST_RENAMES = (("norm_attn.1.", "norm_attn."), ("norm_ffn.1.", "norm_ffn."), ("ff.0.", "ff.fc."), ("ff.3.", "ff.proj."))


def patchtst_name_to_attncore(name):
    for torch_part, attncore_part in PATCHTST_RENAMES:
        name = name.replace(torch_part, attncore_part)
    return name


def patchtst_name_to_torch(name):
    for torch_part, attncore_part in PATCHTST_RENAMES:
        name = name.replace(attncore_part, torch_part)
    return name


class PatchTST(nn.Module):
    def __init__(self, c_in, context_window, target_window, patch_len, stride, n_layers, d_model, n_heads, d_ff, dropout=0.0, fc_dropout=0.0,
                 res_attention=False):
        super().__init__()
        self.res_attention = res_attention
        self.revin_layer = RevIN(c_in)
        self.patch_len, self.stride = patch_len, stride
        patch_num = int((context_window - patch_len) / stride + 1) + 1
        self.padding_patch_layer = nn.ReplicationPad1d((0, stride))
        self.W_P = nn.Linear(patch_len, d_model)
        self.W_pos = nn.Parameter(torch.empty((patch_num, d_model)))
        nn.init.uniform_(self.W_pos, -0.02, 0.02)
        self.dropout = nn.Dropout(fc_dropout)
        self.layers = nn.ModuleList([TSTEncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)])
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
        scores = None
        for layer in self.layers:
            u, scores = layer(u, scores if self.res_attention else None)
        z = torch.reshape(u, (-1, n_vars, u.shape[-2], u.shape[-1])).permute(0, 1, 3, 2)  # [bs, nvars, d_model, patch_num]
        z = self.head(torch.flatten(z, start_dim=-2))       # [bs, nvars, target_window]
        return self.revin_layer(z.permute(0, 2, 1), "denorm")


# ---------------------------------------------------------------- iTransformer
class AttentionLayer(nn.Module):  # AttentionLayer(FullAttention(False, attention_dropout=dropout))
    def __init__(self, d_model, n_heads, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
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
        A = self.dropout(torch.softmax(scale * scores, dim=-1))
        V = torch.einsum("bhls,bshd->blhd", A, values).contiguous().view(Bq, Lq, -1)
        return self.out_projection(V)


class EncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__()
        self.attention = AttentionLayer(d_model, n_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x):
        x = x + self.dropout(self.attention(x))
        y = x = self.norm1(x)
        y = self.dropout(F.gelu(self.conv1(y.transpose(-1, 1))))
        y = self.dropout(self.conv2(y).transpose(-1, 1))
        return self.norm2(x + y)


class ITransformer(nn.Module):
    def __init__(self, seq_len, pred_len, d_model, n_heads, d_ff, e_layers, dropout=0.0):
        super().__init__()
        self.enc_embedding = nn.Linear(seq_len, d_model)    # DataEmbedding_inverted.value_embedding
        self.embedding_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(e_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.projector = nn.Linear(d_model, pred_len)

    def forward(self, x_enc):
        means = x_enc.mean(1, keepdim=True).detach()
        x_enc = x_enc - means
        stdev = torch.sqrt(torch.var(x_enc, dim=1, keepdim=True, unbiased=False) + 1e-5)
        x_enc = x_enc / stdev
        enc_out = self.embedding_dropout(self.enc_embedding(x_enc.permute(0, 2, 1)))
        for layer in self.layers:
            enc_out = layer(enc_out)
        enc_out = self.norm(enc_out)
        dec_out = self.projector(enc_out).permute(0, 2, 1)
        return dec_out * stdev + means




def forecast_step(c):
    """One Adam training step of c["model"] (patchtst | itransformer) on random ETTh1-shaped windows, for torch_bench.py."""
    B, L, H, C = c["batch"], c["seq_len"], c["pred_len"], c["channels"]
    if c["model"] == "patchtst":
        model = PatchTST(C, L, H, c["patch_len"], c["stride"], c["layers"], c["d_model"], c["heads"], c["d_ff"], c["dropout"], c["dropout"])
    else:
        model = ITransformer(L, H, c["d_model"], c["heads"], c["d_ff"], c["layers"], c["dropout"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(B, L, C), torch.randn(B, H, C)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return step
