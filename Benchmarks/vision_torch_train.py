"""PyTorch ResNet trained by the recipe of `attncore train vision` (docs/vision.md), to give AttnCore's vision runs a
parity floor on this machine: the same data files, the same network (Cli/Bench/torch_resnet.py, the architecture
`bench resnet-step --vs torch` runs: CIFAR ResNet-20/32/56 with projection shortcuts, optionally SE with r = 4; ImageNet
ResNet-18/34/50), the same initialisation (torchvision's Kaiming normal, fan-out, on convolutions), the same
normalisation (per-channel mean and std of the training pixels), augmentation (zero padding and random crop, horizontal
flip, optionally Random Erasing with torchvision's defaults after normalisation), optimiser (SGD, Nesterov momentum
0.9, weight decay on tensors of rank >= 2 only), schedule (OneCycleLR over the whole run, momentum not cycled),
label smoothing, batch (whole batches only) and evaluation (the whole test set in eval mode after every epoch, loss
without smoothing).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE \\
        /usr/bin/python3 Benchmarks/vision_torch_train.py --data ../shared/data/cifar10-jpeg.tar.gz \\
        --model resnet20-se --epochs 30 --seed 1 --threads 2 --out /tmp/torch_cifar.json

--data is an MNIST-layout IDX folder (Fashion-MNIST: /usr/share/datasets/fashion-mnist) or a .tar/.tar.gz with
train/<class>/*.png|jpg and test/<class>/*.png|jpg (classes in ordinal order, as AttnCore's ImageFolder). The random
streams are numpy's and torch's, so the batches and initial weights are not AttnCore's; only the procedure is the same.
"""
import argparse
import gzip
import io
import json
import math
import os
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Cli", "Bench"))
from torch_resnet import make_resnet  # noqa: E402


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_idx_folder(folder):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise FileNotFoundError(f"vision_torch_train: {folder} has no {stem}[.gz]")
    split = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        split[part] = (images[:, None, :, :].copy(), labels)
    return split


def load_tar(path):
    members = {"train": [], "test": []}
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.isfile():
                continue
            parts = m.name.strip("./").split("/")
            if len(parts) >= 3 and parts[-3] in members and parts[-1].lower().endswith((".png", ".jpg", ".jpeg")):
                members[parts[-3]].append((parts[-2], parts[-1], tar.extractfile(m).read()))
    classes = sorted({c for c, _, _ in members["train"]})
    split = {}
    for part, files in members.items():
        files.sort(key=lambda e: (e[0], e[1]))
        images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).transpose(2, 0, 1) for _, _, b in files])
        labels = np.array([classes.index(c) for c, _, _ in files], np.int64)
        split[part] = (images, labels)
    return split


def erase_box(rng, h, w):
    """torchvision's RandomErasing.get_params with its defaults (scale 0.02-0.33, ratio 0.3-3.3, ten tries)."""
    area, lo, hi = h * w, math.log(0.3), math.log(3.3)
    for _ in range(10):
        target = area * rng.uniform(0.02, 0.33)
        aspect = math.exp(rng.uniform(lo, hi))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 1 <= eh < h and 1 <= ew < w:
            return rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1), eh, ew
    return None


def batch_of(images, index, mean, std, padding, flip, erasing, rng):
    x = images[index]
    n, c, h, w = x.shape
    if padding > 0:
        padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        out = np.empty_like(x)
        offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
        for i, (dy, dx) in enumerate(offsets):
            out[i] = padded[i, :, dy:dy + h, dx:dx + w]
        x = out
    if flip:
        mirror = rng.random(n) < 0.5
        x = np.where(mirror[:, None, None, None], x[..., ::-1], x)
    t = (torch.from_numpy(np.ascontiguousarray(x)).float() / 255 - mean) / std
    if erasing > 0:
        for i in range(n):
            if rng.random() < erasing and (box := erase_box(rng, h, w)) is not None:
                top, left, eh, ew = box
                t[i, :, top:top + eh, left:left + ew] = 0
    return t


def evaluate(model, images, labels, mean, std, batch, mirror=False):
    """Test loss and accuracy; with mirror, each image's prediction is the mean softmax of the image and its
    left-right mirror (as `attncore train vision --test-flip`), and the loss is the NLL of that mean."""
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            x = (torch.from_numpy(images[s:s + batch]).float() / 255 - mean) / std
            y = torch.from_numpy(labels[s:s + batch])
            logp = F.log_softmax(model(x), 1)
            if mirror:
                logp = torch.log((logp.exp() + F.softmax(model(torch.flip(x, dims=[3])), 1)) / 2)
            loss += F.nll_loss(logp, y, reduction="sum").item()
            correct += (logp.argmax(1) == y).sum().item()
    model.train()
    return loss / len(labels), correct / len(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--crop-padding", type=int, default=4)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--random-erasing", type=float, default=0.0)
    ap.add_argument("--limit-train", type=int)
    ap.add_argument("--limit-test", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test-flip", action="store_true",
                    help="also score the final model with flip test-time augmentation (test_accuracy_flip in the JSON)")
    ap.add_argument("--out", required=True, help="JSON file: settings, one row per epoch, final accuracy and wall time")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    split = load_idx_folder(a.data) if os.path.isdir(a.data) else load_tar(a.data)
    (train_x, train_y), (test_x, test_y) = split["train"], split["test"]
    if a.limit_train:
        keep = np.sort(rng.choice(len(train_y), a.limit_train, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    if a.limit_test:
        keep = np.sort(rng.choice(len(test_y), a.limit_test, replace=False))
        test_x, test_y = test_x[keep], test_y[keep]
    pixels = train_x.reshape(len(train_y), train_x.shape[1], -1).astype(np.float64) / 255
    mean = torch.tensor(pixels.mean(axis=(0, 2)), dtype=torch.float32)[:, None, None]
    std = torch.tensor(pixels.std(axis=(0, 2)), dtype=torch.float32)[:, None, None]
    del pixels

    classes = int(max(train_y.max(), test_y.max())) + 1
    model = make_resnet(a.model, classes, channels=train_x.shape[1]).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, weight_decay=a.weight_decay, nesterov=True)
    per_epoch = len(train_y) // a.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * per_epoch, cycle_momentum=False)

    rows, start = [], time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        order = rng.permutation(len(train_y))
        total = 0.0
        for b in range(per_epoch):
            index = order[b * a.batch:(b + 1) * a.batch]
            x = batch_of(train_x, index, mean, std, a.crop_padding, not a.no_flip, a.random_erasing, rng)
            y = torch.from_numpy(train_y[index])
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=a.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        test_loss, accuracy = evaluate(model, test_x, test_y, mean, std, a.batch)
        rows.append({"epoch": epoch, "train_loss": total / per_epoch, "test_loss": test_loss, "test_accuracy": accuracy,
                     "elapsed_s": time.perf_counter() - start})
        print(json.dumps(rows[-1]), flush=True)

    result = {"settings": vars(a), "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters()),
              "epochs": rows, "test_accuracy": rows[-1]["test_accuracy"], "wall_s": time.perf_counter() - start}
    if a.test_flip:
        result["test_loss_flip"], result["test_accuracy_flip"] = evaluate(model, test_x, test_y, mean, std, a.batch, mirror=True)
        print(json.dumps({"test_accuracy_flip": result["test_accuracy_flip"], "test_loss_flip": result["test_loss_flip"]}), flush=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    print(json.dumps({"model": a.model, "test_accuracy": result["test_accuracy"], "epochs": a.epochs, "wall_s": result["wall_s"]}))


if __name__ == "__main__":
    main()
