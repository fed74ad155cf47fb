"""Leaderboards: the best configuration of each model, and each model's top k.

A configuration is a set of trials whose configs differ only in their seed (a search
space with several seeds runs each sampled configuration once per seed). It is ranked
within its model by the mean over its trials of a reported figure at each trial's best
epoch: `val_loss` (the negative ELBO per frame at KL weight 1, lower is better) unless
told otherwise. Trials without a finite value (failed before their first epoch, or
diverged at once) are not ranked.

    python -m analysis.leaderboard EXPERIMENT [...] [--k 5] [--sort val_recon] [--out DIR]

writes leaderboard_best.csv (one row per model), leaderboard_top.csv (the top k of each
model, with a rank), and both as leaderboard.md and leaderboard.html.
"""
from __future__ import annotations

import html
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dvae import logs
from dvae.metrics import mean_ci

from .results import CONFIG, DEFAULT_SORT, load_trials, model_label, ordered_models, ranking_parser, searched_parameters

# shown beside the ranked figure; the test scores once the trial's checkpoint has been scored
TEST_SCORES = ("test_si_sdr", "test_pesq", "test_estoi", "test_mpjpe")
SUMMARY = ("best_epoch", "epochs_run", "status", "wall_time_s", *TEST_SCORES, "test_units")


def configurations(trials: pd.DataFrame, sort: str = "val_loss", ascending: bool = True) -> pd.DataFrame:
    """One row per (model, configuration), ranked within each model (rank 1 = best).

    A row is its best trial's row, with `sort` and the test scores replaced by their means
    over the configuration's trials and with `<figure>_ci95` (the half-width of each mean's
    95% interval across them, NaN for one trial), `<sort>_sd` (their standard deviation),
    `seeds` (how many trials), `trial_ids` (theirs, best first, comma-separated) and
    `trial_dirs` (a tuple, for finding their checkpoints) added.
    """
    if unreported(trials, sort):  # no trial has finished an epoch: nothing to rank yet
        ranked = trials.iloc[:0].assign(**{sort: math.nan})
    else:
        check_sortable(trials, sort)
        ranked = trials[np.isfinite(trials[sort].astype(float))].copy()
    key_columns = [c for c in ranked.columns if c.startswith(CONFIG) and c not in (CONFIG + "seed", CONFIG + "optuna_trial")]
    ranked["_key"] = [repr(tuple(values)) for values in ranked[key_columns].itertuples(index=False)]
    rows = []
    for _, group in ranked.groupby(["model", "_key"], sort=False):
        group = group.sort_values(sort, ascending=ascending)
        row = group.iloc[0].copy()
        for figure in dict.fromkeys([sort, *(c for c in TEST_SCORES if c in group)]):
            row[figure], row[f"{figure}_ci95"] = mean_ci(group[figure].astype(float))
        row[f"{sort}_sd"] = group[sort].std() if len(group) > 1 else math.nan
        row["seeds"] = len(group)
        row["trial_ids"] = ", ".join(group["trial_id"])
        row["trial_dirs"] = tuple(group["trial_dir"])
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=[*ranked.columns.drop("_key"), "rank", f"{sort}_sd", "seeds", "trial_ids",
                                     "trial_dirs"])
    table = pd.DataFrame(rows).drop(columns="_key")
    order = {model: i for i, model in enumerate(ordered_models(table["model"]))}
    table = table.sort_values(sort, ascending=ascending, kind="stable")
    table = table.sort_values("model", key=lambda models: models.map(order), kind="stable")
    table.insert(table.columns.get_loc("model") + 1, "rank", table.groupby("model").cumcount() + 1)
    return table.reset_index(drop=True)


def best_per_model(trials: pd.DataFrame, sort: str = "val_loss", ascending: bool = True) -> pd.DataFrame:
    """The best configuration of each model, models in the DVAE review's order."""
    ranked = configurations(trials, sort, ascending)
    return ranked[ranked["rank"] == 1].reset_index(drop=True)


def top_per_model(trials: pd.DataFrame, k: int = 5, sort: str = "val_loss",
                  ascending: bool = True) -> pd.DataFrame:
    """The k best configurations of each model."""
    ranked = configurations(trials, sort, ascending)
    return ranked[ranked["rank"] <= k].reset_index(drop=True)


def unreported(trials: pd.DataFrame, sort: str) -> bool:
    """Whether `sort` is the figure every epoch reports (or its final_ twin) and no trial
    has reported it yet: all failed before their first epoch, or none has finished one.
    That is an empty ranking, not a wrong --sort."""
    return sort in (DEFAULT_SORT, "final_" + DEFAULT_SORT) and sort not in trials.columns


def check_sortable(trials: pd.DataFrame, sort: str) -> None:
    if sort not in trials.columns or not pd.api.types.is_numeric_dtype(trials[sort]):
        raise KeyError(f"cannot sort by {sort!r}; reported figures: {', '.join(sortable(trials))}")


