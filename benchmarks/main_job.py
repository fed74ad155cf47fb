"""The main job as a user runs it, timed, and what its best model scores on the test split.

    python -m benchmarks.main_job            # writes benchmarks/results/main_job.json
    python -m benchmarks.main_job --out benchmarks/results/main_job_other_machine.json

Runs `tune_runner.py --space vrnn_priors` (budget small, without the dashboard) into a fresh
experiment, times it from the command to its summary (the runner's quick test of the best
trial on 50 test utterances included), then scores that trial's checkpoint on the whole test
split and writes the results file: the command, the wall time, the machine, the trials by
outcome, the best trial's configuration and both test scores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import write_result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def scores(evaluation: dict) -> dict:
    return {"units": evaluation["n"], **{m: s["mean"] for m, s in evaluation["metrics"].items()}}


def _plain(value):
    """A JSON value from a pandas cell: numpy numbers as Python ones, NaN (a field the
    configuration does not have) as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default="experiments", help="folder of experiments (default ./experiments)")
    p.add_argument("--out", default=str(RESULTS / "main_job.json"),
                   help="the results file (default benchmarks/results/main_job.json)")
    args = p.parse_args(argv)
    if Path(args.out).is_dir():
        p.error(f"--out {args.out} is a folder; name the results file")
    name = f"main-job-{time.strftime('%Y%m%d-%H%M%S')}"
    command = ["tune_runner.py", "--space", "vrnn_priors", "--no-dashboard", "--name", name, "--storage", args.storage]
    started = time.perf_counter()
    run = subprocess.run([sys.executable, *command], cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    wall = time.perf_counter() - started
    if run.returncode != 0:
        print(f"benchmarks.main_job: the main job failed (exit {run.returncode})", file=sys.stderr)
        return run.returncode

    from analysis.results import load_trials
    from dvae.evaluation import evaluate_checkpoint
    experiment = Path(args.storage) / name
    trials = load_trials(experiment)
    best = trials.loc[trials["val_loss"].idxmin()]
    checkpoint = Path(best["checkpoint"])
    quick = json.loads((checkpoint.parent / "eval_test.json").read_text())  # the runner's quick test
    whole = evaluate_checkpoint(checkpoint, split="test")
    searched = [c for c in trials.columns if c.startswith("config/")]
    result = {
        "command": "python " + " ".join(command[:4]), "experiment": str(experiment),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": False},
        "wall_time_s": wall,
        "trials": {"count": len(trials), **{k: int(v) for k, v in trials["status"].value_counts().items()}},
        "best_trial": {"trial_id": best["trial_id"], "val_loss": float(best["val_loss"]),
                       "epochs_run": int(best["epochs_run"]),
                       "config": {c.removeprefix("config/"): _plain(best[c]) for c in searched
                                  if c.removeprefix("config/") in ("prior", "student_df", "kl_warmup_epochs", "lr",
                                                                   "lr_schedule", "z_dim")}},
        "quick_test": scores(quick), "test": scores(whole),
    }
    write_result(result, Path(args.out))
    print(f"main job: {wall / 60:.1f} min; best trial {best['trial_id']}: test SI-SDR "
          f"{result['quick_test']['si_sdr']:.2f} dB on {result['quick_test']['units']} utterances, "
          f"{result['test']['si_sdr']:.2f} dB on all {result['test']['units']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
