"""PyTorch SASRec trained and evaluated by exactly the protocol of `attncore train recommend` (docs/recommendation.md),
to give AttnCore's SASRec a parity floor on this machine: same data file, split, sampler, settings, evaluation users,
negatives and tie rule, with the authors' PyTorch model (Cli/Bench/torch_sasrec.py, pmixer/SASRec.pytorch's
arrangement) and their loss and optimiser (BCE with logits over non-padded positions, Adam lr 1e-3, betas 0.9/0.98).

    /usr/bin/python3 Benchmarks/sasrec_torch_train.py --data ../shared/data/amazon-games.txt --seed 1 \
        --max-minutes 30 --eval-every 20 --out /tmp/torch_sasrec.json

Differences from the authors' main.py, all shared with AttnCore's run: validation every --eval-every epochs with early
stopping after --patience evaluations without a better NDCG@10, a wall-clock budget after which the current model is
evaluated, and the test metrics of the best validation model (sampled and full ranking). The random streams are
numpy's, so the batches are not AttnCore's batches; only the procedure is the same.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Cli", "Bench"))
from torch_sasrec import SASRec  # noqa: E402


def read_user_item(path):
    by_user = {}
    items = users = 0
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected 'user item', got {line!r}")
            u, i = int(parts[0]), int(parts[1])
            by_user.setdefault(u, []).append(i)
            users, items = max(users, u), max(items, i)
    return [by_user.get(u, []) for u in range(users + 1)], items


def split(by_user):
    """The SASRec leave-one-out split: fewer than 3 interactions are training-only."""
    train, valid, test = [], [], []
    for seq in by_user:
        if len(seq) < 3:
            train.append(list(seq)); valid.append(0); test.append(0)
        else:
            train.append(seq[:-2]); valid.append(seq[-2]); test.append(seq[-1])
    return train, valid, test


def left_pad(seq, n):
    row = np.zeros(n, dtype=np.int64)
    take = seq[-n:]
    if take:
        row[n - len(take):] = take
    return row


class Sampler:
    """The authors' sample_function: a user with 2+ training items, inputs, next items and one negative per position
    (an item the user never interacted with in training), drawn a row at a time with numpy's vector calls."""

    def __init__(self, train, items, n, rng):
        self.items, self.n, self.rng = items, n, rng
        self.eligible = np.array([u for u in range(1, len(train)) if len(train[u]) >= 2], dtype=np.int64)
        self.train = [np.asarray(t, dtype=np.int64) for t in train]
        self.seen = [np.unique(t) for t in self.train]

    def batch(self, size):
        n = self.n
        h = np.zeros((size, n), np.int64); p = np.zeros((size, n), np.int64); g = np.zeros((size, n), np.int64)
        for b, u in enumerate(self.eligible[self.rng.integers(len(self.eligible), size=size)]):
            t = self.train[u]
            m = min(len(t) - 1, n)  # right-aligned: inputs t[..-1], next items t[1..], as the authors' loop fills them
            h[b, n - m:], p[b, n - m:] = t[-m - 1:-1], t[-m:]
            negs = self.rng.integers(1, self.items + 1, size=m)
            redraw = np.isin(negs, self.seen[u], assume_unique=False)
            while redraw.any():
                negs[redraw] = self.rng.integers(1, self.items + 1, size=int(redraw.sum()))
                redraw = np.isin(negs, self.seen[u])
            g[b, n - m:] = negs
        return torch.from_numpy(h), torch.from_numpy(p), torch.from_numpy(g)


def rank_of(scores, target, excluded=None):
    """0-based rank; ties count against the target (as RankingMetrics.RankOf)."""
    above = scores >= scores[target]
    above[target] = False
    if excluded is not None:
        above &= ~excluded
    return int(above.sum())


