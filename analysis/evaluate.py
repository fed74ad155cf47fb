"""Test-set scores of each model's top configurations, laid out as the DVAE review's table.

For each model, the k best configurations of the leaderboard (by val_loss unless told
otherwise) are scored on their corpus's test split with `dvae.evaluation.evaluate_checkpoint`,
every seed of a configuration separately, from each trial's best checkpoint, under the
review's protocol (see dvae.evaluation). The -GM rows of the review are scored in
generation mode, feeding the decoder its own output: SRNN-GM from its own trials, and
SRNN-TF-GM, as in the review, from the teacher-forced SRNN's checkpoints (unless the
experiment trained an srnn_tf_gm variant of its own).

The table has one row per model, in the review's order (VAE, DKF, STORN, VRNN, SRNN,
RVAE-Causal, RVAE-NonCausal, DSAE, SRNN-TF-GM, SRNN-GM), for its best configuration: each
metric as its mean ± the half-width of its 95% confidence interval, over the test
utterances for one seed, over the seeds' means when the configuration ran with several.

    python -m analysis.evaluate EXPERIMENT [...] [--k 1] [--max-utterances 50] [--jobs 2] [--out DIR]

writes evaluations.csv (every checkpoint scored), results.csv / results.md / results.html
(the table) and review.json / review.md (the benchmark beside the review's figures, with
the protocol and the rank correlation: `analysis.review`). A checkpoint's scores are kept
beside it as eval_<split>[_gm].json and reused while newer than the checkpoint and made
under the same protocol (--refresh recomputes).
"""
from __future__ import annotations

import html
import json
import logging
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from dvae import logs, metrics
from dvae.cpu import tune_process
from dvae.evaluation import METRIC_LABELS

from . import review
from .leaderboard import TABLE_CSS, html_table, markdown_table, top_per_model
from .results import (CONFIG, DERIVED_ROWS, GENERATION_MODE_MODELS, at_least_one, file_to_write, latest_rows,
                      load_trials, model_label, ordered_models, ranking_parser, searched_parameters, upload_evaluations)

_log = logging.getLogger(__name__)
# The table's metrics, in the review's order; RMSE is in evaluations.csv only.
TABLE_METRICS = ("si_sdr", "pesq", "pesq_wb", "estoi", "mpjpe")


def evaluate_top(trials: pd.DataFrame, k: int = 1, sort: str = "val_loss", ascending: bool = True,
                 split: str = "test", max_utterances: Optional[int] = None, refresh: bool = False,
                 log: Callable[[str], None] | None = None, jobs: int = 1) -> pd.DataFrame:
    """Scores the best checkpoint of every trial of each model's k best configurations,
    `jobs` checkpoints at a time (each in a process of its own when more than one).

    One row per checkpoint: model, rank (of its configuration), trial_id, seed,
    configuration (the searched hyperparameters as text), generation_mode, kind (speech
    or motion), n (units scored: utterances, or windows for motion), checkpoint,
    result_json, and per metric <metric> (mean), <metric>_ci95, <metric>_n,
    <metric>_floored and <metric>_unscored. A derived row (SRNN-TF-GM: `DERIVED_ROWS`)
    scores its source model's checkpoints in generation mode.
    """
    log = log or _log.info
    ranked = top_per_model(trials, k, sort, ascending)
    by_dir = trials.set_index("trial_dir")
    derived = {row: source for row, source in DERIVED_ROWS.items() if row not in set(trials["model"])}
    tasks = []
    for _, configuration in ranked.iterrows():
        source = configuration["model"]
        described = describe_configuration(configuration, trials[trials["model"] == source])
        for model in [source, *(row for row, of in derived.items() if of == source)]:
            for trial_dir in configuration["trial_dirs"]:
                trial = by_dir.loc[trial_dir]
                if pd.isna(trial["checkpoint"]):
                    log(f"{model} {trial['trial_id']}: no best checkpoint in {trial_dir}; skipped")
                    continue
                tasks.append({"model": model, "rank": configuration["rank"], "trial_id": trial["trial_id"],
                              "seed": trial.get(CONFIG + "seed", math.nan), "configuration": described,
                              "generation_mode": model in GENERATION_MODE_MODELS, "checkpoint": trial["checkpoint"]})
    for task in tasks:
        log(f"evaluating {task['model']} (rank {task['rank']}) trial {task['trial_id']} on {split}"
            + (" in generation mode" if task["generation_mode"] else ""))
    scoring = [(Path(t["checkpoint"]), split, t["generation_mode"], max_utterances, refresh, jobs > 1) for t in tasks]
    if jobs > 1 and len(tasks) > 1:
        # spawned, not forked: a child forked after torch's thread pools started can hang in them
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_score, scoring))
    else:
        results = [_score(args) for args in scoring]
    rows = []
    for task, result in zip(tasks, results):
        row = {**task, "kind": result["settings"]["kind"], "n": result["n"], "result_json": result["json"]}
        for name, summary in result["metrics"].items():
            row[name] = _nan(summary["mean"])
            row[f"{name}_ci95"] = _nan(summary["ci95"])
            row.update({f"{name}_{count}": summary[count] for count in ("n", "floored", "unscored")})
        rows.append(row)
    return pd.DataFrame(rows)


