"""The search benchmark's table: learning curves of configurations sampled uniformly from a space.

    python -m benchmarks.search_table                   # vrnn_priors at its small budget, 400 configurations
    python -m benchmarks.search_table --resume          # go on after an interruption
    python -m benchmarks.search_table --space vrnn_priors --budget smoke --configs 4 --out /tmp/t.csv
    python -m benchmarks.search_table --seed 1 --ids 112,83,10 --resume   # some of them again, another seed

Samples `--configs` configurations of the space uniformly (Optuna's RandomSampler, seed 0,
through the search's own define-by-run space, so a conditional field exists only where it
applies), trains each to the end of the budget with early stopping off, and records every
epoch's val_loss and time in a table (dvae.curves) that replayed searches read
(`tune_runner.py --replay`, benchmarks/search_efficiency.py). The table is rewritten after
each configuration; --resume trains only the configurations it does not hold yet. `--jobs`
trainings run at once, with one CPU thread each.

`--seed N --ids I,J,...` trains some of the same configurations again with another training
seed, into a table of its own (search_table_<space>_<budget>_seed<N>.csv, with a `seed`
column): how far apart two seeds of one configuration end is the noise the search benchmark's
surrogate replay adds (benchmarks/search_surrogate.py).
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def sampled_configurations(space, n: int, seed: int = 0) -> list[dict]:
    """The first `n` configurations a uniform sampler with this seed proposes (the table's:
    seed 0): {"variant": ..., field: value}."""
    import optuna

    from dvae.search import OptunaSpace
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    propose = OptunaSpace(space)
    configurations = []
    for _ in range(n):
        trial = study.ask()
        propose(trial)
        configurations.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configurations


def configuration(space, params: dict):
    """The training config of one sampled configuration ({"variant": ..., field: value})."""
    variant = next(v for v in space.variants if v.name == params["variant"])
    return space.config(variant, {k: v for k, v in params.items() if k != "variant"})


def record(job: tuple) -> tuple:
    """Trains one configuration; returns (config_id, its params, val_losses, epoch times, wall seconds)."""
    config_id, params, space_file, budget, scratch, seed = job
    import torch

    from dvae.cpu import tune_process
    from dvae.spaces import load_space
    from dvae.training import train
    tune_process()
    torch.set_num_threads(1)
    cfg = configuration(load_space(space_file, budget), params).replace(
        patience=0, media_every=0, num_threads=1, device="cpu", **({} if seed is None else {"seed": seed}))
    losses, times = [], []

    def on_epoch(metrics: dict, _checkpoint_dir) -> None:
        losses.append(metrics["val_loss"])
        times.append(metrics["epoch_time_s"])

    run_dir = Path(scratch) / f"config_{config_id:04d}"
    started = time.perf_counter()
    try:
        train(cfg, run_dir, on_epoch=on_epoch, log=lambda line: None)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)  # the curve is what is kept
    return config_id, params, losses, times, time.perf_counter() - started


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="vrnn_priors", help="a space of search_spaces/ (default vrnn_priors)")
    p.add_argument("--budget", default="small", help="the space's budget (default small: the main job's)")
    p.add_argument("--configs", type=int, default=400, help="configurations to record (default 400)")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    p.add_argument("--seed", type=int, help="train with this seed instead of the space's, into a table of its own "
                                            "(default out: search_table_<space>_<budget>_seed<N>.csv)")
    p.add_argument("--ids", help="comma-separated configuration ids: record only these (default: all --configs)")
    p.add_argument("--out", help="the table (default benchmarks/results/search_table_<space>_<budget>.csv)")
    p.add_argument("--resume", action="store_true", help="keep the table's configurations and record the rest")
    args = p.parse_args(argv)

    from dvae.curves import Curve, CurveTable
    from dvae.spaces import SpaceError, load_space, space_path
    try:
        space_file = str(space_path(args.space))
        space = load_space(space_file, args.budget)
    except SpaceError as e:
        print(f"benchmarks.search_table: {e}", file=sys.stderr)
        return 2
    if args.configs < 1 or args.jobs < 1:
        print("benchmarks.search_table: --configs and --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        ids = None if args.ids is None else sorted({int(i) for i in args.ids.split(",") if i.strip()})
    except ValueError:
        print(f"benchmarks.search_table: --ids {args.ids!r}: not comma-separated integers", file=sys.stderr)
        return 2
    if ids is not None and (not ids or ids[0] < 0 or ids[-1] >= args.configs):
        print(f"benchmarks.search_table: --ids must name configurations 0 to {args.configs - 1}", file=sys.stderr)
        return 2
    suffix = "" if args.seed is None else f"_seed{args.seed}"
    out = Path(args.out) if args.out else RESULTS / f"search_table_{space.name}_{args.budget}{suffix}.csv"
    if out.exists() and not args.resume:
        print(f"benchmarks.search_table: {out} exists; go on with --resume or choose another --out", file=sys.stderr)
        return 2
    fields = [param.name for param in space.params] + ([] if args.seed is None else ["seed"])
    seeded = {} if args.seed is None else {"seed": args.seed}
    curves = {c.config_id: c for c in CurveTable.read(out).curves} if out.exists() else {}
    configurations = sampled_configurations(space, args.configs)
    if len(curves) > args.configs:
        print(f"benchmarks.search_table: {out} already holds {len(curves)} configurations, more than "
              f"--configs {args.configs}", file=sys.stderr)
        return 2
    for config_id, curve in curves.items():
        if config_id >= len(configurations) or curve.params != {**configurations[config_id], **seeded}:
            print(f"benchmarks.search_table: {out} holds configuration {config_id} as {curve.params}, not as "
                  "this space samples it; it is another space's table", file=sys.stderr)
            return 2
    todo = [i for i in (range(len(configurations)) if ids is None else ids) if i not in curves]
    print(f"{space.name} ({args.budget}{', seed ' + str(args.seed) if seeded else ''}): "
          f"{len(configurations) if ids is None else len(ids)} configurations, {len(curves)} recorded, "
          f"{len(todo)} to train into {out}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if todo:
        # the pool's workers are daemonic and may not start the cache's own worker processes
        from dvae.data import prepare_corpus
        prepare_corpus(configuration(space, configurations[todo[0]]).data)
    scratch = tempfile.mkdtemp(prefix="search-table-")
    jobs = [(i, configurations[i], space_file, args.budget, scratch, args.seed) for i in todo]
    try:
        with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for config_id, params, losses, times, wall in pool.imap_unordered(record, jobs):
                curves[config_id] = Curve(config_id, {**params, **seeded}, tuple(losses), tuple(times))
                CurveTable.write(out, [curves[i] for i in sorted(curves)], fields)
                print(f"configuration {config_id}: best val_loss {min(losses):.2f} in {len(losses)} epochs, "
                      f"{wall:.0f} s ({len(curves)}/{len(configurations) if ids is None else len(ids)})", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
