#!/usr/bin/python3
"""Reference values for Tests/Autograd/PyTorchFixtureTests.cs.

A fixed small network (embedding, layer norm, causal two-head self-attention, linear, cross-entropy with
ignore_index and label smoothing) with weights from a closed-form formula, so no random number generator
has to agree between PyTorch and AttnCore. Writes the loss, every parameter gradient and every parameter
after one AdamW step to autograd_small_net.json.

Run: /usr/bin/python3 Tests/Fixtures/make_autograd_small_net.py   (Debian's python3-torch)
"""
import json, math, os
import torch

torch.set_default_dtype(torch.float32)
V, D, H, T, B = 7, 8, 2, 5, 2

def param(k, shape, scale):
    n = math.prod(shape)
    vals = [math.sin(0.37 * i + 1.3 * k) * scale for i in range(n)]
    return torch.tensor(vals, dtype=torch.float32).reshape(shape).requires_grad_()

params = {
    "emb": param(1, [V, D], 0.5),
    "ln_w": param(2, [D], 0.2),
    "ln_b": param(3, [D], 0.1),
    "wq": param(4, [D, D], 0.3),
    "wk": param(5, [D, D], 0.3),
    "wv": param(6, [D, D], 0.3),
    "wo": param(7, [D, D], 0.3),
    "head_w": param(8, [D, V], 0.4),
    "head_b": param(9, [V], 0.05),
}
with torch.no_grad():
    params["ln_w"] += 1.0
tokens = torch.tensor([[1, 4, 2, 6, 0], [3, 3, 5, 1, 2]])
targets = torch.tensor([4, 2, 6, 0, 5, 3, -100, 1, 2, 6])

def forward(p):
    x = p["emb"][tokens]                                   # [B, T, D]
    h = torch.nn.functional.layer_norm(x, [D], p["ln_w"], p["ln_b"], 1e-5)
    def heads(t):                                          # [B, T, D] -> [B, H, T, D/H]
        return t.reshape(B, T, H, D // H).transpose(1, 2)
    q, k, v = heads(h @ p["wq"]), heads(h @ p["wk"]), heads(h @ p["wv"])
    s = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    mask = torch.triu(torch.ones(T, T), diagonal=1)
    s = s.masked_fill(mask == 1, float("-inf"))
    a = torch.softmax(s, -1) @ v                           # [B, H, T, D/H]
    a = a.transpose(1, 2).reshape(B, T, D) @ p["wo"]
    y = (x + a) @ p["head_w"] + p["head_b"]                # [B, T, V]
    return torch.nn.functional.cross_entropy(y.reshape(B * T, V), targets, ignore_index=-100, label_smoothing=0.1)

loss = forward(params)
loss.backward()
out = {"loss": loss.item(), "grads": {}, "after_adamw": {}, "tokens": tokens.flatten().tolist(), "targets": targets.tolist()}
for name, t in params.items():
    out["grads"][name] = t.grad.flatten().tolist()
opt = torch.optim.AdamW(params.values(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
opt.step()
for name, t in params.items():
    out["after_adamw"][name] = t.detach().flatten().tolist()
out["torch_version"] = torch.__version__
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "autograd_small_net.json")
with open(path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(path + ".tmp", path)
print("wrote", path, "loss", out["loss"])