def sortable(trials: pd.DataFrame) -> list[str]:
    """The numeric columns of a trials frame: what a leaderboard can sort by."""
    return [c for c in trials.columns if not c.startswith(CONFIG) and pd.api.types.is_numeric_dtype(trials[c])]


def display(table: pd.DataFrame, trials: pd.DataFrame, sort: str = "val_loss") -> pd.DataFrame:
    """A ranked table for people: model labels, the ranked figure, a few facts of the run
    and the hyperparameters that the search varied among `trials` (unprefixed)."""
    multi_seed = bool((table["seeds"] > 1).any())
    params = [p for p in searched_parameters(trials) if not (multi_seed and p == "seed")]
    columns = {"model": "model", "rank": "rank", sort: sort + (" (mean)" if multi_seed else "")}
    if multi_seed:
        columns.update({f"{sort}_sd": f"{sort} sd", "seeds": "seeds"})
    columns["trial_ids"] = "trials" if multi_seed else "trial"
    if multi_seed:  # the half-width of the mean's 95% interval across seeds
        columns[f"{sort}_ci95"] = f"{sort} ±95%"
    if sort != "val_loss" and "val_loss" in table:
        columns["val_loss"] = "val_loss"
    for c in SUMMARY:
        columns[c] = c + (" (mean)" if multi_seed and c in TEST_SCORES else "")
        if multi_seed and c in TEST_SCORES:
            columns[f"{c}_ci95"] = f"{c} ±95%"
    if trials["experiment"].nunique() > 1:
        columns["experiment"] = "experiment"
    columns.update({CONFIG + p: p for p in params})
    shown = table[[c for c in columns if c in table]].rename(columns=columns)
    shown["model"] = shown["model"].map(model_label)
    return shown


def format_value(value) -> str:
    """A cell as text: floats to 5 significant digits, integral floats as integers, missing as '–'."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.5g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the tabulate package)."""
    def cell(value) -> str:
        return format_value(value).replace("|", r"\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, css_class: str = "leaderboard") -> str:
    """An HTML <table> fragment, values formatted as in `format_value`, numbers right-aligned."""
    def cell(value) -> str:
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
        return f"<td{' class=num' if number else ''}>{html.escape(format_value(value))}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def sections(trials: pd.DataFrame, k: int = 5, sort: str = "val_loss",
             ascending: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """(title, display table) of each part of the leaderboard: the best configuration of
    each model, then each model's top k."""
    ranked = configurations(trials, sort, ascending)
    order = "ascending" if ascending else "descending"
    best = ranked[ranked["rank"] == 1]
    parts = [(f"Best configuration of each model (by {sort}, {order})", display(best, trials, sort))]
    for model in ordered_models(ranked["model"]):
        model_trials = trials[trials["model"] == model]
        top = ranked[(ranked["model"] == model) & (ranked["rank"] <= k)]
        parts.append((f"{model_label(model)}: top {len(top)} of {len(model_trials)} trials",
                      display(top, model_trials, sort)))
    return parts


def write(trials: pd.DataFrame, out_dir: str | Path, k: int = 5, sort: str = "val_loss",
          ascending: bool = True) -> list[Path]:
    """Writes the leaderboard as CSV (leaderboard_best.csv, leaderboard_top.csv), Markdown
    (leaderboard.md) and HTML (leaderboard.html) into `out_dir`; returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ranked = configurations(trials, sort, ascending).drop(columns="trial_dirs")
    best_csv, top_csv, markdown, page = (out_dir / name for name in (
        "leaderboard_best.csv", "leaderboard_top.csv", "leaderboard.md", "leaderboard.html"))
    ranked[ranked["rank"] == 1].to_csv(best_csv, index=False)
    ranked[ranked["rank"] <= k].to_csv(top_csv, index=False)
    parts = sections(trials, k, sort, ascending)
    markdown.write_text("\n\n".join(f"## {title}\n\n{markdown_table(table)}" for title, table in parts) + "\n")
    body = "\n".join(f"<h2>{html.escape(title)}</h2>\n{html_table(table)}" for title, table in parts)
    page.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Leaderboard</title>"
                    f"<style>{TABLE_CSS}</style></head><body>\n{body}\n</body></html>\n")
    return [best_csv, top_csv, markdown, page]


TABLE_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
td.num { text-align: right; }
th { background: #f3f3f3; position: sticky; top: 0; }
tbody tr:hover { background: #f8f8ff; }
"""


def main(argv=None) -> int:
    parser = ranking_parser("python -m analysis.leaderboard", __doc__.split("\n\n")[0], k=5,
                            k_help="configurations per model in the top tables",
                            out_help="output folder (default: the first experiment folder)",
                            epilog="Writes leaderboard_best.csv, leaderboard_top.csv, leaderboard.md and "
                                   "leaderboard.html into --out.")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        trials = load_trials(*args.experiments)
        paths = write(trials, args.out or args.experiments[0], args.k, args.sort, not args.descending)
    except (FileNotFoundError, KeyError) as e:
        print(f"analysis.leaderboard: {e.args[0]}", file=sys.stderr)
        return 2
    print(paths[2].read_text())
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
