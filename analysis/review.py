"""The DVAE review's benchmark as a results file: our rows beside its published figures.

The review (Girin et al. 2021) reports one figure per model and metric on WSJ0 speech and
Human3.6M motion. `benchmark` turns `analysis.evaluate`'s per-checkpoint scores of a
benchmark experiment (every row run with several seeds) into one entry per row: each
seed's test means, their mean and 95% confidence interval across seeds, the units scored,
each seed's best epoch and wall time; a `protocol` object says how it was all measured;
`comparison` gives the Spearman rank correlation of our column with the review's and
every pair of rows whose order differs from the review's, with whether our intervals
overlap (pairs whose intervals do not overlap are the ones that need explaining).
"""
from __future__ import annotations

import html
import itertools
import json
import math
import subprocess
from pathlib import Path
from typing import Optional

import pandas as pd
import scipy.stats

from dvae import metrics

from .results import model_label, ordered_models

# The review's published test figures (its Tables 2 and 3): speech on WSJ0 (SI-SDR dB, PESQ as
# raw P.862 narrowband MOS from pypesq, ESTOI), motion on Human3.6M (MPJPE mm).
REVIEW_SPEECH = {
    "vae": {"si_sdr": 5.3, "pesq": 2.97, "estoi": 0.83}, "dkf": {"si_sdr": 9.3, "pesq": 3.53, "estoi": 0.91},
    "storn": {"si_sdr": 6.9, "pesq": 3.42, "estoi": 0.90}, "vrnn": {"si_sdr": 10.0, "pesq": 3.61, "estoi": 0.92},
    "srnn": {"si_sdr": 11.0, "pesq": 3.68, "estoi": 0.93},
    "rvae_causal": {"si_sdr": 9.0, "pesq": 3.49, "estoi": 0.90},
    "rvae_noncausal": {"si_sdr": 8.9, "pesq": 3.58, "estoi": 0.91},
    "dsae": {"si_sdr": 9.2, "pesq": 3.55, "estoi": 0.91},
    "srnn_tf_gm": {"si_sdr": -1.0, "pesq": 1.93, "estoi": 0.64},
    "srnn_gm": {"si_sdr": 7.8, "pesq": 3.37, "estoi": 0.88},
}
REVIEW_MOTION = {
    "vae": {"mpjpe": 48.69}, "dkf": {"mpjpe": 42.21}, "storn": {"mpjpe": 9.47}, "vrnn": {"mpjpe": 9.22},
    "srnn": {"mpjpe": 7.86}, "rvae_causal": {"mpjpe": 31.09}, "rvae_noncausal": {"mpjpe": 28.59},
    "dsae": {"mpjpe": 28.61}, "srnn_tf_gm": {"mpjpe": 221.87}, "srnn_gm": {"mpjpe": 43.98},
}
REVIEW = {"speech": REVIEW_SPEECH, "motion": REVIEW_MOTION}
# The column each ranking is compared on, and whether higher is better.
RANK_METRIC = {"speech": ("si_sdr", True), "motion": ("mpjpe", False)}


