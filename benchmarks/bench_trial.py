"""A Ray trial's start-up overhead: from the trial being scheduled to its first epoch starting.

    python -m benchmarks.bench_trial [--space vrnn_priors] [--budget smoke] [--trials 5] [--out FILE.json]

(run from the repository root). It runs `--trials` trials of a shipped space through the
tuner that tune_runner builds (dvae.search.build_tuner), one at a time with every CPU, one
epoch each, without ASHA, on the space's corpus prepared beforehand as tune_runner does.
Timed from the driver, per trial:

- scheduled: the moment the trial first exists. The search proposes a trial only when a
  slot is free (at most one trial at a time here), so it is scheduled as soon as it exists.
- first epoch: the arrival of its first result less that epoch's own time (`epoch_time_s`,
  training and validation). Writing the checkpoint and carrying the report back to the
  driver count as overhead, so the figure is an upper bound.

Everything a trial does before its first epoch is in the overhead: starting (or reusing) the
worker process, importing torch and the package, opening the memory-mapped corpus, building
the model. The first trial also starts the first worker process of the Ray instance.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import write_result

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


def startup_overheads(space, trials: int, storage: Path) -> list[dict]:
    """Runs the trials and returns, per trial in order of start, its timings (seconds)."""
    import ray
    from ray import tune

    from dvae.data import prepare_corpus
    from dvae.search import Resources, build_tuner

    space = dataclasses.replace(space, fixed={**space.fixed, "epochs": 1, "patience": 0, "media_every": 0},
                                asha=None, seeds=(), num_samples=trials)
    prepare_corpus(space.config(space.variants[0]).data)

    class Timings(tune.Callback):
        def __init__(self):
            self.rows: dict[str, dict] = {}

        def on_step_end(self, iteration, trials, **info):
            now = time.time()
            for trial in trials:
                self.rows.setdefault(trial.trial_id, {"scheduled": now})

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = self.rows.setdefault(trial.trial_id, {"scheduled": time.time()})
            if "first_epoch" not in row:
                row["first_epoch"] = time.time() - result["epoch_time_s"]
                row["epoch_time_s"] = result["epoch_time_s"]

    timings = Timings()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "1"
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, configure_logging=False)
    try:
        cpus = ray.cluster_resources()["CPU"]
        resources = Resources.fit(cpus, 0, cpus, 0)
        experiment_dir = storage / "bench_trial"
        experiment_dir.mkdir(parents=True)
        results = build_tuner(space, experiment_dir, resources, callbacks=[timings]).fit()
    finally:
        ray.shutdown()
    if results.num_errors:
        raise RuntimeError(f"{results.num_errors} trial(s) failed: {[r.error for r in results.errors][:1]}")
    rows = sorted(timings.rows.values(), key=lambda r: r["scheduled"])
    return [{"overhead_s": r["first_epoch"] - r["scheduled"], "epoch_time_s": r["epoch_time_s"]} for r in rows]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_trial", description=__doc__.split("\n")[0])
    p.add_argument("--space", default="vrnn_priors")
    p.add_argument("--budget", default="smoke")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--storage", default=None, help="experiment folder's parent (default: a temporary folder)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "trial_startup_cpu.json"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.trials < 1:
        p.error("--trials must be at least 1")

    from dvae.spaces import load_space

    space = load_space(args.space, args.budget)
    with tempfile.TemporaryDirectory(prefix="bench_trial_") as tmp:
        storage = Path(args.storage).resolve() if args.storage else Path(tmp)
        rows = startup_overheads(space, args.trials, storage)
    later = [r["overhead_s"] for r in rows[1:]]
    result = {
        "command": "python -m benchmarks.bench_trial " + " ".join(sys.argv[1:] if argv is None else argv),
        "space": args.space, "budget": args.budget, "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "trials": rows, "first_s": rows[0]["overhead_s"], "later_median_s": statistics.median(later) if later else None,
        "max_s": max(r["overhead_s"] for r in rows), "target_s": TARGET_S,
    }
    result["holds"] = result["max_s"] < TARGET_S
    for i, r in enumerate(rows):
        print(f"trial {i + 1}: {r['overhead_s']:.2f} s from scheduled to first epoch (the epoch took {r['epoch_time_s']:.2f} s)")
    print(f"{'holds' if result['holds'] else 'FAILS'}  every trial's start-up under {TARGET_S:g} s (max {result['max_s']:.2f} s)")
    write_result(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
