#!/usr/bin/python3
"""Reference values for Tests/Engine/CrossEntropyTests.cs and Tests/Gpu/CrossEntropyGpuTests.cs.

torch.nn.functional.cross_entropy over the combinations AttnCore supports: logits [N, C], [C] with a scalar
target and [N, C, d1, ...]; int64 class targets (ignore_index, class weights, negative weights, label smoothing)
and probability targets (weights, smoothing, and their gradient); reductions none, mean and sum; an all-ignored
batch (mean = NaN). Inputs are generated here, rounded to float32 (the values the tests feed AttnCore), and the
loss, d loss/d logits and (probability targets) d loss/d targets are computed in float64 for an upstream gradient
that is not 1. Writes cross_entropy.json.

Run: /usr/bin/python3 Tests/Fixtures/make_cross_entropy.py   (Debian's python3-torch, 1.13)
"""
import json, math, os
import torch
import torch.nn.functional as F

gen = torch.Generator().manual_seed(20261202)

def f32(t):
    return t.to(torch.float32).to(torch.float64)

def randn(shape, scale=2.0):
    return f32(torch.randn(shape, generator=gen, dtype=torch.float64) * scale)

def case(name, shape, target, weight=None, ignore_index=-100, smoothing=0.0, reduction="mean", shift=0.0):
    x = (randn(shape) + shift).requires_grad_()
    classes = shape[0] if len(shape) == 1 else shape[1]
    if target == "probs":
        t = f32(torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()
    else:
        t = target
    w = None if weight is None else f32(torch.tensor(weight, dtype=torch.float64))
    loss = F.cross_entropy(x, t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)
    upstream = randn(loss.shape, 1.0) if reduction == "none" else torch.tensor(1.3, dtype=torch.float64)
    loss.backward(upstream)
    out = {
        "name": name, "shape": list(shape), "classes": classes,
        "logits": x.detach().flatten().tolist(),
        "probabilities": target == "probs",
        "targets": (t.detach().flatten().tolist() if target == "probs" else t.flatten().tolist()),
        "target_shape": list(t.shape),
        "weight": None if w is None else w.tolist(),
        "ignore_index": ignore_index, "label_smoothing": smoothing, "reduction": reduction,
        "upstream": upstream.flatten().tolist(),
        "loss": [v if math.isfinite(v) else str(v) for v in loss.detach().flatten().tolist()],
        "grad_logits": x.grad.flatten().tolist(),
    }
    if target == "probs":
        out["grad_targets"] = t.grad.flatten().tolist()
    return out

def ints(*values):
    return torch.tensor(values, dtype=torch.int64)

W4 = [0.5, 2.0, 1.0, 0.25]
cases = [
    case("2d_mean_plain", (5, 4), ints(1, 3, -100, 0, 2)),
    case("2d_mean_weighted", (5, 4), ints(1, 3, -100, 0, 2), weight=W4),
    case("2d_mean_weighted_smoothed", (5, 4), ints(1, 3, -100, 0, 2), weight=W4, smoothing=0.2),
    case("2d_sum_negative_weight_smoothed", (5, 4), ints(1, 3, 3, 0, 2), weight=[0.5, -1.5, 1.0, 2.0], smoothing=0.1, reduction="sum"),
    case("2d_none_ignore_a_real_class", (5, 4), ints(1, 2, 3, 0, 2), weight=W4, ignore_index=2, smoothing=0.1, reduction="none"),
    case("2d_mean_large_logits", (3, 7), ints(6, 0, 3), smoothing=0.1, shift=300.0),
    case("1d_scalar_target", (4,), torch.tensor(2), weight=W4, smoothing=0.1),
    case("4d_mean_weighted_smoothed", (2, 3, 2, 3), torch.tensor([[[0, 2, 1], [-100, 1, 1]], [[2, 2, 0], [1, -100, 0]]]), weight=[1.5, 0.5, 1.0], smoothing=0.15),
    case("4d_none_plain", (2, 3, 2, 3), torch.tensor([[[0, 2, 1], [2, 1, 1]], [[2, 2, 0], [1, 0, 0]]]), reduction="none"),
    case("3d_sum_smoothed", (2, 5, 4), torch.tensor([[0, 4, 2, 1], [3, 3, -100, 0]]), smoothing=0.05, reduction="sum"),
    case("all_ignored_mean_is_nan", (3, 4), ints(-100, -100, -100), weight=W4, smoothing=0.1),
    case("probs_2d_mean", (5, 4), "probs"),
    case("probs_2d_mean_weighted_smoothed", (5, 4), "probs", weight=W4, smoothing=0.2),
    case("probs_4d_none_weighted", (2, 3, 2, 2), "probs", weight=[1.5, 0.5, 1.0], reduction="none"),
    case("probs_1d_sum_smoothed", (4,), "probs", smoothing=0.1, reduction="sum"),
]

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cross_entropy.json")
with open(path, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
print(f"wrote {len(cases)} cases to {path}")