def benchmark(evaluations: pd.DataFrame, trials: pd.DataFrame, experiment: str | Path) -> dict:
    """The results file of a benchmark experiment from `analysis.evaluate.evaluate_top`'s
    scores of its rank-1 configurations (`evaluations`) and its trials frame."""
    best = evaluations[evaluations["rank"] == 1]
    if best.empty:
        raise ValueError("no scored checkpoint to make a benchmark of")
    kinds = set(best["kind"])
    if len(kinds) != 1:
        raise ValueError(f"a benchmark is of speech or of motion, not both: {sorted(kinds)}")
    kind = kinds.pop()
    names = [m for m in metrics.PROTOCOL if f"{m}_n" in best and best[m].notna().any()]
    by_checkpoint = trials.set_index("checkpoint")
    rows = {}
    for model in ordered_models(best["model"]):
        scored = best[best["model"] == model].sort_values("seed")
        seeds = []
        for _, row in scored.iterrows():
            trial = by_checkpoint.loc[row["checkpoint"]]
            seeds.append({"seed": _plain(row["seed"]), "trial_id": row["trial_id"], "experiment": trial["experiment"],
                          "metrics": {m: _plain(row[m]) for m in names},
                          "units": int(row["n"]),
                          "floored": {m: int(row[f"{m}_floored"]) for m in names},
                          "unscored": {m: int(row[f"{m}_unscored"]) for m in names},
                          "best_epoch": _plain(trial.get("best_epoch")), "epochs_run": _plain(trial.get("epochs_run")),
                          "status": trial.get("status"), "wall_time_s": _plain(trial.get("wall_time_s"))})
        summary = {m: metrics.mean_ci([s["metrics"][m] for s in seeds if s["metrics"][m] is not None]) for m in names}
        rows[model] = {"label": model_label(model), "seeds": seeds, "n_seeds": len(seeds),
                       "mean": {m: _plain(summary[m][0]) for m in names},
                       "ci95": {m: _plain(summary[m][1]) for m in names},
                       "units": sorted({s["units"] for s in seeds}),
                       "generation_mode": bool(scored["generation_mode"].iloc[0]),
                       "review": REVIEW[kind].get(model)}
    result = {"protocol": protocol(evaluations, experiment, kind), "rows": rows, "comparison": comparison(rows, kind)}
    sources = {}
    for model, row in rows.items():
        for name in dict.fromkeys(s["experiment"] for s in row["seeds"]):
            sources.setdefault(name, []).append(model)
    if len(sources) > 1:  # rows re-run after a fix (analysis.evaluate --latest)
        result["protocol"]["rows_from"] = sources
    return result


def comparison(rows: dict, kind: str) -> dict:
    """Spearman's rank correlation of our column with the review's, over the rows both have,
    and the pairs of rows our means order otherwise than the review, each with whether our
    95% intervals across seeds overlap."""
    metric, higher_better = RANK_METRIC[kind]
    review = REVIEW[kind]
    common = [m for m in rows if m in review and rows[m]["mean"].get(metric) is not None]
    ours = [rows[m]["mean"][metric] for m in common]
    theirs = [review[m][metric] for m in common]
    rho = scipy.stats.spearmanr(ours, theirs).statistic if len(common) > 2 else math.nan
    pairs = []
    for a, b in itertools.combinations(common, 2):
        # a above b in the review's order; out of order when ours says the opposite
        if (review[a][metric] > review[b][metric]) != higher_better:
            a, b = b, a
        if (rows[a]["mean"][metric] > rows[b]["mean"][metric]) != higher_better:
            pairs.append({"review_better": a, "ours_better": b,
                          "ours": {a: rows[a]["mean"][metric], b: rows[b]["mean"][metric]},
                          "review": {a: review[a][metric], b: review[b][metric]},
                          "intervals_overlap": _overlap(rows[a], rows[b], metric)})
    return {"metric": metric, "rows": common, "spearman": _plain(rho), "out_of_order": pairs}


def protocol(evaluations: pd.DataFrame, experiment: str | Path, kind: str) -> dict:
    """How the results were made: corpus, split, features, what was scored and how, the
    search's space, budget and settings, the seeds, and the code's version."""
    experiment = Path(experiment)
    first = json.loads(Path(evaluations["result_json"].iloc[0]).read_text())
    settings = first["settings"]
    search = experiment / "search.json"
    return {"corpus": settings["corpus"], "corpus_split": settings.get("corpus_split", "corpus"),
            "split": settings["split"], "kind": kind,
            "features": settings.get("data", {}).get("features") if kind == "speech" else "joint positions (mm)",
            "max_utterances": settings.get("max_utterances"), **first.get("protocol", {}),
            "selection": "each row's checkpoint at its best validation loss (negative ELBO per frame at KL weight 1; "
                         "in generation mode for SRNN-GM); SRNN-TF-GM is SRNN's checkpoint scored in generation mode",
            "search": json.loads(search.read_text()) if search.is_file() else None,
            "schedule": schedule(first["settings"]),
            "seeds": sorted({_plain(s) for s in evaluations["seed"]}),
            "experiment": experiment.name, "code_version": code_version()}


def schedule(settings: dict) -> Optional[dict]:
    """The training budget of the first row's checkpoint (a row of the space may override
    some of it: SRNN-GM's KL warm-up); None for an evaluation that did not record it."""
    train, data = settings.get("train"), settings.get("data", {})
    if train is None:
        return None
    return {"seq_len": data.get("seq_len"), "window_hop": data.get("window_hop") or data.get("seq_len"),
            **{k: train[k] for k in ("epochs", "patience", "batch_size", "optimizer", "lr", "lr_schedule",
                                     "kl_warmup", "kl_warmup_epochs", "grad_clip")}}


