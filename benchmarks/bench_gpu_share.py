"""Trials sharing one GPU: the throughput of N concurrent trials over that of one trial alone.

    python -m benchmarks.bench_gpu_share [--models vrnn srnn dkf rvae_causal] [--trials 4] [--out FILE.json]

(run from the repository root, on a machine with a CUDA GPU). A Ray trial that asks for a
quarter of a GPU (`gpu: 0.25`) is a worker process whose CUDA_VISIBLE_DEVICES names the one
GPU that it shares with three others; Ray adds no isolation, so four trials at 0.25 are
four processes running their steps on one device at once. This benchmark runs exactly that
without Ray: for each model, first one process alone, then --trials processes at once, each
running the trainer's step (forward, loss, backward, clipping, Adam; the loss read back to the
host after every step, as the trainer reads it) at the review's speech sizes (batch 128, 513
bins, 50 frames, z 16, RNN 128) on a batch held on the GPU; with --cuda-graph, the trainer's
step recorded as one CUDA graph (train.cuda_graph). Every process builds its model and warms
up (compiling or recording the graph), then all start together at a barrier and count
the steps they finish in --seconds. Each process gets its share of the CPU threads
(cpu_count / --trials), as a trial's CPU share sets them, in both runs.

Throughput: steps per second, summed over the processes. The figure reported is the ratio
of the shared run's throughput to the lone trial's; the target is 2.5 at 4 trials. What
this leaves out of a trial: copying each batch to the GPU, validation and checkpoints.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

from dvae.config import MODEL_NAMES, ModelConfig
from dvae.models import build_model

from . import write_result
from .bench_step import make_step

ROOT = Path(__file__).resolve().parent.parent
SHARE_TARGET = 2.5  # throughput of 4 trials sharing the GPU over one trial alone


def trial(name: str, args, threads: int, start, done) -> None:
    """One trial's process: build, warm up, wait for the others, then step for --seconds."""
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    cfg = ModelConfig(name=name, x_dim=513, z_dim=16, h_dim=128, dense_dim=128, v_dim=16, likelihood="itakura_saito")
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    if args.compile:
        model.compile_steps(args.compile_mode)
    x = torch.randn(args.batch, args.frames, 513, generator=torch.Generator().manual_seed(1)).exp().to(device)
    step = make_step(model, x, args.amp, args.cuda_graph)
    for _ in range(args.warmup):
        step().total.item()
    start.wait()
    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < args.seconds:
        step().total.item()  # a host sync per step, as the trainer's logging of the loss makes
        steps += 1
    done.put(steps / (time.perf_counter() - began))


def throughput(name: str, n: int, args) -> list[float]:
    """Steps per second of each of n processes running `name` at once."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    start, done = context.Barrier(n), context.Queue()
    threads = max(1, (os.cpu_count() or 1) // args.trials)
    procs = [context.Process(target=trial, args=(name, args, threads, start, done)) for _ in range(n)]
    for p in procs:
        p.start()
    rates = [done.get(timeout=args.seconds + 900) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {name} trial process exited with {p.exitcode}")
    return rates


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu_share", description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["vrnn", "srnn", "dkf", "rvae_causal"], choices=MODEL_NAMES)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--amp", choices=["bf16"], default=None)
    p.add_argument("--cuda-graph", action="store_true", help="each trial replays its step as a CUDA graph")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a check of the plumbing only")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.trials < 2:
        p.error("--trials must be at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is available: this benchmark measures trials sharing one GPU")
    rows = []
    for name in args.models:
        alone = throughput(name, 1, args)
        shared = throughput(name, args.trials, args)
        row = {"model": name, "alone_steps_per_s": sum(alone), "shared_steps_per_s": sum(shared),
               "shared_per_trial_steps_per_s": shared, "ratio": sum(shared) / sum(alone)}
        row["holds"] = row["ratio"] >= SHARE_TARGET if args.trials == 4 else None
        rows.append(row)
        print(f"  {name}: alone {row['alone_steps_per_s']:.1f} steps/s, {args.trials} at once "
              f"{row['shared_steps_per_s']:.1f} steps/s ({row['ratio']:.2f}x)", flush=True)
    result = {
        "command": "python -m benchmarks.bench_gpu_share " + " ".join(argv),
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "trials": args.trials, "frames": args.frames,
        "batch": args.batch, "seconds": args.seconds, "compile": args.compile, "compile_mode": args.compile_mode,
        "cuda_graph": args.cuda_graph, "amp": args.amp, "target": SHARE_TARGET, "rows": rows,
    }
    print(f"\n{'model':<15}{'alone steps/s':>15}{f'{args.trials} trials steps/s':>20}{'ratio':>8}")
    for r in rows:
        verdict = "" if r["holds"] is None else ("holds" if r["holds"] else "FAILS")
        print(f"{r['model']:<15}{r['alone_steps_per_s']:>15.1f}{r['shared_steps_per_s']:>20.1f}{r['ratio']:>7.2f}x  {verdict}")
    write_result(result, Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"gpu_share_{args.device}.json")
    return result


if __name__ == "__main__":
    main()
