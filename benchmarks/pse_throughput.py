"""Batched PSE throughput on 512 x 512 masks, beside a per-pair loop and one plain `sum` pass.

    python benchmarks/pse_throughput.py [--n 64] [--size 512] [--device cpu] [--repeat 5] [--cpu-time]

All three read the same N mask pairs in one run; the rates are pairs per second (best of the
repeats) and the ratios are what the target is judged by: batched PSE at >= 60 % of the rate of
one `sum` pass over the masks (the cost of reading them). On a shared machine wall time swings with
the other processes; `--cpu-time` runs torch on one thread and times the thread's CPU time instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pos_core.pse import pse, pse_batch  # noqa: E402


def _best(fn, repeat: int, sync, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync()
        t = clock()
        fn()
        sync()
        best = min(best, clock() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="mask pairs")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true", help="one torch thread, timed by its CPU time")
    args = ap.parse_args()
    if args.cpu_time:
        torch.set_num_threads(1)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    shape = (args.n, args.size, args.size)
    a = (torch.rand(shape, generator=g) > 0.7).float().to(dev)
    b = (torch.rand(shape, generator=g) > 0.6).float().to(dev)

    pse_batch(a[:2], b[:2], "left")  # warm-up
    clock = time.thread_time if args.cpu_time else time.perf_counter
    t_sum = _best(lambda: (a.sum(), b.sum()), args.repeat, sync, clock)
    t_batch = _best(lambda: pse_batch(a, b, "left").scores, args.repeat, sync, clock)
    t_trust = _best(lambda: pse_batch(a, b, "left", validate=False).scores, args.repeat, sync, clock)
    t_above = _best(lambda: pse_batch(a, b, "above").scores, args.repeat, sync, clock)
    t_loop = _best(lambda: [pse(a[i], b[i], "left") for i in range(args.n)], max(1, args.repeat // 2), sync, clock)

    rate = {k: args.n / t for k, t in (("sum pass", t_sum), ("batched PSE", t_batch), ("per-pair loop", t_loop),
                                       ("batched, unchecked", t_trust), ("batched, above", t_above))}
    print(f"{args.n} pairs of {args.size}x{args.size} float32 masks on {dev} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'thread CPU time' if args.cpu_time else 'wall time'})")
    for k, v in rate.items():
        print(f"  {k:20s} {v:10.1f} pairs/s")
    print(f"  batched PSE (left, validated) / sum pass   = {rate['batched PSE'] / rate['sum pass']:.2f}  (target >= 0.60)")
    print(f"  batched PSE (left, unchecked) / sum pass   = {rate['batched, unchecked'] / rate['sum pass']:.2f}")
    print(f"  batched PSE (above, validated) / sum pass  = {rate['batched, above'] / rate['sum pass']:.2f}")
    print(f"  batched PSE / per-pair loop                = {rate['batched PSE'] / rate['per-pair loop']:.2f}")


if __name__ == "__main__":
    main()
