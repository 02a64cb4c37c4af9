#!/usr/bin/python3
"""Reference values for Tests/Models/VisionFixtureTests.cs: SE, CBAM, the BoTNet MHSA block and CIFAR ResNet-20
(plain, -se, -cbam, -mhsa) in PyTorch, written here independently of AttnCore with the same parameter names.

No random number generator has to agree: every parameter and buffer is filled in closed form,
p[i] = offset + scale·sin(0.73·i + 0.29·k) (k its position in the listing, scale 1/sqrt(fan-in) for weights;
BatchNorm weights 1 ± 0.1, biases ± 0.1, running var 1 + 0.2·sin²), the input x[i] = sin(0.37·i + 1.3), and the
loss is sum(y·r) with r[i] = sin(0.7·i + 0.3). For each case: the output (full), the input gradient, and for each
parameter its gradient's dot product with u[i] = sin(0.11·i + 0.5), its norm and its first 6 values; BatchNorm is in
training mode (batch statistics) and the running means after the pass are recorded the same way.

The MHSA reference builds the relative logits by indexing the tables with (j - i + M - 1) for every query/key pair,
not by AttnCore's batched products, and attends with an explicit softmax. CIFAR shortcuts are option B (1x1
strided conv + BatchNorm, torchvision's downsample.0/1); SE and CBAM sit on the residual branch before the addition;
MHSA replaces conv2 of the last stage's blocks (named mhsa).

Run: /usr/bin/python3 Tests/Fixtures/make_vision_blocks.py   (Debian's python3-torch 1.13) -> vision_blocks.json
"""
import json, math, os
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)

def sin_fill(n, k, scale, offset=0.0):
    return [offset + scale * math.sin(0.73 * i + 0.29 * k) for i in range(n)]

def init_spec(name, shape):
    numel = math.prod(shape) if shape else 1
    if name.endswith("num_batches_tracked"):
        return dict(scale=0.0, offset=0.0)
    if name.endswith("running_var"):
        return dict(scale=0.0, offset=0.0, var=True)
    if name.endswith("running_mean"):
        return dict(scale=0.1, offset=0.0)
    if ".bn" in "." + name or name.startswith("bn") or ".downsample.1." in name:
        return dict(scale=0.1, offset=1.0 if name.endswith("weight") else 0.0)
    if name.endswith("rel_height") or name.endswith("rel_width"):
        return dict(scale=0.5, offset=0.0)
    fan_in = numel // shape[0] if len(shape) >= 2 else 4
    return dict(scale=1.0 / math.sqrt(fan_in), offset=0.0)

def fill(module):
    listing = []
    for k, (name, t) in enumerate(module.state_dict(keep_vars=True).items()):
        spec = init_spec(name, list(t.shape))
        n = t.numel()
        if spec.get("var"):
            vals = [1 + 0.2 * math.sin(0.73 * i + 0.29 * k) ** 2 for i in range(n)]
        else:
            vals = sin_fill(n, k, spec["scale"], spec["offset"])
        with torch.no_grad():
            if t.dtype == torch.int64:
                t.zero_()
            else:
                t.copy_(torch.tensor(vals, dtype=torch.float64).reshape(t.shape).to(t.dtype))
        listing.append(dict(name=name, shape=list(t.shape), k=k, scale=spec["scale"], offset=spec["offset"], var=bool(spec.get("var", False)),
                            int64=t.dtype == torch.int64))
    return listing

class SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        h = max(1, c // r)
        self.fc1 = nn.Conv2d(c, h, 1); self.fc2 = nn.Conv2d(h, c, 1)
    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))

class CBAM(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        h = max(1, c // r)
        self.fc1 = nn.Conv2d(c, h, 1); self.fc2 = nn.Conv2d(h, c, 1)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)
    def forward(self, x):
        mlp = lambda z: self.fc2(F.relu(self.fc1(z)))
        ch = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
        f = x * ch
        s = torch.sigmoid(self.spatial(torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], 1)))
        return f * s