def _score(args) -> dict:
    checkpoint, split, generation_mode, max_utterances, refresh, one_thread = args
    tune_process()  # before the first matrix product (does nothing the second time)
    if one_thread:  # one process per core
        import torch
        torch.set_num_threads(1)
    return evaluate_cached(checkpoint, split, generation_mode, max_utterances, refresh)


def evaluate_cached(checkpoint: Path, split: str, generation_mode: bool, max_utterances: Optional[int],
                    refresh: bool = False) -> dict:
    """`evaluate_checkpoint`'s result, from the eval_<split>[_gm].json it left beside the
    checkpoint when that is newer than the checkpoint and was made with the same settings
    and metric definitions."""
    from dvae.evaluation import evaluate_checkpoint
    from dvae.experiment import result_path

    saved = result_path(checkpoint, split, generation_mode)
    if not refresh and saved.is_file() and saved.stat().st_mtime >= checkpoint.stat().st_mtime:
        result = json.loads(saved.read_text())
        settings = result.get("settings", {})
        made_under = (result.get("protocol") or {}).get("metrics") or {"unstated": None}
        same_metrics = made_under.items() <= metrics.PROTOCOL.items()
        if same_metrics and (settings.get("split"), settings.get("generation_mode"),
                             settings.get("max_utterances")) == (split, generation_mode, max_utterances):
            result["json"] = str(saved)
            return result
    return evaluate_checkpoint(checkpoint, split=split, generation_mode=generation_mode, max_utterances=max_utterances)


def describe_configuration(configuration: pd.Series, model_trials: pd.DataFrame) -> str:
    """The hyperparameters the search varied for this model, as 'name=value, ...'."""
    params = [p for p in searched_parameters(model_trials) if p != "seed"]
    values = [(p, configuration.get(CONFIG + p)) for p in params]
    text = ", ".join(f"{p}={_short(v)}" for p, v in values if not _missing(v))
    return text or "the space's fixed settings"


