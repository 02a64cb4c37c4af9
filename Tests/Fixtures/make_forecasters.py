#!/usr/bin/python3
"""Reference values for Tests/Models/ForecasterFixtureTests.cs.

DLinear (shared and individual), PatchTST (supervised, res_attention False and True) and iTransformer at tiny sizes, written
here in PyTorch after the papers' code (LTSF-Linear models/DLinear.py; PatchTST_supervised layers/PatchTST_backbone.py,
PatchTST_layers.py, RevIN.py; iTransformer model/iTransformer.py, layers/Transformer_EncDec.py, SelfAttention_Family.py,
Embed.py). Weights come from a closed-form formula, so no random generator has to agree between PyTorch and AttnCore.
Each model runs in training mode with dropout 0 (BatchNorm then uses the batch statistics), on a fixed input x
[B, L, C]; the loss is mean((y - target)^2). The JSON holds, per model, every parameter under AttnCore's name (PatchTST's
separate W_Q, W_K, W_V are stacked into AttnCore's fused qkv, rows q, k, v; DLinear's per-channel ModuleLists are
stacked), the output y and the gradient of the loss for every parameter.

Run: /usr/bin/python3 Tests/Fixtures/make_forecasters.py   (Debian's python3-torch 1.13)
"""
import json, math, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Cli", "Bench"))

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


from torch_forecast import DLinear, PatchTST, ITransformer, patchtst_name_to_attncore  # noqa: E402  (Cli/Bench, on sys.path above)


def dlinear_export(m, individual):
    named = dict(m.named_parameters())
    if not individual:
        return {k: v for k, v in named.items()}
    out = {}
    for part in ("Linear_Seasonal", "Linear_Trend"):
        out[part + "_weight"] = torch.stack([named[f"{part}.{i}.weight"] for i in range(C)])          # [C, H, L]
        out[part + "_bias"] = torch.stack([named[f"{part}.{i}.bias"] for i in range(C)]).unsqueeze(1)  # [C, 1, H]
    return out


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
        out[patchtst_name_to_attncore(name)] = p
    return out


def patchtst_buffers(m):
    out = {}
    for name, b in m.named_buffers():
        if name.endswith("num_batches_tracked"):
            continue
        out[patchtst_name_to_attncore(name)] = b
    return out


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
# The paper code's default residual attention (each layer adds the previous layer's pre-softmax scores), three layers
# so that the scores pass through two hops.
out["patchtst_res"] = run("patchtst", PatchTST(C, L, H, patch_len=8, stride=4, n_layers=3, d_model=8, n_heads=2, d_ff=16, res_attention=True),
                          patchtst_export, patchtst_buffers,
                          config={"PatchLen": 8, "Stride": 4, "Layers": 3, "DModel": 8, "Heads": 2, "DFf": 16, "ResAttention": True})
out["itransformer"] = run("itransformer", ITransformer(L, H, d_model=8, n_heads=2, d_ff=16, e_layers=2), itransformer_export,
                          config={"Layers": 2, "DModel": 8, "Heads": 2, "DFf": 16})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forecasters.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", path)
