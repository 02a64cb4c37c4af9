"""DLinear on ETTh1 trained by PyTorch with the LTSF-Linear protocol (run_longExp.py, exp/exp_main.py,
data_provider/): an independent check of `attncore train forecast --model dlinear` at one horizon.

Settings of scripts/EXP-LongForecasting/Linear/etth1.sh: L 336, individual=False, batch 32, Adam 0.005, 10 epochs,
patience 3, lradj type1, moving average 25. As LTSF-Linear's data_factory, the training and validation loaders
shuffle and drop their last partial batch, the test loader drops it too (--keep-last-test keeps it, as AttnCore
does); the validation loss is the mean of the batch losses. The model is torch_forecast.DLinear.

usage: python3 torch_dlinear_etth1.py ETTh1.csv --pred-len 720 --seeds 1 2 3 [--threads 2]
Prints one JSON line per seed: seed, epochs, best_epoch, val losses, test_mse, test_mae, test_windows (LTSF-Linear's
score, or every window with --keep-last-test), all_windows_mse/_mae over every test window (AttnCore's score), wall_s.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_forecast import DLinear  # noqa: E402


def windows(data, start, end, seq_len, pred_len):
    n = end - start - seq_len - pred_len + 1
    idx = np.arange(n)[:, None]
    x = data[start + idx + np.arange(seq_len)[None, :]]
    y = data[start + idx + seq_len + np.arange(pred_len)[None, :]]
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def batches(n, batch, shuffle, drop_last, gen):
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch if drop_last else n
    for s in range(0, stop, batch):
        yield order[s:s + batch]


def run(path, seq_len, pred_len, seed, keep_last_test):
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=range(1, 8))
    b1 = [0, 12 * 30 * 24 - seq_len, 12 * 30 * 24 + 4 * 30 * 24 - seq_len]
    b2 = [12 * 30 * 24, 12 * 30 * 24 + 4 * 30 * 24, 12 * 30 * 24 + 8 * 30 * 24]
    train_rows = raw[b1[0]:b2[0]]
    data = (raw - train_rows.mean(0)) / train_rows.std(0)
    splits = [windows(data, b1[i], b2[i], seq_len, pred_len) for i in range(3)]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DLinear(seq_len, pred_len, 7, False, 25)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    best, best_state, best_epoch, since, vals = float("inf"), None, 0, 0, []
    t0 = time.time()
    for epoch in range(10):
        model.train()
        x, y = splits[0]
        for i in batches(len(x), 32, True, True, gen):
            opt.zero_grad()
            loss = ((model(x[i]) - y[i]) ** 2).mean()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            x, y = splits[1]
            val = float(np.mean([((model(x[i]) - y[i]) ** 2).mean().item() for i in batches(len(x), 32, True, True, gen)]))
        vals.append(val)
        if val < best:
            best, best_epoch, since = val, epoch + 1, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= 3:
                break
        for g in opt.param_groups:  # adjust_learning_rate(type1) with epoch + 1
            g["lr"] = 0.005 * 0.5 ** epoch
    model.load_state_dict(best_state)
    with torch.no_grad():
        x, y = splits[2]
        e = torch.cat([model(x[i]) - y[i] for i in batches(len(x), 32, False, False, gen)])
    kept = len(x) if keep_last_test else len(x) - len(x) % 32
    # Both scores from one model: LTSF-Linear's (the test loader drops its last partial batch) and AttnCore's (every window).
    return dict(seed=seed, pred_len=pred_len, epochs=len(vals), best_epoch=best_epoch, val=[round(v, 5) for v in vals],
                test_mse=(e[:kept] ** 2).mean().item(), test_mae=e[:kept].abs().mean().item(), test_windows=kept,
                all_windows_mse=(e ** 2).mean().item(), all_windows_mae=e.abs().mean().item(), all_windows=len(x),
                wall_s=round(time.time() - t0, 1))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--seq-len", type=int, default=336)
    p.add_argument("--pred-len", type=int, default=720)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep-last-test", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for s in a.seeds:
        print(json.dumps(run(a.data, a.seq_len, a.pred_len, s, a.keep_last_test)), flush=True)