def results_table(evaluations: pd.DataFrame) -> pd.DataFrame:
    """One row per model (the review's order) for its best configuration: model (label),
    configuration, trials, seeds, utterances, and per metric <metric> (mean),
    <metric>_pm (95% CI half-width: over utterances for one seed, over the seeds' means for
    several), <metric>_floored and <metric>_unscored (summed over seeds), with `spread`
    saying which interval it is."""
    rows = []
    names = [m for m in TABLE_METRICS if m in evaluations]
    for model in ordered_models(evaluations["model"]) if len(evaluations) else []:
        best = evaluations[(evaluations["model"] == model) & (evaluations["rank"] == 1)]
        if best.empty:  # its best configuration's checkpoints were missing
            continue
        row = {"model": model_label(model), "configuration": best["configuration"].iloc[0],
               "trials": ", ".join(best["trial_id"]), "seeds": len(best), "utterances": int(best["n"].iloc[0])}
        for metric in names:
            if len(best) == 1:
                row[metric], row[f"{metric}_pm"] = best[metric].iloc[0], best[f"{metric}_ci95"].iloc[0]
            else:  # a seed whose metric failed everywhere does not count
                row[metric], row[f"{metric}_pm"] = metrics.mean_ci(best[metric])
            for count in ("floored", "unscored"):
                if f"{metric}_{count}" in best:
                    row[f"{metric}_{count}"] = int(best[f"{metric}_{count}"].sum())
        row["spread"] = "95% CI over utterances" if len(best) == 1 else f"95% CI over {len(best)} seeds"
        rows.append(row)
    return pd.DataFrame(rows)


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The results table for people: each metric as 'mean ± spread' under its label."""
    shown = table[["model"]].copy()
    for metric in TABLE_METRICS:
        if metric in table and table[metric].notna().any():
            shown[METRIC_LABELS[metric]] = [_plus_minus(m, pm) for m, pm in zip(table[metric], table[f"{metric}_pm"])]
    counts = [f"{METRIC_LABELS[m]} {c} {int(n)}" for m in TABLE_METRICS for c in ("floored", "unscored")
              for n in [table.get(f"{m}_{c}", pd.Series(dtype=float)).sum()] if n]
    for column in ("spread", "configuration", "trials", "utterances"):
        shown[column] = table[column]
    if counts:  # failed estimates floored, utterances a metric could not score: in all rows together
        shown.attrs["counts"] = "; ".join(counts)
    return shown.rename(columns={"configuration": "best configuration"})


def write(evaluations: pd.DataFrame, out_dir: str | Path, trials: Optional[pd.DataFrame] = None,
          experiment: Optional[str | Path] = None, review_json: Optional[Path] = None) -> list[Path]:
    """evaluations.csv, the results table as results.csv, results.md and results.html and,
    given the trials and their experiment, the benchmark beside the review's figures as
    review.json and review.md (and at `review_json` too, when given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(evaluations)
    shown = formatted(table)
    counts = f"\n\n{shown.attrs['counts']}" if "counts" in shown.attrs else ""
    paths = [out_dir / name for name in ("evaluations.csv", "results.csv", "results.md", "results.html")]
    evaluations.to_csv(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    paths[2].write_text(markdown_table(shown) + counts + "\n")
    paths[3].write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Test results</title>"
                        f"<style>{TABLE_CSS}</style></head><body>\n<h2>{html.escape(TITLE)}</h2>\n"
                        f"{html_table(shown)}<p>{html.escape(counts.strip())}</p>\n</body></html>\n")
    if trials is not None:
        result = review.benchmark(evaluations, trials, experiment)
        text = json.dumps(result, indent=1, allow_nan=False) + "\n"
        for path in [out_dir / "review.json"] + ([Path(review_json)] if review_json else []):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            paths.append(path)
        paths.append(out_dir / "review.md")
        paths[-1].write_text(review.markdown(result) + "\n")
    return paths


TITLE = "Test-set results of each model's best configuration"


def _plus_minus(mean: float, spread: float) -> str:
    if _missing(mean):
        return "–"
    return f"{mean:.3f}" + ("" if _missing(spread) else f" ± {spread:.3f}")


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not float(value).is_integer() else str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _nan(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def main(argv=None) -> int:
    parser = ranking_parser("python -m analysis.evaluate", __doc__.split("\n\n")[0], k=1,
                            k_help="configurations per model to score",
                            out_help="output folder (default: the first experiment folder)",
                            epilog="Writes evaluations.csv, results.csv, results.md, results.html, review.json and "
                                   "review.md into --out.")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="the split to score (default test)")
    parser.add_argument("--max-utterances", type=at_least_one, help="score only the first N utterances of the split")
    parser.add_argument("--refresh", action="store_true", help="recompute scores saved beside the checkpoints")
    parser.add_argument("--jobs", type=at_least_one, default=1, help="checkpoints scored at once (default 1)")
    parser.add_argument("--finished", action="store_true",
                        help="score only trials that have ended (while a search runs: their checkpoints are final)")
    parser.add_argument("--latest", action="store_true",
                        help="a model in several experiments is taken from the last one given that holds it "
                             "(rows re-run after a fix), not ranked across them")
    parser.add_argument("--review-json", type=file_to_write,
                        help="also write the benchmark beside the review's figures to this file")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        trials = load_trials(*args.experiments)
        if args.latest:
            trials = latest_rows(trials, args.experiments)
        if args.finished:
            trials = trials[trials["status"] != "unfinished"]
        evaluations = evaluate_top(trials, args.k, args.sort, not args.descending, args.split,
                                   args.max_utterances, args.refresh, jobs=args.jobs)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"analysis.evaluate: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    if evaluations.empty:
        print(f"analysis.evaluate: no ranked trial with a best checkpoint to score (a trial is ranked once it "
              f"reports a finite {args.sort})", file=sys.stderr)
        return 1
    upload_evaluations(args)
    paths = write(evaluations, args.out or args.experiments[0], trials, args.experiments[0], args.review_json)
    print(paths[2].read_text())
    print(Path(args.out or args.experiments[0], "review.md").read_text())
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