def evaluate(model, by_user, train, valid, test, users, items, n, seed, is_test, full):
    rng = np.random.default_rng(seed * 2 + (1 if is_test else 0))
    model.eval()
    hits = ndcg = fhits = fndcg = 0.0
    counted = 0
    with torch.no_grad():
        for start in range(0, len(users), 256):
            chunk = users[start:start + 256]
            rows, cands = [], []
            for u in chunk:
                hist = train[u] + ([valid[u]] if is_test else [])
                rows.append(left_pad(hist, n))
                excluded = set(by_user[u])
                c = [test[u] if is_test else valid[u]]
                for _ in range(100):
                    x = rng.integers(1, items + 1)
                    while x in excluded:
                        x = rng.integers(1, items + 1)
                    c.append(x)
                cands.append(c)
            h = torch.from_numpy(np.stack(rows))
            last = model.log2feats(h)[:, -1, :]
            scores = (model.item_emb(torch.tensor(cands)) * last.unsqueeze(1)).sum(-1).numpy()
            everything = (last @ model.item_emb.weight.T).numpy() if full else None
            for i, u in enumerate(chunk):
                counted += 1
                r = rank_of(scores[i], 0)
                if r < 10:
                    hits += 1; ndcg += 1 / math.log2(r + 2)
                if full:
                    target = test[u] if is_test else valid[u]
                    excluded = np.zeros(items + 1, bool); excluded[0] = True
                    excluded[train[u] + ([valid[u]] if is_test else [])] = True
                    excluded[target] = False
                    r = rank_of(everything[i], target, excluded)
                    if r < 10:
                        fhits += 1; fndcg += 1 / math.log2(r + 2)
    model.train()
    report = {"hr10": hits / counted, "ndcg10": ndcg / counted, "users": counted}
    if full:
        report.update(full_hr10=fhits / counted, full_ndcg10=fndcg / counted)
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=201)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--max-minutes", type=float, default=0)
    ap.add_argument("--eval-users", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed); torch.set_num_threads(a.threads)
    by_user, items = read_user_item(a.data)
    train, valid, test = split(by_user)
    n, batch = 50, 128
    rng = np.random.default_rng(a.seed)
    sampler = Sampler(train, items, n, rng)
    evaluated = [u for u in range(1, len(by_user)) if train[u] and valid[u]]
    pick = np.random.default_rng(a.seed + 1)
    eval_users = sorted(pick.choice(evaluated, a.eval_users, replace=False).tolist()) if len(evaluated) > a.eval_users else evaluated
    model = SASRec(items, n, 50, 2, 1, 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    bce = torch.nn.BCEWithLogitsLoss()
    steps = max(1, (len(by_user) - 1) // batch)
    budget = a.max_minutes * 60 if a.max_minutes > 0 else float("inf")
    clock = time.time()
    history, best, best_state, since, stop = [], None, None, 0, "epochs"
    for epoch in range(1, a.epochs + 1):
        total, done, out_of_time = 0.0, 0, False
        while done < steps:
            if done > 0 and time.time() - clock >= budget:
                out_of_time = True
                break
            h, p, g = sampler.batch(batch)
            opt.zero_grad()
            pos, neg = model(h, p, g)
            keep = p != 0
            loss = bce(pos[keep], torch.ones_like(pos[keep])) + bce(neg[keep], torch.zeros_like(neg[keep]))
            loss.backward()
            opt.step()
            total += loss.item(); done += 1
        record = {"epoch": epoch, "steps": done, "train_loss": total / done, "wall_s": time.time() - clock}
        if epoch % a.eval_every == 0 or epoch == a.epochs or out_of_time:
            v = evaluate(model, by_user, train, valid, test, eval_users, items, n, a.seed, False, False)
            record.update(val_hr10=v["hr10"], val_ndcg10=v["ndcg10"])
            if best is None or v["ndcg10"] > best[1]["ndcg10"]:
                best, best_state, since = (epoch, v), {k: t.clone() for k, t in model.state_dict().items()}, 0
            else:
                since += 1
        history.append(record)
        print(json.dumps(record), flush=True)
        if out_of_time:
            stop = "budget"; break
        if since >= a.patience:
            stop = "patience"; break
    model.load_state_dict(best_state)
    t = evaluate(model, by_user, train, valid, test, eval_users, items, n, a.seed, True, True)
    result = {"model": "torch-sasrec", "seed": a.seed, "data": os.path.abspath(a.data), "torch": torch.__version__, "threads": a.threads,
              "stop_reason": stop, "best_epoch": best[0], "validation": best[1], "test": t, "history": history, "wall_s": time.time() - clock}
    with open(a.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    print(json.dumps({"model": "torch-sasrec", **{k: t[k] for k in ("hr10", "ndcg10", "full_hr10", "full_ndcg10")}, "epochs": len(history), "wall_s": result["wall_s"]}))


if __name__ == "__main__":
    main()
