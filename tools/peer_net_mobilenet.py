#!/usr/bin/python3
"""PyTorch's training step of "mobilenet_conv", the peer of convgraph_bench_net --net mobilenet_conv.

The network (as tools/bench_net.cpp builds it): MobileNet-v1, width 1.0, every BatchNorm replaced
by the conv's own bias: conv 3x3/2 (3 -> 32) + bias + ReLU, then 13 depthwise-separable blocks
(3x3 depthwise + bias + ReLU, 1x1 + bias + ReLU; strides 1,2,1,2,1,2,1,1,1,1,1,2,1), global mean
pool, linear 1024 -> 1000 with bias, loss = mean of (logits - target)^2. One step: grads set to
None, forward + loss, backward, in-place SGD (lr 0.01) with one torch._foreach_add_. He-normal
(fan_in) conv weights, zero biases. The CPU measurement follows the shared bench's peer_net.py:
W warm-up steps, the median of K timed steps, peak memory = VmHWM growth over the steps.

  /usr/bin/python3 tools/peer_net_mobilenet.py [--batch 8] [--threads 2] [--steps 5]
                                               [--warmup 2] [--image-size 224] [--out FILE.json]
"""
import argparse
import json
import os
import statistics
import sys
import time

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
          (512, 1), (512, 1), (1024, 2), (1024, 1)]


def make_model():
    """The network, with its initialisation (He-normal fan_in conv weights, zero biases)."""

    class MobileNetConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=True)
            layers, cin = [], 32
            for cout, stride in BLOCKS:
                layers.append(nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=True))
                layers.append(nn.Conv2d(cin, cout, 1, bias=True))
                cin = cout
            self.layers = nn.ModuleList(layers)
            self.fc = nn.Linear(cin, 1000, bias=True)

        def forward(self, x):
            x = F.relu(self.stem(x), inplace=True)
            for layer in self.layers:
                x = F.relu(layer(x), inplace=True)
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = MobileNetConv()
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(mod.bias)
    return model


def vm_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    # The allocator and threads of the shared bench's CPU peers: jemalloc (when installed:
    # libjemalloc2) in a re-executed process, OpenMP limited to the threads asked for.
    if os.environ.get("PEER_MOBILENET_ALLOC") is None:
        env = dict(os.environ, PEER_MOBILENET_ALLOC="default", OMP_NUM_THREADS=str(args.threads))
        if os.path.exists(JEMALLOC):
            env.update(LD_PRELOAD=JEMALLOC, PEER_MOBILENET_ALLOC="jemalloc")
        else:
            print(f"warning: {JEMALLOC} not found; using glibc malloc", file=sys.stderr)
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)

    global torch, nn, F
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = make_model()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g)
    t = torch.randn(args.batch, 1000, generator=g)

    def step():
        for p in params:
            p.grad = None
        loss = F.mse_loss(model(x), t)
        loss.backward()
        with torch.no_grad():
            torch._foreach_add_(params, [p.grad for p in params], alpha=-args.lr)
        return float(loss)

    hwm0 = vm_status("VmHWM")
    losses, warm_ms, step_ms = [], [], []
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        losses.append(step())
        warm_ms.append((time.perf_counter() - t0) * 1e3)
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        step_ms.append((time.perf_counter() - t0) * 1e3)
    hwm1 = vm_status("VmHWM")
    med = statistics.median(step_ms)
    result = {
        "net": "mobilenet_conv", "peer": f"PyTorch {torch.__version__}",
        "alloc": os.environ.get("PEER_MOBILENET_ALLOC"), "batch": args.batch,
        "threads": args.threads, "image_size": args.image_size,
        "params": sum(p.numel() for p in params), "step_ms_all": step_ms,
        "step_ms_median": med, "step_ms_min": min(step_ms), "warmup_step_ms": warm_ms,
        "first_step_ms": warm_ms[0] if warm_ms else None,
        "images_per_s": args.batch / (med * 1e-3), "losses": losses,
        "peak_mem_bytes": (hwm1 - hwm0) if (hwm0 and hwm1) else None,
    }
    print(f"mobilenet_conv PyTorch {torch.__version__}, N={args.batch}, {args.threads} threads: "
          f"step median {med:.1f} ms, peak {result['peak_mem_bytes'] / 2**30:.3f} GiB, "
          f"loss {losses[0]:.6g} -> {losses[-1]:.6g}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
