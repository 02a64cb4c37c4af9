#!/usr/bin/python3
"""Reference values for Tests/Engine/SoftplusFamilyTests.cs.

torch.nn.functional.softplus (beta 1, threshold 20), mish and logsigmoid in float64 at float32-representable
points chosen around what each must get right: the softplus threshold (19.5, 20, 20.5), large |x| where a naive
formula overflows or loses every digit (-100, -30, 80, 100), and moderate values; with each function's
derivative (autograd, upstream gradient 1). Writes softplus_family.json.

Run: /usr/bin/python3 Tests/Fixtures/make_softplus_family.py   (Debian's python3-torch, 1.13)
"""
import json, os
import torch
import torch.nn.functional as F

xs = [-100.0, -30.0, -20.5, -5.0, -1.0, -0.001, 0.0, 0.5, 3.0, 19.5, 20.0, 20.5, 25.0, 80.0, 100.0]
x32 = torch.tensor(xs, dtype=torch.float32).to(torch.float64)

cases = []
for name, f in [("Softplus", F.softplus), ("Mish", F.mish), ("LogSigmoid", F.logsigmoid)]:
    x = x32.clone().requires_grad_()
    y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    cases.append({"name": name, "x": x32.tolist(), "y": y.detach().tolist(), "grad": g.tolist()})

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "softplus_family.json"), "w") as out:
    json.dump({"torch": torch.__version__, "cases": cases}, out, indent=1)
