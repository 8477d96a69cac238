#!/usr/bin/env python3
"""PyTorch's per-op overhead, for comparison with convgraph_bench_graph_scale's us/step.

A chain of N multiplies of a 16-element float32 tensor (y = y * 1.000001), run eagerly: the time
per multiply is what the framework costs around a kernel with almost no work. With --grad the
chain is recorded by autograd and differentiated (sum(y).backward()), as the convgraph benchmark
computes the cost and its gradient: the time is then divided by the 2N multiplies forward and
backward.

  python3 tools/peer_op_overhead.py [--sizes 10000,100000] [--repeats 5] [--threads 1]
                                    [--out FILE.json]
"""
import argparse
import json
import statistics
import time

import torch


def chain(n, x):
    y = x
    for _ in range(n):
        y = y * 1.000001
    return y


def time_forward(n, repeats):
    x = torch.ones(16, dtype=torch.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            y = chain(n, x)
        y.sum().item()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_forward_backward(n, repeats):
    times = []
    for _ in range(repeats):
        x = torch.ones(16, dtype=torch.float32, requires_grad=True)
        t0 = time.perf_counter()
        cost = chain(n, x).sum()
        cost.backward()
        x.grad.sum().item()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s)")
    print(f"{'chain':>10} {'fwd ms':>10} {'us/op':>8} {'fwd+bwd ms':>12} {'us/op':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        time_forward(min(n, 1000), 1)  # warm up
        fwd = time_forward(n, args.repeats)
        both = time_forward_backward(n, args.repeats)
        row = {
            "multiplies": n,
            "forward_ms": fwd * 1e3,
            "forward_us_per_op": fwd * 1e6 / n,
            "forward_backward_ms": both * 1e3,
            "forward_backward_us_per_op": both * 1e6 / (2 * n),
        }
        rows.append(row)
        print(f"{n:>10} {row['forward_ms']:>10.1f} {row['forward_us_per_op']:>8.3f} "
              f"{row['forward_backward_ms']:>12.1f} {row['forward_backward_us_per_op']:>8.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "chains": rows}, f,
                      indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
