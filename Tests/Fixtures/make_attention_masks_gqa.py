#!/usr/bin/python3
"""Reference values for Tests/Engine/AttentionMaskGqaTests.cs (PyTorchFixture test).

Scaled dot-product attention written in plain torch ops (torch 1.13 has no F.scaled_dot_product_attention):
softmax(q k^T * scale + mask) v, with K/V heads repeated for grouped-query attention (repeat_interleave, so
query head h uses key/value head h // (H / Hkv)). Inputs come from a closed-form formula, so no random number
generator has to agree between PyTorch and AttnCore: value i of tensor k is sin(0.37 i + 1.3 k) * scale,
rounded to float32, then everything runs in float64 (a -inf mask entry is written as null). The loss is sum(O * W); the file holds O and the
gradients of q, k, v for three cases:
  additive_mask   a [Lq, Lk] float mask of finite biases and -inf entries, custom scale 0.3
  boolean_mask    a [B, 1, Lq, Lk] boolean mask (True = takes part, as PyTorch), stored in its 0 / -inf additive
                  form; the test hands AttnCore the bool mask (additive == 0) (no row is fully hidden: PyTorch
                  would give NaN there)
  gqa_causal      4 query heads over 2 key/value heads, causal bottom-right aligned (Lq < Lk), key padding
                  of the last key of batch 1

Run: /usr/bin/python3 Tests/Fixtures/make_attention_masks_gqa.py   (Debian's python3-torch)
"""
import json, math, os
import torch

def values(k, shape, scale=1.0):
    n = math.prod(shape)
    vals = [math.sin(0.37 * i + 1.3 * k) * scale for i in range(n)]
    return torch.tensor(vals, dtype=torch.float32).double().reshape(shape)

def attention(q, k, v, additive, scale):
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = q @ k.transpose(-1, -2) * scale + additive
    return torch.softmax(s, -1) @ v

def run(name, b, h, hkv, lq, lk, d, additive, scale):
    q = values(1, [b, h, lq, d]).requires_grad_()
    k = values(2, [b, hkv, lk, d]).requires_grad_()
    v = values(3, [b, hkv, lk, d]).requires_grad_()
    w = values(4, [b, h, lq, d])
    o = attention(q, k, v, additive, scale)
    (o * w).sum().backward()
    flat = lambda t: [float(x) for x in t.detach().reshape(-1)]
    return {"b": b, "h": h, "hkv": hkv, "lq": lq, "lk": lk, "d": d, "scale": scale,
            "mask_shape": list(additive.shape), "mask": [None if math.isinf(x) else float(x) for x in additive.reshape(-1)],
            "o": flat(o), "dq": flat(q.grad), "dk": flat(k.grad), "dv": flat(v.grad)}

cases = {}
# [Lq, Lk] biases; -inf where (i + 2j) % 5 == 1 (row 0 keeps keys 1, 2, 4 ...: no row is fully hidden)
lq, lk = 3, 5
bias = values(5, [lq, lk], 0.8)
for i in range(lq):
    for j in range(lk):
        if (i + 2 * j) % 5 == 1:
            bias[i, j] = float("-inf")
cases["additive_mask"] = run("additive_mask", 2, 2, 2, lq, lk, 4, bias, 0.3)

# boolean [B, 1, Lq, Lk]: True = takes part
b, lq, lk = 2, 4, 6
keep = torch.tensor([[[((bb + 3 * i + j) % 4 != 0) or j == i for j in range(lk)] for i in range(lq)] for bb in range(b)]).reshape(b, 1, lq, lk)
additive = torch.zeros(b, 1, lq, lk, dtype=torch.float64).masked_fill(~keep, float("-inf"))
cases["boolean_mask"] = run("boolean_mask", b, 3, 3, lq, lk, 5, additive, 1 / math.sqrt(5))

# GQA, causal (key j hidden from query i when j > i + Lk - Lq), key padding on batch 1's last key
b, h, hkv, lq, lk = 2, 4, 2, 4, 6
causal = torch.ones(lq, lk).triu(lk - lq + 1).bool()
pad = torch.zeros(b, lk, dtype=torch.bool)
pad[1, lk - 1] = True
hidden = causal.reshape(1, 1, lq, lk) | pad.reshape(b, 1, 1, lk)
additive = torch.zeros(b, 1, lq, lk, dtype=torch.float64).masked_fill(hidden, float("-inf"))
cases["gqa_causal"] = run("gqa_causal", b, h, hkv, lq, lk, 8, additive, 1 / math.sqrt(8))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attention_masks_gqa.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=None)
print("wrote", out)
