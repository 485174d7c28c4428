#!/usr/bin/env python3
"""PyTorch eager reference for `rcaffe time --gpu 0` (scripts/gpu-check.sh).

Times forward + backward (what `rcaffe time` measures: the loss's gradient
through every layer, no update) of CaffeNet and ResNet-50 written in plain
PyTorch with the same layers, shapes and batch as the rcaffe nets, in fp32
with TF32 off (rcaffe's cuDNN/cuBLAS paths are plain fp32 too). Also times a
full SGD step (forward, backward, update) for reference.

    python3 scripts/torch_bench.py --net caffenet --batch 128 --iters 20

Prints one line per net: `torch NET batch B fwd_bwd_ms X step_ms Y images_per_s Z`.
Needs only `torch` (no torchvision), so it runs on the lent GPU machine's
PyTorch install without network.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CaffeNet(nn.Module):
    """bvlc_reference_caffenet: grouped conv2/4/5, LRN after pool1/pool2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)

    def forward(self, x):
        x = self.lrn(F.max_pool2d(F.relu(self.conv1(x)), 3, 2, ceil_mode=True))
        x = self.lrn(F.max_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2, ceil_mode=True)
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


class Bottleneck(nn.Module):
    """ResNet-50's block as in the Caffe deploy net: BN + Scale = BatchNorm2d."""

    def __init__(self, cin, mid, stride, project):
        super().__init__()
        self.c1 = nn.Conv2d(cin, mid, 1, stride=stride, bias=False)
        self.b1 = nn.BatchNorm2d(mid)
        self.c2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(mid)
        self.c3 = nn.Conv2d(mid, mid * 4, 1, bias=False)
        self.b3 = nn.BatchNorm2d(mid * 4)
        self.proj = None
        if project:
            self.proj = nn.Sequential(
                nn.Conv2d(cin, mid * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(mid * 4),
            )

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        s = x if self.proj is None else self.proj(x)
        return F.relu(y + s)


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for mid, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(cin, mid, stride if i == 0 else 1, i == 0))
                cin = mid * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, ceil_mode=True)
        x = self.blocks(x)
        x = F.avg_pool2d(x, 7)
        return self.fc(torch.flatten(x, 1))


NETS = {"caffenet": (CaffeNet, 227), "resnet50": (ResNet50, 224)}


def timed(fn, iters, dev):
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        fn()
    torch.cuda.synchronize(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=sorted(NETS), action="append", required=True)
    ap.add_argument("--batch", type=int, action="append", required=True)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    if len(a.batch) != len(a.net):
        ap.error("give one --batch per --net")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda:0")
    for name, batch in zip(a.net, a.batch):
        ctor, side = NETS[name]
        model = ctor().to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, side, side, device=dev)
        y = torch.randint(0, 1000, (batch,), device=dev)

        def fwd_bwd():
            model.zero_grad(set_to_none=False)
            F.cross_entropy(model(x), y).backward()

        def step():
            fwd_bwd()
            opt.step()

        fb = timed(fwd_bwd, a.iters, dev)
        st = timed(step, a.iters, dev)
        print(
            f"torch {name} batch {batch} fwd_bwd_ms {fb:.2f} step_ms {st:.2f} "
            f"images_per_s {batch / st * 1e3:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