def table(result: dict) -> pd.DataFrame:
    """The benchmark for people: per row, each metric as 'mean ± 95% CI across seeds' beside
    the review's figure, the seeds and each seed's best epoch."""
    rows = result["rows"]
    names = [m for m in ("si_sdr", "pesq", "pesq_wb", "estoi", "mpjpe") if any(m in r["mean"] for r in rows.values())]
    shown = []
    for r in rows.values():
        line = {"model": r["label"]}
        for m in names:
            mean, ci = r["mean"].get(m), r["ci95"].get(m)
            line[_label(m)] = "–" if mean is None else f"{mean:.2f}" + ("" if ci is None else f" ± {ci:.2f}")
            if any(m in (x["review"] or {}) for x in rows.values()):
                figure = (r["review"] or {}).get(m)
                line[f"{_label(m)}, review"] = "–" if figure is None else f"{figure:g}"
        line["seeds"] = r["n_seeds"]
        line["best epochs"] = ", ".join(str(s["best_epoch"]) for s in r["seeds"])
        shown.append(line)
    return pd.DataFrame(shown)


def findings(result: dict) -> list[str]:
    """The rank correlation with the review and each pair of rows out of its order, as sentences."""
    c = result["comparison"]
    rho = "nan" if c["spearman"] is None else f"{c['spearman']:.2f}"
    lines = [f"Spearman rank correlation with the review ({_label(c['metric'])}, {len(c['rows'])} rows): {rho}"]
    for pair in c["out_of_order"]:
        a, b = pair["review_better"], pair["ours_better"]
        lines.append(f"out of the review's order: {model_label(b)} {pair['ours'][b]:.2f} vs {model_label(a)} "
                     f"{pair['ours'][a]:.2f} (review {pair['review'][b]:g} vs {pair['review'][a]:g}); our intervals "
                     + {True: "overlap", False: "do not overlap", None: "are unknown (one seed)"}[
                         pair["intervals_overlap"]])
    counted = {}
    for r in result["rows"].values():
        for s in r["seeds"]:
            for kind in ("floored", "unscored"):
                for metric, n in s.get(kind, {}).items():
                    counted.setdefault((metric, kind), set()).add(n)
    units = sorted({u for r in result["rows"].values() for u in r["units"]})
    notes = [f"{_label(m)} {kind} per checkpoint: {', '.join(map(str, sorted(ns)))}" for (m, kind), ns in
             sorted(counted.items()) if any(ns)]
    lines.append(f"units scored per checkpoint: {', '.join(map(str, units))}" + ("; " + "; ".join(notes) if notes else ""))
    return lines


def markdown(result: dict) -> str:
    from .leaderboard import markdown_table

    first, *pairs = findings(result)
    return "\n".join([markdown_table(table(result)), "", first, *(f"- {line}" for line in pairs)])


def html_section(result: dict) -> str:
    """The benchmark, its comparison and its protocol as an HTML fragment (for the report)."""
    from .leaderboard import html_table

    first, *pairs = findings(result)
    protocol = result["protocol"]
    described = {**{k: v for k, v in protocol.items() if k not in ("metrics", "search")},
                 **{f"metric {m}": text for m, text in protocol.get("metrics", {}).items()}}
    return (html_table(table(result)) + f"<p>{html.escape(first)}</p>"
            + ("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in pairs) + "</ul>" if pairs else "")
            + "<dl class=protocol>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                                              for k, v in described.items()) + "</dl>")


def code_version() -> str:
    """The git commit of the code (with '+changes' when the work tree differs), or the package's version."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return "dvae-tune " + version("dvae-tune")
        except PackageNotFoundError:
            return "unknown"


def _overlap(a: dict, b: dict, metric: str) -> bool | None:
    (ma, ca), (mb, cb) = ((r["mean"][metric], r["ci95"][metric]) for r in (a, b))
    if ca is None or cb is None:
        return None
    return ma - ca <= mb + cb and mb - cb <= ma + ca


def _label(metric: str) -> str:
    from dvae.evaluation import METRIC_LABELS
    return METRIC_LABELS.get(metric, metric)


def _plain(value):
    """A JSON value: None for NaN or missing, ints as ints."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value
