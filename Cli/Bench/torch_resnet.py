"""PyTorch side of `attncore bench resnet-step --vs torch` (imported by torch_bench.py).

The same architectures as AttnCore's Models/Vision (torchvision is not installed here): CIFAR ResNet-20/32/56 with
option-B shortcuts and ImageNet ResNet-18/34/50 (torchvision v1.5 bottlenecks), optionally with SE (r = 4 in the
CIFAR networks, 16 in the ImageNet ones) on every residual branch; one SGD step (Nesterov momentum 0.9, weight
decay 5e-4, lr 0.1) on random images and labels, as Cli/Bench/ResNetStepBench.cs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        h = max(1, c // r)
        self.fc1, self.fc2 = nn.Conv2d(c, h, 1), nn.Conv2d(h, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def downsample(cin, cout, stride):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride, se):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.se = SE(c, se) if se else None
        self.downsample = downsample(cin, c, stride)

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.se is not None:
            h = self.se(h)
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, w, stride, se):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, w, 1, bias=False), nn.BatchNorm2d(w)
        self.conv2, self.bn2 = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
        self.conv3, self.bn3 = nn.Conv2d(w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w)
        self.se = SE(4 * w, se) if se else None
        self.downsample = downsample(cin, 4 * w, stride)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        if self.se is not None:
            h = self.se(h)
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, blocks, widths, block, imagenet, classes, se, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, widths[0], 7, 2, 3, bias=False) if imagenet else nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else None
        c, layers = widths[0], []
        for s, (n, w) in enumerate(zip(blocks, widths)):
            stage = []
            for b in range(n):
                stage.append(block(c, w, 2 if b == 0 and s > 0 else 1, se))
                c = w * block.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            h = self.maxpool(h)
        return self.fc(self.layers(h).mean((2, 3)))


def make_resnet(model, classes, channels=3):
    base, _, attention = model.partition("-")
    if attention not in ("", "se"):
        raise ValueError(f"torch_resnet: attention '{attention}' has no PyTorch reference here (none or se)")
    if base in ("resnet20", "resnet32", "resnet56"):
        n = (int(base[6:]) - 2) // 6
        return ResNet([n] * 3, [16, 32, 64], Basic, False, classes, 4 if attention else 0, channels)
    spec = {"resnet18": ([2, 2, 2, 2], Basic), "resnet34": ([3, 4, 6, 3], Basic), "resnet50": ([3, 4, 6, 3], Bottleneck)}[base]
    return ResNet(spec[0], [64, 128, 256, 512], spec[1], True, classes, 16 if attention else 0, channels)


def make_resnet_step(c):
    model = make_resnet(c["model"], c["classes"]).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x = torch.randn(c["batch"], 3, c["side"], c["side"])
    y = torch.randint(0, c["classes"], (c["batch"],))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step
