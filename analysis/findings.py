"""Findings: what each studied factor does, per model, with confidence intervals across seeds.

    python -m analysis.findings EXPERIMENT [...] [--factors prior,lr_schedule] [--out findings.json]

Reads seeded trials (a confirmation: `tune_runner.py --confirm`, or any search with seeds).
For each model and each factor of the space (dvae.confirmation.factors: a choice's values,
a numeric range in buckets), the model's central seeded configuration (the one the
confirmation moved one factor at a time: the one with the most seeded configurations that
differ from it in one factor; the best by mean val_loss among equals) is compared with the
seeded configuration that differs from it in that factor alone, at each other level, on val_loss and on every test
metric scored: the difference of the means across seeds with a 95% Welch interval
("prior student_t vs gaussian, VRNN: Δ test ESTOI +0.012 [-0.004, +0.028], 3/3 seeds: no clear
difference"). Where no such configuration was run (a search with seeds but no confirmation),
the best configuration at that level stands in, and the finding says it is confounded: the
two differ in other fields too. Two more findings per model: the Spearman correlation between
the KL warm-up length and val_loss over every trial that ran to its end (95% interval by
Fisher's z), and the epochs to the best validation loss under each learning-rate schedule.

Writes findings.json beside the first experiment (or --out): a list of findings, each with
its factor, levels, model, metric, estimates, interval and seeds, for notebooks to read.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import scipy.stats

from dvae import experiment, logs
from dvae.confirmation import factors, level
from dvae.metrics import mean_ci
from dvae.spaces import Param, load_space

from .leaderboard import configurations
from .results import CONFIG, add_experiments, load_trials, model_label, ordered_models

METRICS = ("val_loss", "test_si_sdr", "test_pesq", "test_estoi", "test_mpjpe")
LOWER_IS_BETTER = {"val_loss", "test_mpjpe"}
METRIC_LABELS = {"val_loss": "val_loss", "test_si_sdr": "test SI-SDR", "test_pesq": "test PESQ",
                 "test_estoi": "test ESTOI", "test_mpjpe": "test MPJPE"}
RAN_TO_END = ("completed", "early_stopped")


class FindingError(ValueError):
    """A comparison that cannot be made; the message says why."""


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(b) - mean(a) and its 95% Welch interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    difference = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return difference, difference, difference
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(scipy.stats.t.ppf(0.975, df) * se)
    return difference, difference - half, difference + half


def verdict(metric: str, low: float, high: float, levels: tuple[str, str]) -> str:
    if low <= 0 <= high:
        return "no clear difference"
    better = (high < 0) == (metric in LOWER_IS_BETTER)
    return f"{levels[1]} {'better' if better else 'worse'} than {levels[0]}"


def seed_values(trials: pd.DataFrame, row: pd.Series, metric: str) -> list[float]:
    """The metric of each seed's trial of a configuration row (configurations())."""
    values = trials.set_index("trial_dir").loc[list(row["trial_dirs"]), metric] if metric in trials else []
    return [float(v) for v in values if pd.notna(v) and math.isfinite(float(v))]


