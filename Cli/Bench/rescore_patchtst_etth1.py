"""Scores AttnCore PatchTST checkpoints on the ETTh1 test split both ways: over every test window (AttnCore's and the
issue's protocol) and over the first floor(n / 128) * 128 windows (PatchTST's test loader drops its last partial
batch of 128, so the paper's figures leave out the last windows).

The checkpoint's weights are loaded into torch_forecast.PatchTST (the model Tests/Models/ForecasterFixtureTests.cs
checks AttnCore's against; the names map as Tests/Fixtures/make_forecasters.py maps them the other way), and the
every-window score is compared with the checkpoint folder's metrics.json as a check of the loading.

usage: python3 rescore_patchtst_etth1.py ETTh1.csv RUN_DIR [RUN_DIR ...]   (each RUN_DIR holds model.safetensors, metrics.json)
Prints one JSON line per run.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dlinear_etth1 import windows  # noqa: E402
from torch_forecast import PatchTST, patchtst_name_to_torch  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"]).copy())
    return tensors, meta


def torch_state(tensors, d_model):
    state = {}
    for name, t in tensors.items():
        parts = name.split(".")
        if name.startswith("layers.") and parts[2] == "self_attn":
            prefix = ".".join(parts[:3])
            if parts[3] == "qkv":
                for i, w in enumerate(("W_Q", "W_K", "W_V")):
                    state[f"{prefix}.{w}.{parts[4]}"] = t[i * d_model:(i + 1) * d_model]
            else:
                state[f"{prefix}.to_out.0.{parts[4]}"] = t
            continue
        state[patchtst_name_to_torch(name)] = t
    return state


def rescore(csv, run_dir):
    tensors, meta = read_safetensors(os.path.join(run_dir, "model.safetensors"))
    c = json.loads(meta["attncore.config"])
    model = PatchTST(c["Channels"], c["SeqLen"], c["PredLen"], c["PatchLen"], c["Stride"], c["Layers"], c["DModel"], c["Heads"], c["DFf"])
    missing, unexpected = model.load_state_dict(torch_state(tensors, c["DModel"]), strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise ValueError(f"{run_dir}: missing {missing}, unexpected {unexpected}")
    model.eval()
    seq_len, pred_len = c["SeqLen"], c["PredLen"]
    raw = np.genfromtxt(csv, delimiter=",", skip_header=1, usecols=range(1, 8))
    train_rows = raw[:12 * 30 * 24]
    data = (raw - train_rows.mean(0)) / train_rows.std(0)
    x, y = windows(data, 12 * 30 * 24 + 4 * 30 * 24 - seq_len, 12 * 30 * 24 + 8 * 30 * 24, seq_len, pred_len)
    with torch.no_grad():
        e = torch.cat([model(x[s:s + 128]) - y[s:s + 128] for s in range(0, len(x), 128)])
    kept = len(x) - len(x) % 128
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    return dict(run=run_dir, pred_len=pred_len, seed=metrics.get("seed"), test_mse=(e ** 2).mean().item(),
                attncore_test_mse=metrics["test_mse"], test_windows=len(x),
                drop_last_mse=(e[:kept] ** 2).mean().item(), drop_last_mae=e[:kept].abs().mean().item(), drop_last_windows=kept)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for d in sys.argv[2:]:
        print(json.dumps(rescore(sys.argv[1], d)), flush=True)
