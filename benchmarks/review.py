"""The DVAE review's benchmark on a built-in corpus, from training to the committed results file.

    python -m benchmarks.review speech            # review_benchmark: asterisk speech
    python -m benchmarks.review motion            # review_mocap: the climbing capture, split within each take
    python -m benchmarks.review motion-takes      # the same, the capture's own split: 3 takes train, 1 tests
    python -m benchmarks.review motion-windows-apart   # split within each take, training windows side by side
    python -m benchmarks.review speech --resume   # after an interruption: finished trials stay
    python -m benchmarks.review speech --table    # the committed results as a Markdown table
    python -m benchmarks.review speech --rerun dkf,dsae   # those rows again, after a fix

Runs the space's search (every row of the review with three seeds, budget `small` by
default: the 2-core CPU) into experiments/<name>, then scores every row's checkpoints on
the test split with `analysis.evaluate` and writes benchmarks/results/review_<corpus>.json
(each row's seeds, their mean and 95% interval, the protocol, the rank correlation with
the review) with the same table as review.md beside the experiment. With --evaluate-only
it scores the trials that have ended so far (a partial result while the search runs).
With --rerun the named rows are trained again into experiments/<name>-rerun-<rows> and
the results file takes those rows from there, the others from the first run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dvae import runner
from analysis import evaluate, review

RESULTS = Path(__file__).resolve().parent / "results"
# kind: (space, experiment name, results file, settings over the space's)
# The motion rows before the training windows overlapped: side by side, 500 epochs (1,000 steps)
WINDOWS_APART = ["--set", "window_hop=50", "--set", "epochs=500", "--set", "patience=50", "--set", "kl_warmup_epochs=50"]
BENCHMARKS = {"speech": ("review_benchmark", "review-asterisk", "review_asterisk.json", []),
              "motion": ("review_mocap", "review-mocap-within", "review_mocap.json", []),
              "motion-windows-apart": ("review_mocap", "review-mocap-windows-apart", "review_mocap_windows_apart.json",
                                       WINDOWS_APART),
              "motion-takes": ("review_mocap", "review-mocap", "review_mocap_takes.json",
                               ["--set", "split=corpus", *WINDOWS_APART])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=BENCHMARKS, help="speech (asterisk), motion, motion-takes or motion-windows-apart (mocap)")
    p.add_argument("--budget", default="small", help="the space's budget (default small: a 2-core CPU)")
    p.add_argument("--storage", default="experiments", help="folder of experiments (default ./experiments)")
    p.add_argument("--resume", action="store_true", help="go on with an interrupted run")
    p.add_argument("--evaluate-only", action="store_true", help="score what the experiment holds; train nothing")
    p.add_argument("--jobs", type=int, default=2, help="checkpoints scored at once (default 2)")
    p.add_argument("--rerun", metavar="ROW,...",
                   help="train these rows again (after a fix) into an experiment of their own; they replace "
                        "the first run's in the results file")
    p.add_argument("--table", action="store_true", help="print the committed results file as Markdown; run nothing")
    args, runner_args = p.parse_known_args(argv)
    space, name, results_file, settings = BENCHMARKS[args.kind]
    if args.table:
        print(review.markdown(json.loads((RESULTS / results_file).read_text())))
        return 0
    name = f"{name}-{args.budget}"
    experiments = [Path(args.storage) / name]
    train = name
    if args.rerun:
        rows = [row.strip() for row in args.rerun.split(",") if row.strip()]
        train = f"{name}-rerun-{'-'.join(rows)}"
        runner_args = ["--models", ",".join(rows), *runner_args]
        if not experiments[0].is_dir():
            print(f"benchmarks.review: --rerun replaces rows of {experiments[0]}, which does not exist; "
                  "run the benchmark first", file=sys.stderr)
            return 2
        experiments.append(Path(args.storage) / train)
    if not args.evaluate_only:
        status = runner.main(["--space", space, "--budget", args.budget, "--name", train, "--storage",
                              args.storage, "--no-dashboard", *(["--resume"] if args.resume else []),
                              *([] if args.resume else settings), *runner_args])
        if status != 0:
            return status
    return evaluate.main([*map(str, experiments), "--jobs", str(args.jobs), "--review-json",
                          str(RESULTS / results_file), *(["--latest"] if args.rerun else []),
                          *(["--finished"] if args.evaluate_only else [])])


if __name__ == "__main__":
    sys.exit(main())