class MHSA(nn.Module):
    def __init__(self, c, heads, m):
        super().__init__()
        self.heads, self.m, d = heads, m, c // heads
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)
        self.rel_height = nn.Parameter(torch.zeros(2 * m - 1, d))
        self.rel_width = nn.Parameter(torch.zeros(2 * m - 1, d))
    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, d, h * w).unbind(1)   # [n, heads, d, hw]
        q, k, v = q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        ih, iw = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ih, iw = ih.reshape(-1), iw.reshape(-1)                                  # position p -> (row, col)
        r = self.rel_height[ih[None, :] - ih[:, None] + self.m - 1] + self.rel_width[iw[None, :] - iw[:, None] + self.m - 1]  # [hw_q, hw_k, d]
        logits = q @ k.transpose(-1, -2) / math.sqrt(d) + torch.einsum("bnpd,pqd->bnpq", q, r)
        o = torch.softmax(logits, -1) @ v
        return o.transpose(-1, -2).reshape(n, c, h, w)

class Basic(nn.Module):
    def __init__(self, cin, c, stride, attention, mhsa):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(c)
        if mhsa: self.mhsa = MHSA(c, 4, 16)
        else: self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        if attention == "se": self.se = SE(c, 4)
        if attention == "cbam": self.cbam = CBAM(c, 4)
        self.attention, self.use_mhsa = attention, mhsa
        self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c)) if stride != 1 or cin != c else None
    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.mhsa(h) if self.use_mhsa else self.conv2(h))
        if self.attention == "se": h = self.se(h)
        if self.attention == "cbam": h = self.cbam(h)
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))

class ResNet20(nn.Module):
    def __init__(self, attention, cin=3, classes=10, n=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 16, 3, 1, 1, bias=False); self.bn1 = nn.BatchNorm2d(16)
        c = 16
        for s, width in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(Basic(c, width, 2 if b == 0 and s > 0 else 1, None if attention == "mhsa" else attention, attention == "mhsa" and s == 2))
                c = width
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)
    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(h.mean((2, 3)))

def closed(shape, fn):
    n = math.prod(shape)
    return torch.tensor([fn(i) for i in range(n)], dtype=torch.float64).reshape(shape).float()

def flat(t):
    return t.detach().reshape(-1).tolist()

def summary(g):
    g = g.detach().reshape(-1).double()
    u = torch.tensor([math.sin(0.11 * i + 0.5) for i in range(g.numel())], dtype=torch.float64)
    return dict(dot=float((g * u).sum()), norm=float(g.norm()), head=g[:6].tolist())

cases = []
def case(name, model_name, module, input_shape):
    listing = fill(module)
    module.train()
    x = closed(input_shape, lambda i: math.sin(0.37 * i + 1.3)).requires_grad_()
    y = module(x)
    r = closed(list(y.shape), lambda i: math.sin(0.7 * i + 0.3))
    (y * r).sum().backward()
    params = dict(module.named_parameters())
    cases.append(dict(
        name=name, model=model_name, input_shape=list(input_shape), state=listing, output_shape=list(y.shape), output=flat(y),
        input_grad=summary(x.grad), input_grad_head=flat(x.grad)[:32],
        grads={n: summary(p.grad) for n, p in params.items()},
        running_means={n: summary(b) for n, b in module.named_buffers() if n.endswith("running_mean")},
    ))

torch.manual_seed(0)
case("SE 16 channels r=4 on 2x16x5x6", "se", SE(16, 4), (2, 16, 5, 6))
case("CBAM 16 channels r=4 on 2x16x6x5", "cbam", CBAM(16, 4), (2, 16, 6, 5))
case("BoTNet MHSA 16 channels 4 heads M=8 on 2x16x5x6", "mhsa", MHSA(16, 4, 8), (2, 16, 5, 6))
for att in ["none", "se", "cbam", "mhsa"]:
    case(f"ResNet-20 {att} on 2x3x16x16, 10 classes", "resnet20" + ("" if att == "none" else "-" + att), ResNet20(None if att == "none" else att), (2, 3, 16, 16))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vision_blocks.json")
with open(out, "w") as f:
    json.dump(dict(generator="Tests/Fixtures/make_vision_blocks.py", torch=torch.__version__, cases=cases), f)
print(out, os.path.getsize(out))