def contrasts(trials: pd.DataFrame, param: Param, params: tuple[Param, ...], model: str,
              required: bool = False) -> list[dict]:
    """The model's best seeded configuration against the one at each other level of `param`
    (differing in `param` alone where that was run), on every metric with seeds."""
    ranked = configurations(trials[trials["model"] == model])
    ranked = ranked[ranked["seeds"] > 1]
    column = CONFIG + param.name
    if column not in ranked:
        ranked = ranked.assign(**{column: None})
    ranked = ranked.assign(_level=[level(param, v if pd.notna(v) else None) for v in ranked[column]])
    ranked = ranked.dropna(subset=["_level"])  # best first
    order = sorted(set(ranked["_level"]), key=lambda lv: _level_order(param, lv))
    if len(order) < 2:
        if required:
            raise FindingError(f"{param.name}, {model_label(model)}: the seeded configurations have "
                               f"{'one level (' + order[0] + ')' if order else 'no level'}; nothing to compare")
        return []
    reference = center(ranked, params)
    others = [CONFIG + p.name for p in params if p.name != param.name and p.when is None]
    same_otherwise = ranked[[all(_same(row.get(c), reference.get(c)) for c in others) for _, row in ranked.iterrows()]]
    found = []
    for other in (lv for lv in order if lv != reference["_level"]):
        isolated = same_otherwise[same_otherwise["_level"] == other]
        candidate = (isolated if len(isolated) else ranked[ranked["_level"] == other]).iloc[0]
        levels = (reference["_level"], other)
        for metric in METRICS:
            a, b = seed_values(trials, reference, metric), seed_values(trials, candidate, metric)
            if len(a) < 2 or len(b) < 2:
                continue
            difference, low, high = welch(a, b)
            found.append({
                "kind": "contrast", "factor": param.name, "model": model, "metric": metric, "levels": list(levels),
                "estimates": {lv: _estimate(v, row) for lv, v, row in zip(levels, (a, b), (reference, candidate))},
                "difference": difference, "interval": [low, high], "seeds": [len(a), len(b)],
                "isolated": bool(len(isolated)), "verdict": verdict(metric, low, high, levels),
            })
    return found


def center(ranked: pd.DataFrame, params: tuple[Param, ...]) -> pd.Series:
    """The configuration with the most others that differ from it in exactly one factor (the
    first, that is the best ranked, among equals)."""
    columns = [CONFIG + p.name for p in params if p.when is None]
    rows = [row for _, row in ranked.iterrows()]

    def differences(a, b) -> int:
        return sum(not _same(a.get(c), b.get(c)) for c in columns)
    neighbours = [sum(differences(a, b) == 1 for b in rows) for a in rows]
    return rows[int(np.argmax(neighbours))]


def _same(a, b) -> bool:
    missing_a, missing_b = a is None or (isinstance(a, float) and math.isnan(a)), b is None or (
        isinstance(b, float) and math.isnan(b))
    return (missing_a and missing_b) or (not missing_a and not missing_b and a == b)


def kl_warmup_trend(trials: pd.DataFrame, model: str) -> Optional[dict]:
    """Spearman's rho between kl_warmup_epochs and val_loss over the model's trials that ran to their end."""
    column = CONFIG + "kl_warmup_epochs"
    ended = trials[(trials["model"] == model) & trials["status"].isin(RAN_TO_END)]
    if column not in ended:
        return None
    ended = ended[[column, "val_loss"]].dropna()
    if len(ended) < 4 or ended[column].nunique() < 2:
        return None
    rho = float(scipy.stats.spearmanr(ended[column], ended["val_loss"]).statistic)
    z, se = math.atanh(max(min(rho, 0.999999), -0.999999)), 1 / math.sqrt(len(ended) - 3)
    low, high = math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)
    return {"kind": "trend", "factor": "kl_warmup_epochs", "model": model, "metric": "val_loss",
            "levels": [int(ended[column].min()), int(ended[column].max())], "estimates": {"spearman_rho": rho},
            "interval": [low, high], "seeds": [len(ended)],
            "verdict": "no clear trend" if low <= 0 <= high else
            ("longer warm-up, higher val_loss" if rho > 0 else "longer warm-up, lower val_loss")}


def epochs_to_best(trials: pd.DataFrame, model: str) -> list[dict]:
    """Mean epochs to the best val_loss under each learning-rate schedule (trials that ran to their end)."""
    column = CONFIG + "lr_schedule"
    ended = trials[(trials["model"] == model) & trials["status"].isin(RAN_TO_END)]
    if column not in ended or ended[column].nunique() < 2:
        return []
    found = []
    for schedule, group in ended.groupby(column):
        mean, half = mean_ci(group["best_epoch"].astype(float))
        found.append({"kind": "epochs_to_best", "factor": "lr_schedule", "model": model, "metric": "best_epoch",
                      "levels": [schedule], "estimates": {schedule: {"mean": mean, "trials": len(group)}},
                      "interval": [mean - half, mean + half] if math.isfinite(half) else None,
                      "seeds": [len(group)], "verdict": ""})
    return found


