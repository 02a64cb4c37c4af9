#!/usr/bin/python3
"""Reference values for Tests/Engine/PoolingTests.cs (PyTorch's pooling and convolution surface).

Inputs come from a closed-form formula (x[i] = sin(0.37·i + 1.3·k)·2, some cases rounded to halves so that
maxima tie, one with NaNs), so no random number generator has to agree between PyTorch and AttnCore. For each
case: the output, max pooling's indices, and the input gradient of sum(y·r) with r[i] = sin(0.7·i + 0.3).
"shapes" lists, for a grid of one-axis sizes, the output length PyTorch computes or null where PyTorch raises,
for max_pool2d, avg_pool2d and conv2d (the other axis kept valid).

Run: /usr/bin/python3 Tests/Fixtures/make_pooling.py   (Debian's python3-torch 1.13) -> pooling.json
"""
import json, math, os
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)

def inp(k, shape, round_halves=False, nans=()):
    n = math.prod(shape)
    vals = [math.sin(0.37 * i + 1.3 * k) * 2 for i in range(n)]
    if round_halves:
        vals = [round(v * 2) / 2 for v in vals]
    for i in nans:
        vals[i] = float("nan")
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)

def weights(y):
    n = y.numel()
    return torch.tensor([math.sin(0.7 * i + 0.3) for i in range(n)], dtype=torch.float32).reshape(y.shape)

def flat(t):
    return [None if math.isnan(v) else v for v in t.detach().reshape(-1).tolist()]

cases = []
def pool_case(name, kind, shape, k, args, round_halves=False, nans=()):
    x = inp(k, shape, round_halves, nans).requires_grad_()
    if kind == "max":
        y, idx = F.max_pool2d(x, return_indices=True, **args)
    else:
        y, idx = F.avg_pool2d(x, **args), None
    (y * weights(y)).sum().backward()
    cases.append({
        "name": name, "kind": kind, "input_shape": list(shape), "input_k": k, "round_halves": round_halves, "nans": list(nans),
        "kernel": list(args["kernel_size"]), "stride": list(args.get("stride") or args["kernel_size"]), "padding": list(args.get("padding", (0, 0))),
        "dilation": list(args.get("dilation", (1, 1))), "ceil_mode": args.get("ceil_mode", False), "count_include_pad": args.get("count_include_pad", True),
        "output_shape": list(y.shape), "output": flat(y), "indices": None if idx is None else idx.reshape(-1).tolist(), "grad": flat(x.grad),
    })

pool_case("max 3x1 stride 2 padding 1 on a 6x1 column (narrow input, stride 2)", "max", (1, 1, 6, 1), 1,
          dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)))
pool_case("max 3x3 stride 2 padding 1 on 1x4", "max", (1, 2, 1, 4), 2, dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)))
pool_case("max (3,2) stride (2,1) padding (1,1) dilation (2,1) ceil", "max", (2, 2, 7, 6), 3,
          dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(2, 1), ceil_mode=True))
pool_case("max 3x3 stride 2 padding 1 ceil", "max", (1, 3, 6, 5), 4, dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True))
pool_case("max (2,4) stride (1,3) padding (1,2) with ties", "max", (2, 1, 5, 9), 5, dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2)), round_halves=True)
pool_case("max 2x2 stride 1 with NaNs", "max", (1, 1, 3, 4), 6, dict(kernel_size=(2, 2), stride=(1, 1)), nans=(1, 2, 6))
pool_case("max 2x3 dilation 3 stride 2 on 20 columns (vector path)", "max", (1, 2, 5, 40), 7,
          dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(1, 3)))
pool_case("avg (3,2) stride (2,1) padding (1,1) ceil, padding not counted", "avg", (2, 2, 7, 6), 8,
          dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True, count_include_pad=False))
pool_case("avg 3x3 stride 2 padding 1 ceil, padding counted", "avg", (1, 2, 5, 5), 9,
          dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True, count_include_pad=True))
pool_case("avg (2,4) stride (1,3) padding (0,2), padding not counted", "avg", (1, 2, 5, 9), 10,
          dict(kernel_size=(2, 4), stride=(1, 3), padding=(0, 2), count_include_pad=False))
pool_case("avg 2x2 ceil without padding (clipped last window)", "avg", (1, 1, 5, 5), 11, dict(kernel_size=(2, 2), stride=(2, 2), ceil_mode=True))

def out_len(fn):
    try:
        return fn()
    except RuntimeError:
        return None

shapes = []
for size in range(1, 8):
    for kernel in range(1, 5):
        for stride in range(1, 4):
            for pad in range(0, 3):
                for dil in (1, 2):
                    for ceil in (False, True):
                        x = torch.zeros(1, 1, size, 16)
                        mx = out_len(lambda: F.max_pool2d(x, (kernel, 1), (stride, 1), (pad, 0), (dil, 1), ceil_mode=ceil).shape[2])
                        av = out_len(lambda: F.avg_pool2d(x, (kernel, 1), (stride, 1), (pad, 0), ceil_mode=ceil).shape[2]) if dil == 1 else None
                        cv = out_len(lambda: F.conv2d(x, torch.zeros(1, 1, kernel, 1), None, (stride, 1), (pad, 0), (dil, 1)).shape[2]) if not ceil else None
                        shapes.append([size, kernel, stride, pad, dil, int(ceil), mx, av if dil == 1 else -1, cv if not ceil else -1])

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "pooling.json"), "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases,
               "shape_columns": ["size", "kernel", "stride", "pad", "dilation", "ceil", "max_pool2d", "avg_pool2d (-1: not asked)", "conv2d (-1: not asked)"],
               "shapes": shapes}, f)
print(len(cases), "cases,", len(shapes), "shape rows")
