"""PatchTST/42 on ETTh1 trained by PyTorch with AttnCore's protocol: the parity run for `attncore train forecast
--model patchtst` (docs/forecasting.md, "PatchTST/42, L 336").

The model is torch_forecast.PatchTST (the one Tests/Models/ForecasterFixtureTests.cs checks AttnCore's against), at
the paper's ETTh1 settings: L 336, patches 16 / stride 8, d_model 16, 4 heads, 3 layers, d_ff 128, dropout 0.3 (also
after the positional encoding), RevIN. Training as AttnCore's defaults and PatchTST's script: batch 128, Adam 1e-4,
lradj type3 (1e-4 for epochs 1-3, then x0.9 per epoch), at most --epochs epochs (100), early stopping after --patience epochs
without a lower validation MSE (over every validation window), the best weights tested; --max-minutes cuts the
epoch in progress, validates it and stops, as AttnCore's --max-minutes. Scores: every test window (AttnCore's and
the issue's), and the first floor(n / 128) * 128 (PatchTST's test loader, which drops its last partial batch).

usage: python3 torch_patchtst_etth1.py ETTh1.csv --pred-len 96 --seeds 1 2 3 [--threads 1] [--max-minutes 13] [--epochs 100]
Prints one JSON line per seed.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dlinear_etth1 import batches, windows  # noqa: E402
from torch_forecast import PatchTST  # noqa: E402


def errors(model, x, y, gen):
    with torch.no_grad():
        e = torch.cat([model(x[i]) - y[i] for i in batches(len(x), 128, False, False, gen)])
    return e


def run(path, seq_len, pred_len, seed, patience, max_minutes, epochs=100, res_attention=False):
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=range(1, 8))
    b1 = [0, 12 * 30 * 24 - seq_len, 12 * 30 * 24 + 4 * 30 * 24 - seq_len]
    b2 = [12 * 30 * 24, 12 * 30 * 24 + 4 * 30 * 24, 12 * 30 * 24 + 8 * 30 * 24]
    train_rows = raw[b1[0]:b2[0]]
    data = (raw - train_rows.mean(0)) / train_rows.std(0)
    splits = [windows(data, b1[i], b2[i], seq_len, pred_len) for i in range(3)]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = PatchTST(7, seq_len, pred_len, 16, 8, 3, 16, 4, 128, dropout=0.3, fc_dropout=0.3, res_attention=res_attention)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    best, best_state, best_epoch, since, vals = float("inf"), None, 0, 0, []
    t0 = time.time()
    stopped = "epochs"
    for epoch in range(1, epochs + 1):
        for g in opt.param_groups:
            g["lr"] = 1e-4 if epoch <= 3 else 1e-4 * 0.9 ** (epoch - 4)
        model.train()
        x, y = splits[0]
        out_of_time = False
        for i in batches(len(x), 128, True, False, gen):
            opt.zero_grad()
            loss = ((model(x[i]) - y[i]) ** 2).mean()
            loss.backward()
            opt.step()
            if max_minutes > 0 and time.time() - t0 > 60 * max_minutes:
                out_of_time = True
                break
        model.eval()
        val = (errors(model, *splits[1], gen) ** 2).mean().item()
        vals.append(round(val, 5))
        if val < best:
            best, best_epoch, since = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
        if out_of_time:
            stopped = "time_budget"
            break
        if since >= patience:
            stopped = "early_stopping"
            break
    model.load_state_dict(best_state)
    model.eval()
    x, y = splits[2]
    e = errors(model, x, y, gen)
    kept = len(x) - len(x) % 128
    return dict(seed=seed, pred_len=pred_len, res_attention=res_attention, epochs=len(vals), best_epoch=best_epoch, stopped=stopped, val=vals,
                test_mse=(e ** 2).mean().item(), test_mae=e.abs().mean().item(), test_windows=len(x),
                drop_last_mse=(e[:kept] ** 2).mean().item(), drop_last_mae=e[:kept].abs().mean().item(), drop_last_windows=kept,
                wall_s=round(time.time() - t0, 1))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--seq-len", type=int, default=336)
    p.add_argument("--pred-len", type=int, default=96)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--max-minutes", type=float, default=13)
    p.add_argument("--epochs", type=int, default=100, help="most epochs (the paper's 100); to compare with an AttnCore "
                   "run of a known epoch count at equal training rather than equal wall time")
    p.add_argument("--res-attention", action="store_true", help="the paper code's default res_attention=True: each layer adds "
                   "the previous layer's pre-softmax scores to its own (AttnCore's PatchTST and the default here leave it out)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for s in a.seeds:
        print(json.dumps(run(a.data, a.seq_len, a.pred_len, s, a.patience, a.max_minutes, a.epochs, a.res_attention)), flush=True)