def findings(trials: pd.DataFrame, params: tuple[Param, ...], asked: Optional[list[str]] = None) -> list[dict]:
    """Every finding, model by model; `asked`: only these factors (each must have two levels)."""
    if asked:
        known = {p.name for p in params}
        unknown = [a for a in asked if a not in known]
        if unknown:
            raise FindingError(f"--factors: {', '.join(unknown)} not studied; the factors are {', '.join(sorted(known))}")
    studied = tuple(p for p in params if not asked or p.name in asked)
    found = []
    for model in ordered_models(trials["model"]):
        for param in studied:
            found += contrasts(trials, param, params, model, required=bool(asked))
        if not asked:
            found += [f for f in [kl_warmup_trend(trials, model)] if f] + epochs_to_best(trials, model)
    return found


def sentence(finding: dict) -> str:
    """One finding for people."""
    model = model_label(finding["model"])
    if finding["kind"] == "contrast":
        a, b = finding["levels"]
        low, high = finding["interval"]
        digits = 3 if finding["metric"] in ("test_estoi", "test_pesq") else 2
        return (f"{finding['factor']} {b} vs {a}, {model}: Δ {METRIC_LABELS[finding['metric']]} "
                f"{finding['difference']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}], "
                f"{'/'.join(map(str, finding['seeds']))} seeds: {finding['verdict']}"
                + ("" if finding["isolated"] else " (confounded: the two configurations differ in other fields too)"))
    if finding["kind"] == "trend":
        low, high = finding["interval"]
        return (f"KL warm-up {finding['levels'][0]}-{finding['levels'][1]} epochs against val_loss, {model}: "
                f"Spearman ρ {finding['estimates']['spearman_rho']:+.2f} [{low:+.2f}, {high:+.2f}] over "
                f"{finding['seeds'][0]} trials: {finding['verdict']}")
    (schedule, estimate), = finding["estimates"].items()
    interval = finding["interval"]
    spread = f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else ""
    return (f"epochs to the best val_loss, {model}, {schedule} schedule: {estimate['mean']:.1f}{spread} "
            f"over {estimate['trials']} trials")


def _estimate(values: list[float], row: pd.Series) -> dict:
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": [mean - half, mean + half], "seeds": len(values), "trials": row["trial_ids"]}


def _level_order(param: Param, value: str):
    if param.kind == "choice":
        return [str(c) for c in param.choices].index(value) if value in map(str, param.choices) else len(param.choices)
    return float(value.split("-")[0])


def space_params(folder: Path) -> tuple[Param, ...]:
    """The studied factors of the search (or confirmation) in `folder`."""
    settings = experiment.Settings.read(folder)
    space = load_space(settings.space_file(folder), settings.budget)
    return factors(space)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.findings", description=__doc__.split("\n\n")[0])
    add_experiments(parser)
    parser.add_argument("--factors", type=lambda text: [f.strip() for f in text.split(",") if f.strip()],
                        help="only these factors (each must have two levels or more among the seeded configurations)")
    parser.add_argument("--out", type=Path, help="the JSON to write (default: <first experiment>/findings.json)")
    logs.add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        params = space_params(args.experiments[0])
        found = findings(load_trials(*args.experiments), params, args.factors)
    except (FindingError, FileNotFoundError, experiment.ExperimentError) as e:
        print(f"analysis.findings: {e}", file=sys.stderr)
        return 2
    if not any(f["kind"] == "contrast" for f in found):
        print("analysis.findings: no factor has two levels with two seeds or more each; run a confirmation first "
              "(tune_runner.py --confirm EXPERIMENT)", file=sys.stderr)
    out = args.out or args.experiments[0] / "findings.json"
    out.write_text(json.dumps({"experiments": [str(e) for e in args.experiments], "findings": found}, indent=1) + "\n")
    for finding in found:
        print(sentence(finding))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
